// `openlm train RECIPE --run-dir DIR [--max-steps N] [--stop-at-step K] [--overwrite] [--set key=value ...]`
// Exits 0 when done (or stopped by SIGTERM/SIGUSR1 after a checkpoint), 130 when the first Ctrl-C
// stopped it after a checkpoint, 1 on errors (a run directory holding another run included).
#include <csignal>

#include "openlm_cpp/cli/command.h"
#include "openlm_cpp/core/recipe.h"
#include "openlm_cpp/train/trainer.h"

namespace {
struct Args {
  std::string recipe, run_dir;
  int64_t max_steps = 0, stop_at = 0;
  std::vector<std::string> sets;
  bool overwrite = false;
};

openlm::cli::Registrar reg("train", [](CLI::App& root) {
  auto a = std::make_shared<Args>();
  auto* sub = root.add_subcommand("train", "Train a model from a recipe (recipes/train/*.yaml)");
  sub->add_option("recipe", a->recipe, "train recipe (YAML), or a run's resolved config.json")->required();
  sub->add_option("--run-dir", a->run_dir, "run directory (overrides the recipe's run_dir)");
  sub->add_option("--max-steps", a->max_steps, "optimizer steps the schedule spans (replaces the recipe's max_steps or train_num_tokens; 0: the "
                 "recipe's); resuming with another value is refused unless --set schedule.allow_change=true");
  sub->add_option("--stop-at-step", a->stop_at, "stop after this step, saving a checkpoint, schedule unchanged (0: run to the end)");
  sub->add_option("--set", a->sets, "override a recipe key: --set optim.lr=1e-3 (repeatable)");
  sub->add_flag("--overwrite", a->overwrite,
                "the run directory may hold another run: move its files into RUN_DIR/previous-<n>/ and start "
                "afresh (without it, and without resume, such a directory is refused)");
  sub->callback([a] {
    std::vector<std::string> sets = a->sets;
    if (!a->run_dir.empty()) sets.push_back("run_dir=" + a->run_dir);
    if (a->max_steps > 0) {  // the run's length: replaces train_num_tokens too (both set is an error)
      sets.push_back("max_steps=" + std::to_string(a->max_steps));
      sets.push_back("train_num_tokens=0");
    }
    openlm::TrainConfig cfg = openlm::load_train_recipe(a->recipe, sets);
    openlm::TrainOptions opt;
    opt.stop_at_step = a->stop_at;
    opt.overwrite = a->overwrite;
    auto res = openlm::run_training(cfg, opt);
    if (res.stopped_by_signal == SIGINT) throw CLI::RuntimeError(128 + SIGINT);  // interrupted, not done
  });
});
}  // namespace
