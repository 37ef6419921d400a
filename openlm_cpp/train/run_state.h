#pragma once
/// Internal to the trainer: everything one run holds (built by trainer.cpp's `build()`), and the
/// checkpoint side of the run (checkpointing.cpp): sharded saves, resume, init_from.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <future>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "data_loader/batch_source.h"
#include "openlm_cpp/core/config.h"
#include "openlm_cpp/core/dist_env.h"
#include "openlm_cpp/model/transformer.h"
#include "openlm_cpp/optim/adamw.h"
#include "openlm_cpp/parallel/comm.h"
#include "openlm_cpp/parallel/fsdp.h"
#include "openlm_cpp/train/averaging.h"
#include "openlm_cpp/train/metrics.h"
#include "openlm_cpp/train/validation.h"

namespace openlm {

namespace checkpoint {
class LiveHandOff;  // checkpoint/live_handoff.h
}

/// A checkpoint whose files are being written in the background (checkpoint.async).
struct PendingSave {
  int64_t step = 0;
  nlohmann::json metadata;                    // rank 0: everything but the checksums
  std::future<nlohmann::json> files;          // this rank's {file: xxh64}
  // On CPU the writer waits for the state to be handed over (copied) before the next optimizer
  // update, or to be let read it live while the owner waits for it. Null when the writer reads
  // copies from the start (CUDA).
  std::shared_ptr<checkpoint::LiveHandOff> live;
  ~PendingSave();  // a save never handed over is abandoned: its writer stops instead of waiting
};

struct Run {
  TrainConfig cfg;
  DistEnv env;
  at::Device device{at::kCPU};
  std::unique_ptr<Transformer> model;
  std::unique_ptr<parallel::Communicator> comm;   // always (a single-process one for one rank)
  std::unique_ptr<parallel::ShardedModel> sharded; // multi-rank runs only
  std::unique_ptr<AdamW> opt;
  std::unique_ptr<data::BatchSource> data;
  MetricsFanout sinks;
  int64_t accum = 1;
  int64_t total = 0;     // optimizer steps the schedule spans
  int64_t start = 0;     // completed steps at start (resume)
  int64_t tokens_seen = 0;
  int64_t state_bytes = 0;  // this rank's parameters + gradients + optimizer state
  std::unique_ptr<PendingSave> pending;  // checkpoint.async: the write in flight
  // checkpoint.async on CPU: the copies the last hand-over made, reused by the next one (at most
  // one copy of this rank's checkpointed state stays allocated between checkpoints).
  std::vector<std::vector<at::Tensor>> handoff_spare;
  std::string resumed_from;  // the checkpoint `resume:` loaded; retention never deletes it
  std::unique_ptr<Validator> validator;      // eval.val_data (null without)
  std::unique_ptr<WeightAverages> averages;  // averagers (null without)
  std::string heldout_manifest;              // the default corpus's held-out split, when it is used
};

// ---- run_inputs.cpp: before anything is built or written -------------------------------------
/// A run directory holding another run's files is refused unless the run resumes or `overwrite`
/// moves them into <run_dir>/previous-<n>/; every rank decides the same without a collective.
void claim_run_dir(const TrainConfig& cfg, const DistEnv& env, bool overwrite);
/// Fills in the default corpus (`heldout_manifest`: its held-out split) and init_from's model when
/// the recipe has none, and checks that every input path exists (ConfigError naming the key).
TrainConfig resolve_inputs(TrainConfig cfg, std::string& heldout_manifest);
/// Tokenizer and model vocabulary agree (or model.vocab_size follows the tokenizer); returns the
/// tokenizer's identity, "" without one.
std::string reconcile_tokenizer(TrainConfig& cfg);
/// Refuses a run whose estimated memory cannot fit (device and host), naming the recipe.
void check_training_memory(const TrainConfig& cfg, const DistEnv& env, const at::Device& device);
/// init_from weights (safetensors file, run or checkpoint directory, Hugging Face directory).
void load_weights_into(Transformer& m, const std::string& src);

/// One optimizer step's micro-batches: tokens [micro, seq_len + 1] and, for instruction data, the
/// loss mask (undefined otherwise).
using MicroBatches = std::vector<std::pair<at::Tensor, at::Tensor>>;

struct StepStats {
  double loss = 0;       ///< mean next-token cross entropy over the global batch (all ranks)
  double z_loss = 0;     ///< mean z-loss term (before its coefficient)
  double grad_norm = 0;  ///< before clipping
};

/// Reads the `accum` micro-batches of the next step; false when the data ended (every rank sees
/// the same global order, so all ranks agree).
bool next_micro_batches(Run& r, MicroBatches& out);
/// Collective. Forward and backward of every micro-batch, gradient reduction (sharded runs),
/// clipping and the optimizer update at learning rate `lr`; the same call for one process and
/// every sharding strategy.
StepStats train_step(Run& r, const MicroBatches& mbs, double lr);
/// Collective when evaluation is due: validation of eval.val_data (train/validation.h) logged as
/// {"kind": "eval", "step", "source", "loss", "ppl", "tokens", "sequences"} records.
void run_validation(Run& r, int64_t step);
/// One-process runs: for each of the model's named parameters (tied ones under both names), the
/// index of its tensor among the optimizer's de-duplicated parameters (and so in the averages).
std::vector<std::size_t> optimizer_slots(const Run& r);
/// The averages' full weights (collective; rank 0 gets them), by averager name.
std::vector<std::pair<std::string, NamedTensors>> full_averages(Run& r);

/// Collective. Writes checkpoint `step`: every rank that holds a distinct shard writes its slices
/// of the weights and optimizer state (no gather), rank 0 adds metadata.json and the RNG states of
/// every rank, and commits. With checkpoint.async the files are written by a background thread
/// (on CPU from the state handed over at the next update, see wait_for_live_save; on CUDA from
/// host copies) and committed by
/// a later poll_pending_save/finish_pending_save.
void save_run_checkpoint(Run& r, int64_t step);
/// Collective, once per step while a save is pending: commits it when every rank has written.
void poll_pending_save(Run& r);
/// Collective: waits for and commits the pending save (rethrows its error).
void finish_pending_save(Run& r);
/// Before the state changes (the optimizer update): a pending CPU save's writer gets its state.
/// Tensors it has not begun are copied for it, the one it is reading is waited for (no
/// collective; the commit stays with the polls).
void wait_for_live_save(Run& r);
/// CPU runs with async checkpoints before their end: the buffers wait_for_live_save copies into,
/// made (and touched) once now rather than at the first checkpoint's hand-off.
void prepare_live_saves(Run& r);

/// Collective. `resume:`: restores weights, optimizer, schedule position, data position and RNG
/// from the chosen checkpoint, resharding from any saved world size and strategy.
void resume_run(Run& r);
/// `init_from:` with init_from_mode full: weights, optimizer state and schedule position of a
/// native checkpoint (not the data position: fine-tuning reads new data).
void init_full_state(Run& r, const std::string& checkpoint_dir);

/// Full fp32 weights by OpenLM name (collective in multi-rank runs; only rank 0 gets them).
NamedTensors full_weights(Run& r);

}  // namespace openlm
