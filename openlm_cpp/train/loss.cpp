#include "openlm_cpp/train/loss.h"

#include <ATen/ATen.h>

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

}  // namespace openlm
