#pragma once
/// The OpenLM decoder-only transformer (docs/MODEL.md), behind a small pimpl so that
/// callers do not compile torch/nn. Parameter names equal OpenLM's (tok_embeddings.weight,
/// layers.{i}.attention.in_proj.weight, ..., output.weight) so state dicts map one-to-one.
#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "openlm_cpp/core/config.h"

namespace openlm {

struct TransformerModule;  // torch::nn::Module, model/modules.h

/// Per-layer key/value cache for incremental decoding; k/v are [B, Hkv, T_cached, hd].
struct KVCache {
  std::vector<at::Tensor> k, v;
  int64_t length = 0;  ///< tokens already cached (position offset of the next token)
};

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

/// Callbacks around the model's sharding units (unit 0 = root: embeddings, final norm, output;
/// unit i+1 = block i), used by parallel/ to gather parameters just in time and to hook backward.
class UnitHooks {
 public:
  virtual ~UnitHooks() = default;
  /// Before unit `u` computes in forward (root: before the embedding).
  virtual void before_forward(int u) = 0;
  /// After unit `u`'s forward; `out` is its output (root: the logits).
  virtual void after_forward(int u, const at::Tensor& out) = 0;
};

class Transformer {
 public:
  /// Builds the model on CPU in fp32 and initialises it deterministically from `seed`.
  Transformer(const ModelConfig& cfg, uint64_t seed);
  ~Transformer();

  /// tokens: int64 [B, T] -> logits fp32 [B, T, V]. With `cache`, T new tokens are appended at
  /// positions cache->length.. and the cache is extended.
  at::Tensor forward(const at::Tensor& tokens, KVCache* cache = nullptr);

  /// The forward without the output projection: the final norm's output [B, T, d] (parameter
  /// or compute dtype), for loss kernels that apply the head themselves (train/loss.h). Unit
  /// hooks run as in forward(); the root's after_forward sees the hidden states.
  at::Tensor forward_hidden(const at::Tensor& tokens);
  /// The output projection's weight [V, d] (tok_embeddings' when tied).
  at::Tensor output_weight() const;

  const ModelConfig& config() const { return cfg_; }

  /// Parameters by OpenLM name, in registration order (tied weights appear once per name).
  NamedTensors named_parameters() const;
  /// Unique parameter tensors (tied weights once).
  std::vector<at::Tensor> parameters() const;
  /// Parameters grouped by sharding unit (see UnitHooks), tied weights once (in the root).
  std::vector<NamedTensors> unit_parameters() const;
  /// Installs (or removes, with nullptr) unit callbacks; not owned.
  void set_unit_hooks(UnitHooks* hooks);

  /// Copies `tensors` into the parameters by name; every parameter must be present with the
  /// same shape, unless `allow_missing`. Extra names are an error listing them.
  void load_named(const NamedTensors& tensors, bool allow_missing = false);

  /// Matmuls, attention and activations in this dtype (bf16 for amp), parameters unchanged.
  void set_compute_dtype(at::ScalarType dt);
  at::ScalarType compute_dtype() const;
  /// Recompute blocks in backward instead of storing their activations: every `every`-th block
  /// (0, every, 2*every, ...), the whole block or only its attention sublayer (selective).
  void set_grad_checkpointing(bool on, int64_t every = 1, bool attention_only = false);
  /// Moves (and casts floating parameters) to a device/dtype.
  void to(const at::Device& device, at::ScalarType param_dtype);
  at::Device device() const;
  void train(bool on);

  TransformerModule& module();

 private:
  ModelConfig cfg_;
  std::shared_ptr<TransformerModule> m_;
};

/// Truncated normal N(0, std) cut at +-3 std, in place (OpenLM's init).
void trunc_normal_(at::Tensor& t, double std);

}  // namespace openlm
