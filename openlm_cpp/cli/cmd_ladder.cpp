// `openlm ladder LADDER.yaml --out DIR [--emit-slurm | --collect | --dry-run] [--nproc-per-node N]`
// `openlm ladder fit RESULTS.csv --out DIR`
// Scaling ladders (docs/LADDERS.md): plan, train (through `openlm launch`), collect, fit, plot.
#include <unistd.h>

#include <climits>
#include <iostream>

#include "openlm_cpp/cli/command.h"
#include "openlm_cpp/model/model_stats.h"
#include "openlm_cpp/science/ladder.h"
#include "openlm_cpp/science/ladder_run.h"

namespace {

struct Args {
  std::string ladder, out, csv, fit_out;
  bool emit_slurm = false, collect = false, dry_run = false;
  int64_t nproc = 0;
};

/// This binary, so that the runs use the same build as the driver.
std::string self_exe() {
  char buf[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) throw openlm::Error("cannot find the openlm binary (/proc/self/exe)");
  return std::string(buf, static_cast<std::size_t>(n));
}

openlm::science::ModelSize count(const openlm::ModelConfig& m) {
  const auto c = openlm::count_params(m);
  return {c.total, c.non_embedding};
}

openlm::cli::Registrar reg("ladder", [](CLI::App& root) {
  auto a = std::make_shared<Args>();
  auto* sub = root.add_subcommand("ladder", "Train a scaling ladder, fit L(C) = E + A*C^-alpha and plot it "
                                            "(docs/LADDERS.md); `openlm ladder fit RESULTS.csv --out DIR` fits given rows");
  sub->add_option("ladder", a->ladder, "ladder file (recipes/ladders/*.yaml)");
  sub->add_option("--out", a->out, "output directory: runs/<scale>/, ladder.csv, ladder.json, ladder.png");
  sub->add_flag("--emit-slurm", a->emit_slurm, "write one sbatch script per unfinished run into OUT/slurm/ and train nothing");
  sub->add_flag("--collect", a->collect, "train nothing: collect the finished runs, fit and plot");
  sub->add_flag("--dry-run", a->dry_run, "print each run's parameters, tokens, steps and FLOPs; write nothing");
  sub->add_option("--nproc-per-node", a->nproc, "processes per run (0: the ladder's nproc_per_node)")->capture_default_str();
  sub->require_subcommand(0, 1);

  auto* fit = sub->add_subcommand("fit", "Fit and plot (compute, loss) rows of a CSV: writes OUT/ladder.json, OUT/ladder.png");
  fit->add_option("results", a->csv, "CSV with a header row naming 'compute' and 'loss' (other columns ignored)")->required();
  fit->add_option("--out", a->fit_out, "output directory")->required();
  fit->callback([a] { openlm::science::fit_csv(a->csv, a->fit_out); });

  sub->callback([a, sub, fit] {
    if (sub->got_subcommand(fit)) return;
    if (a->ladder.empty()) throw CLI::RequiredError("ladder (or the subcommand 'fit')");
    if (a->out.empty() && !a->dry_run) throw CLI::RequiredError("--out");
    openlm::cli::require_option(a->nproc >= 0, "--nproc-per-node", "must be >= 0");
    openlm::cli::require_option(int(a->emit_slurm) + int(a->collect) + int(a->dry_run) <= 1, "--emit-slurm",
                                "--emit-slurm, --collect and --dry-run exclude each other");
    const auto spec = openlm::science::load_ladder(a->ladder);
    const auto runs = openlm::science::plan_ladder(spec, a->out.empty() ? "." : a->out, count);
    if (a->dry_run) {
      std::cout << openlm::science::plan_table(spec, runs);
      return;
    }
    openlm::science::LadderOptions o;
    o.out_dir = a->out;
    o.openlm_bin = self_exe();
    o.emit_slurm = a->emit_slurm;
    o.collect_only = a->collect;
    o.nproc_per_node = a->nproc;
    try {
      openlm::science::run_ladder(spec, runs, o);
    } catch (const openlm::science::RunFailed& e) {
      if (e.status() == 128 + 2 || e.status() == 128 + 15) {  // stopped by Ctrl-C / SIGTERM: say so, same status
        std::cerr << e.what() << "\n";
        throw CLI::RuntimeError(e.status());
      }
      throw;
    }
  });
});

}  // namespace
