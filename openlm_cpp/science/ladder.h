#pragma once
/// Scaling ladders (docs/LADDERS.md): a YAML file naming shared train settings and a list of
/// scales (a model plus a token multiplier, or explicit tokens). This header parses one and turns
/// it into planned runs: each a complete, resolved train recipe with its tokens, steps and FLOPs.
/// Torch-free: the parameter count comes from a caller-supplied function (the CLI passes
/// model/model_stats.h's count_params).
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "openlm_cpp/core/config.h"

namespace openlm::science {

struct SlurmSettings {
  int64_t nodes = 1;
  int64_t gpus_per_node = 8;
  int64_t cpus_per_task = 12;
  std::string time = "48:00:00";
  std::string partition, account;
  std::vector<std::string> sbatch;  ///< extra "#SBATCH" options, e.g. "--qos=high"
};

struct LadderScale {
  std::string name;
  std::vector<std::string> model_sets;  ///< "model.name=X" / "model=X" / "model.k=v"
  std::vector<std::string> sets;        ///< the scale's own set: entries, "key=value"
  double multiplier = 0;                ///< tokens = multiplier x tokens_per_param x params (0: tokens given)
  int64_t tokens = 0;                   ///< explicit budget (0: from multiplier)
  std::string base;                     ///< the scale's own base recipe (absolute), "" = the ladder's
  int line = 0;                         ///< where the scale starts in the ladder file
};

struct LadderSpec {
  std::string file;                 ///< the ladder YAML (for messages)
  std::string name;                 ///< `name:` or the file stem
  std::string base;                 ///< base train recipe path (absolute), or "" when inline
  std::string base_text;            ///< inline base recipe (YAML) when `base:` is a mapping
  std::vector<std::string> sets;    ///< shared overrides, "key=value" (values as YAML)
  double tokens_per_param = 20;     ///< Chinchilla / DCLM: 20 tokens per parameter at 1x
  std::string params = "dclm";      ///< dclm | total | non_embedding
  std::string flops = "6nd";        ///< 6nd | 6nd_attention
  int64_t nproc_per_node = 1;
  std::string val_source;           ///< eval source whose final loss is the run's loss ("" = first)
  std::string suite;                ///< downstream suite YAML (absolute), "" = none
  SlurmSettings slurm;
  std::vector<LadderScale> scales;
};

/// Parses a ladder file; unknown keys, wrong types and bad values are ConfigErrors naming the
/// file, the dotted key and the line. Relative paths (base, suite) are taken from the file's folder.
LadderSpec load_ladder(const std::string& path);

struct ModelSize {
  int64_t total = 0;
  int64_t non_embedding = 0;
};
using ParamCounter = std::function<ModelSize(const ModelConfig&)>;

/// The parameters a ladder counts for `m` under `rule`: "total"; "non_embedding"; "dclm" = total
/// with the qk-norm gains left out (DCLM's tables count gain-only norms but not qk-norm:
/// 411,616,256 for open_lm_411m_v2; docs/LADDERS.md).
int64_t ladder_params(const ModelConfig& m, const std::string& rule, const ParamCounter& count);

struct PlannedRun {
  std::string name;
  TrainConfig cfg;               ///< resolved; run_dir = OUT/runs/<name>, resume = latest
  std::string run_dir;
  int64_t params = 0;            ///< the ladder's count (rule `params`)
  ModelSize size;                ///< our own count of the model as built
  double multiplier = 0;         ///< 0 when the scale gave tokens
  int64_t tokens = 0;            ///< budget: floor(multiplier x tokens_per_param x params) or explicit
  int64_t tokens_per_step = 0;   ///< global batch x seq_len
  int64_t steps = 0;             ///< tokens / tokens_per_step, rounded down (as `openlm train` does)
  double flops_per_token = 0;    ///< 6 N (+ 12 L A seq_len with 6nd_attention)
  double flops = 0;              ///< flops_per_token x tokens
  std::string val_source;        ///< the eval source read as the run's loss
};

/// Resolves every scale into a run under `out_dir` (nothing is written). Errors name the ladder
/// file and the scale (`scales[i]`), or the recipe key the core parser refused.
std::vector<PlannedRun> plan_ladder(const LadderSpec& spec, const std::string& out_dir, const ParamCounter& count);

}  // namespace openlm::science
