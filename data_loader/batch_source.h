#pragma once
/// The interface the trainer reads data through, and its factory. The sharded implementation
/// (batch_source.cpp) plans the global stream (sampler.h), gives rank r of W the contiguous slice
/// [r*G/W, (r+1)*G/W) of every global batch of G sequences, decodes ahead on background threads
/// into a bounded queue and hands out micro-batches in order.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "openlm_cpp/core/config.h"

namespace openlm::data {

struct LoaderOptions {
  DataConfig cfg;                 // data: section of the recipe (manifests with weights, ...)
  std::string base_dir;           // relative manifest paths resolve against this (recipe's dir or cwd)
  int64_t seq_len = 0;            // model seq_len; each sample has seq_len + 1 tokens
  int64_t vocab_size = 0;         // for negative-id modulo and range checks
  int64_t global_batch_size = 0;  // sequences per optimizer step over all ranks
  int64_t micro_batch_size = 0;   // sequences per micro-batch on one rank
  int rank = 0, world_size = 1;
  uint64_t seed = 0;
  std::string tokenizer_id;     // the run's Tokenizer::id(); native shards recording another are refused ("" = no check)
  std::string tokenizer_label = "the run's tokenizer";  // names it in that message
};

class BatchSource {
 public:
  virtual ~BatchSource() = default;
  /// Fills `tokens` with the next micro-batch of this rank: int64 [micro_batch, seq_len+1]
  /// (CPU; pinned when CUDA is available), a new tensor each call, so callers may keep several. Returns false when data ran out (on_epoch_end: stop).
  /// Micro-batches come in order: the accum = global/(micro*world) micro-batches of global batch g
  /// for this rank, then those of batch g+1. The SET of sequences in global batch g must not depend on
  /// world_size or micro_batch_size (so W=1 and W=2 runs train on identical global batches).
  virtual bool next(at::Tensor& tokens) = 0;
  /// Like next(tokens), plus a per-token loss mask (bool [micro_batch, seq_len+1], true where the token
  /// is a target that counts) from sources that have one (instruction data); sources without one leave
  /// `loss_mask` undefined (every target counts).
  virtual bool next(at::Tensor& tokens, at::Tensor& loss_mask) {
    loss_mask = at::Tensor();
    return next(tokens);
  }
  /// Small JSON value that restores the exact position (epoch, global position, rng) for ANY world size.
  virtual nlohmann::json state() const = 0;
  virtual void restore(const nlohmann::json& state) = 0;
  /// Cumulative seconds the caller spent blocked in next() waiting for data.
  virtual double wait_seconds() const = 0;
  /// Counters for logging: skipped short members, skipped corrupt records, achieved mix proportions.
  virtual nlohmann::json stats() const = 0;
};

/// Checks what every BatchSource needs of the options (positive seq_len and batch sizes, rank in
/// the world, global batch divisible by micro batch x world, on_epoch_end); throws ConfigError
/// naming the key.
void check_batch_layout(const LoaderOptions& opt);

/// Opens every manifest (OpenLM tar shards or native shards, detected per manifest), validates, and
/// returns the loader. Throws ConfigError/DataError naming the manifest/shard on bad input.
/// cfg.num_workers background threads decode ahead (0 = decode inside next()); at most cfg.prefetch
/// micro-batches are buffered.
std::unique_ptr<BatchSource> make_batch_source(const LoaderOptions& opt);

}  // namespace openlm::data
