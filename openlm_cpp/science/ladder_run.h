#pragma once
/// The ladder driver (`openlm ladder`): trains a planned ladder's runs one after another through
/// `openlm launch` on this machine (or writes one sbatch script per run), skips finished runs and
/// resumes unfinished ones, collects each run's final validation loss (and the downstream suite's
/// scores when the ladder names one), fits the scaling law and writes DIR/ladder.csv,
/// DIR/ladder.json and DIR/ladder.png.
#include <string>
#include <vector>

#include "openlm_cpp/core/error.h"
#include "openlm_cpp/science/ladder.h"

namespace openlm::science {

struct LadderOptions {
  std::string out_dir;
  std::string openlm_bin;       ///< the `openlm` binary the runs are started with
  bool emit_slurm = false;      ///< write DIR/slurm/<run>.sbatch (and the recipes), train nothing
  bool collect_only = false;    ///< train nothing: report and fit the finished runs
  int64_t nproc_per_node = 0;   ///< 0 = the ladder's nproc_per_node
};

/// A run that exited non-zero; `status` is its exit status (130/143 when stopped by a signal).
class RunFailed : public Error {
 public:
  RunFailed(const std::string& what, int status) : Error(what), status_(status) {}
  int status() const { return status_; }

 private:
  int status_;
};

/// The plan as a table (one line per run: params, tokens, steps, FLOPs), for the log and --dry-run.
std::string plan_table(const LadderSpec& spec, const std::vector<PlannedRun>& runs);

/// Runs the ladder as described above. Throws RunFailed when a run fails, openlm::Error when the
/// plot cannot be drawn (gnuplot missing) after ladder.csv and ladder.json were written.
void run_ladder(const LadderSpec& spec, const std::vector<PlannedRun>& runs, const LadderOptions& opt);

/// `openlm ladder fit`: fit and plot (compute, loss) rows of a CSV; writes DIR/ladder.json and
/// DIR/ladder.png.
void fit_csv(const std::string& csv, const std::string& out_dir);

/// The sbatch script of one run (examples/slurm/train.sbatch's srun mode).
std::string sbatch_script(const LadderSpec& spec, const PlannedRun& run, const std::string& openlm_bin,
                          const std::string& out_dir);

}  // namespace openlm::science
