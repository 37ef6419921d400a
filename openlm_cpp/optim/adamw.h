#pragma once
/// AdamW (decoupled weight decay, bias-corrected moments) over arbitrary tensors: whole
/// parameters on one rank, or the fp32 flat shards a sharding strategy owns. State tensors match
/// each parameter's shape, dtype and device. Where the LibTorch has ATen's fused kernel for the
/// device (CUDA on 2.x, CPU from 2.4) the update runs fused, otherwise as a loop of ATen ops.
#include <ATen/core/Tensor.h>

#include <string>
#include <utility>
#include <vector>

#include "openlm_cpp/core/config.h"

namespace openlm {

class AdamW {
 public:
  struct Param {
    std::string name;      ///< for checkpoints and messages
    at::Tensor value;      ///< updated in place
    bool decay = true;     ///< apply weight decay
    at::Tensor decay_mask; ///< optional per-element 1/0 decay mask (flat shards mixing norms and weights)
  };
  AdamW(std::vector<Param> params, const OptimConfig& cfg);

  /// One update with learning rate `lr`, reading each parameter's .grad() unless `grads` given
  /// (same order as the params). Undefined gradients skip the parameter.
  void step(double lr, const std::vector<at::Tensor>* grads = nullptr);
  int64_t steps() const { return step_; }

  /// exp_avg / exp_avg_sq per parameter ("<name>.exp_avg", "<name>.exp_avg_sq") and the step.
  std::vector<std::pair<std::string, at::Tensor>> state() const;
  void load_state(const std::vector<std::pair<std::string, at::Tensor>>& state, int64_t step);

  const std::vector<Param>& params() const { return params_; }
  /// Bytes held by the optimizer state.
  int64_t state_bytes() const;

 private:
  std::vector<Param> params_;
  std::vector<at::Tensor> m_, v_;
  OptimConfig cfg_;
  int64_t step_ = 0;
};

/// Whether OpenLM's exclusion option would exempt a parameter (norm gains/biases, embeddings).
bool is_no_decay_name(const std::string& name);

/// Global L2 norm of `grads` (sum of squares in fp64 across tensors). `reduce_sq` combines the
/// local sum of squares across ranks (identity for one process).
double grad_norm(const std::vector<at::Tensor>& grads, double (*reduce_sq)(double, void*) = nullptr,
                 void* ctx = nullptr);
/// Scales grads by min(1, max_norm / (norm + 1e-6)) like torch.nn.utils.clip_grad_norm_.
void clip_grads(const std::vector<at::Tensor>& grads, double max_norm, double norm);

}  // namespace openlm
