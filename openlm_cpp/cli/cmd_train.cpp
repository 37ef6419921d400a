// `openlm train RECIPE --run-dir DIR [--max-steps N] [--stop-at-step K] [--set key=value ...]`
#include "openlm_cpp/cli/command.h"
#include "openlm_cpp/core/recipe.h"
#include "openlm_cpp/train/trainer.h"

namespace {
struct Args {
  std::string recipe, run_dir;
  int64_t max_steps = 0, stop_at = 0;
  std::vector<std::string> sets;
};

openlm::cli::Registrar reg("train", [](CLI::App& root) {
  auto a = std::make_shared<Args>();
  auto* sub = root.add_subcommand("train", "Train a model from a recipe (recipes/train/*.yaml)");
  sub->add_option("recipe", a->recipe, "train recipe (YAML), or a run's resolved config.json")->required();
  sub->add_option("--run-dir", a->run_dir, "run directory (overrides the recipe's run_dir)");
  sub->add_option("--max-steps", a->max_steps, "optimizer steps the schedule spans (overrides max_steps)");
  sub->add_option("--stop-at-step", a->stop_at, "stop after this step, saving a checkpoint, schedule unchanged");
  sub->add_option("--set", a->sets, "override a recipe key: --set optim.lr=1e-3 (repeatable)");
  sub->callback([a] {
    std::vector<std::string> sets = a->sets;
    if (!a->run_dir.empty()) sets.push_back("run_dir=" + a->run_dir);
    if (a->max_steps > 0) sets.push_back("max_steps=" + std::to_string(a->max_steps));
    openlm::TrainConfig cfg = openlm::load_train_recipe(a->recipe, sets);
    openlm::TrainOptions opt;
    opt.stop_at_step = a->stop_at;
    openlm::run_training(cfg, opt);
  });
});
}  // namespace
