#include "openlm_cpp/train/loss.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>

namespace openlm {

LossParts lm_loss(const at::Tensor& logits, const at::Tensor& targets, double z_coef) {
  const int64_t V = logits.size(-1);
  at::Tensor flat = logits.reshape({-1, V}).to(at::kFloat);
  LossParts out;
  out.ce = at::cross_entropy_loss(flat, targets.reshape({-1}), {}, at::Reduction::Mean, -100);
  if (z_coef > 0) {
    out.z = z_coef * at::logsumexp(flat, -1).pow(2).mean();
    out.total = out.ce + out.z;
  } else {
    out.z = at::zeros({}, flat.options());
    out.total = out.ce;
  }
  return out;
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

/// Forward computes the objective and, chunk by chunk, its gradients; backward scales them.
struct ChunkedHeadLoss : torch::autograd::Function<ChunkedHeadLoss> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& hidden, const at::Tensor& weight,
                               const at::Tensor& targets, double z_coef, double ce_scale, double z_scale,
                               int64_t chunk, int64_t compute_type) {
    const auto cdt = static_cast<at::ScalarType>(compute_type);
    const int64_t N = hidden.size(0), V = weight.size(0);
    at::Tensor w = weight.to(cdt);  // [V, d]
    at::Tensor h = hidden.to(cdt);  // [N, d]
    at::Tensor valid = targets.ne(-100);
    at::Tensor validf = valid.to(at::kFloat);                    // [N]
    at::Tensor inv_valid = validf.sum().clamp_min(1).reciprocal();  // 1 / #targets, no host sync
    at::Tensor safe = targets.masked_fill(valid.logical_not(), 0);  // gather index for ignored rows
    at::Tensor grad_h = at::empty({N, h.size(1)}, hidden.options().dtype(at::kFloat));
    at::Tensor grad_w = at::zeros({V, w.size(1)}, weight.options().dtype(at::kFloat));
    at::Tensor ce_sum = at::zeros({}, validf.options()), z_sum = at::zeros({}, validf.options());
    at::Tensor ce_row = validf * inv_valid * ce_scale;  // d objective / d ce_i   [N]
    const double z_row = z_coef > 0 ? z_scale * z_coef * 2.0 / static_cast<double>(N) : 0.0;
    for (int64_t s = 0; s < N; s += chunk) {
      const int64_t n = std::min(chunk, N - s);
      at::Tensor hc = h.narrow(0, s, n);
      at::Tensor logits = at::mm(hc, w.t()).to(at::kFloat);  // [n, V] fp32
      at::Tensor lse = at::logsumexp(logits, 1);             // [n]
      at::Tensor idx = safe.narrow(0, s, n).unsqueeze(1);    // [n, 1]
      at::Tensor picked = logits.gather(1, idx).squeeze(1);
      ce_sum += ((lse - picked) * validf.narrow(0, s, n)).sum();
      if (z_coef > 0) z_sum += lse.pow(2).sum();
      // d objective / d logits = ce_row * (softmax - onehot) + z_row * lse * softmax, in place.
      at::Tensor cr = ce_row.narrow(0, s, n);
      at::Tensor row = z_coef > 0 ? cr + lse * z_row : cr;
      at::Tensor d = logits.sub_(lse.unsqueeze(1)).exp_().mul_(row.unsqueeze(1));
      d.scatter_add_(1, idx, cr.neg().unsqueeze(1));
      at::Tensor dc = d.to(cdt);
      grad_h.narrow(0, s, n).copy_(at::mm(dc, w));  // [n, d]
      grad_w.add_(at::mm(dc.t(), hc));              // [V, d]
    }
    at::Tensor ce = ce_sum * inv_valid;
    at::Tensor z = z_sum * (z_coef / static_cast<double>(N));
    at::Tensor objective = ce * ce_scale + z * z_scale;
    ctx->save_for_backward({grad_h.to(hidden.scalar_type()), grad_w.to(weight.scalar_type())});
    ctx->mark_non_differentiable({ce, z});
    return {objective, ce, z};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    at::Tensor g = grads[0];
    at::Tensor gh = g.defined() ? saved[0] * g.to(saved[0].scalar_type()) : at::zeros_like(saved[0]);
    at::Tensor gw = g.defined() ? saved[1] * g.to(saved[1].scalar_type()) : at::zeros_like(saved[1]);
    return {gh, gw, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

HeadLoss fused_head_loss(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
                         double z_coef, double ce_scale, double z_scale, int64_t chunk_tokens,
                         c10::ScalarType compute) {
  const int64_t V = weight.size(0), d = weight.size(1);
  at::Tensor h = hidden.reshape({-1, d});
  at::Tensor t = targets.reshape({-1});
  TORCH_CHECK(h.size(0) == t.size(0), "fused_head_loss: ", h.size(0), " hidden rows but ", t.size(0), " targets");
  int64_t chunk = chunk_tokens > 0 ? chunk_tokens : std::max<int64_t>(64, (int64_t{64} << 20) / (4 * V));
  auto out = ChunkedHeadLoss::apply(h, weight, t, z_coef, ce_scale, z_scale, chunk, static_cast<int64_t>(compute));
  return {out[0], out[1], out[2]};
}

}  // namespace openlm
