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
};

struct TrainResult {
  int64_t steps_done = 0;     ///< completed optimizer steps (including resumed ones)
  double last_loss = 0;
  std::string run_dir;
  std::string weights_path;   ///< <run_dir>/model.safetensors
  std::string sample;         ///< generated text (when a tokenizer and prompt are configured)
};

/// Trains `cfg` (already validated). Throws Error on bad input and on a non-finite loss (after which
/// the last good weights on disk are left untouched).
TrainResult run_training(const TrainConfig& cfg, const TrainOptions& opt = {});

}  // namespace openlm
