#pragma once
// The training step both CPU and GPU benchmarks time: what the trainer runs per micro-batch on one
// device without accumulation (forward to the final norm, fused head + cross entropy + z-loss 1e-4,
// backward, global-norm clipping at 1, AdamW), on fixed tokens [B, T+1]. Returns the objective
// (detached, not synchronised).
#include <ATen/ATen.h>

#include <vector>

#include "openlm_cpp/model/transformer.h"
#include "openlm_cpp/optim/adamw.h"
#include "openlm_cpp/train/loss.h"

namespace openlm::bench {

inline at::Tensor train_step(Transformer& m, AdamW& opt, const at::Tensor& tokens, double lr) {
  auto lp = fused_head_loss(m.forward_hidden(tokens.slice(1, 0, -1)), m.output_weight(), tokens.slice(1, 1), 1e-4, 1.0,
                            1.0, 0, m.compute_dtype());
  lp.objective.backward();
  std::vector<at::Tensor> g;
  for (auto& p : opt.params()) g.push_back(p.value.grad());
  clip_grads(g, 1.0, grad_norm(g));
  opt.step(lr);
  for (auto& p : opt.params()) p.value.mutable_grad() = at::Tensor();
  return lp.objective.detach();
}

/// AdamW with OpenLM's defaults over every parameter of `m` (all decayed).
inline AdamW make_adamw(Transformer& m) {
  std::vector<AdamW::Param> ps;
  for (auto& [n, t] : m.named_parameters()) ps.push_back({n, t, true, at::Tensor()});
  return AdamW(ps, OptimConfig{});
}

}  // namespace openlm::bench
