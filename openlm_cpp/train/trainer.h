#pragma once
/// The training entry point behind `openlm train`. Construction of the pieces (model, data,
/// optimizer, sinks) lives in the factory part of trainer.cpp; the loop reads top to bottom.
#include <cstdint>
#include <string>

#include "openlm_cpp/core/config.h"

namespace openlm {

struct TrainOptions {
  int64_t stop_at_step = 0;  ///< end after this step (saving a checkpoint) without changing the schedule
  bool quiet = false;        ///< no console lines (tests)
  /// The run directory may hold another run's files (config.json, metrics.jsonl, model.safetensors,
  /// checkpoints/, tensorboard/): they are moved into <run_dir>/previous-<n>/ first. Without it, and
  /// without `resume:`, such a directory is refused before anything is written.
  bool overwrite = false;
};

struct TrainResult {
  int64_t steps_done = 0;     ///< completed optimizer steps (including resumed ones)
  double last_loss = 0;
  std::string run_dir;
  std::string weights_path;   ///< <run_dir>/model.safetensors
  std::string sample;         ///< generated text (when a tokenizer and prompt are configured)
  int stopped_by_signal = 0;  ///< SIGTERM / SIGUSR1 / SIGINT that stopped the run early (after a checkpoint)
};

/// Trains `cfg` (already validated). Throws Error on bad input and on a non-finite loss (after which
/// the last good weights on disk are left untouched).
TrainResult run_training(const TrainConfig& cfg, const TrainOptions& opt = {});

}  // namespace openlm
