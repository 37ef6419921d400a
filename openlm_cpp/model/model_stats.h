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

/// Parameters a model declares, computed with overflow checks: a count that does not fit in int64,
/// or is absurd (more than kMaxParams), is a ConfigError naming the key responsible (dim, n_layers,
/// vocab_size, ffn_hidden, n_heads) but no file (check_model_size adds it).
ParamCounts count_params(const ModelConfig& m);
/// 10^15 parameters (4 PB of fp32 weights): no config beyond this describes a model anyone builds.
inline constexpr int64_t kMaxParams = 1000000000000000;
/// count_params, with `file` (the config.json / recipe the model came from) named in its errors.
ParamCounts check_model_size(const ModelConfig& m, const std::string& file);
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

/// Memory a process on this machine can use, for refusing models before anything is allocated:
/// physical RAM (sysconf(_SC_PHYS_PAGES) x page size), lowered by a cgroup limit when one is set
/// (v2 memory.max, v1 memory.limit_in_bytes). $OPENLM_MEMORY_LIMIT (bytes, or with a K/M/G/T[iB]
/// suffix; 0 = no check) replaces both.
struct MemoryLimit {
  double bytes = 0;    ///< 0 = unknown or disabled: nothing is refused
  std::string what;    ///< "physical memory", "cgroup memory limit", "OPENLM_MEMORY_LIMIT"
};
MemoryLimit host_memory_limit();

/// Throws ConfigError naming `file` when `bytes` (the estimate of what `purpose` needs for model
/// `m`, e.g. "its fp32 weights") exceed `limit`; the message gives the estimate, the parameter count
/// and the limit. No-op when limit.bytes is 0.
void require_memory(const ModelConfig& m, double bytes, const std::string& purpose, const std::string& file,
                    const MemoryLimit& limit);

/// The check before building a model to load weights into (eval, generate, import-hf, export-hf):
/// check_model_size, then its fp32 weights (4 bytes per parameter, a lower bound of what loading
/// takes) against host_memory_limit().
void check_weights_fit(const ModelConfig& m, const std::string& file);

/// "1.50 GiB".
std::string human_bytes(double bytes);

}  // namespace openlm
