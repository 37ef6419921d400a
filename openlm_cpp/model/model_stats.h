#pragma once
/// Parameter, FLOP and memory figures computed from a ModelConfig alone (no allocation, so 7B
/// works on a laptop). Conventions (fixed): params_non_embedding = total - tok_embeddings (the
/// output layer counts); flops_per_token = 6 * params_non_embedding + 12 * L * A * seq_len.
#include <cstdint>
#include <string>

#include "openlm_cpp/core/config.h"

namespace openlm {

struct ParamCounts {
  int64_t total = 0;
  int64_t embedding = 0;      ///< tok_embeddings
  int64_t non_embedding = 0;  ///< total - embedding
  int64_t per_layer = 0;
};

ParamCounts count_params(const ModelConfig& m);
/// Parameters a norm of width n carries for a norm_type (gain and/or bias).
int64_t norm_params(const std::string& norm_type, int64_t n);
double flops_per_token(const ModelConfig& m);

/// Per-device memory estimate of training (bytes).
struct MemoryEstimate {
  double params = 0, grads = 0, optimizer = 0, activations = 0, logits = 0;
  double total() const { return params + grads + optimizer + activations + logits; }
};
/// strategy: no_shard | shard_grad_op | full_shard | hybrid_shard (shard_group ranks share state).
MemoryEstimate estimate_memory(const ModelConfig& m, const std::string& precision, int64_t micro_batch,
                               bool grad_checkpointing, int64_t world_size, const std::string& strategy,
                               int64_t shard_group_size = 0);

}  // namespace openlm
