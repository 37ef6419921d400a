#pragma once
/// Next-token cross entropy with OpenLM's z-loss.
#include <ATen/core/Tensor.h>

namespace openlm {

struct LossParts {
  at::Tensor ce;     ///< mean cross entropy over non-ignored targets (fp32 scalar)
  at::Tensor z;      ///< coef * mean(logsumexp(logits)^2) over all positions (0 if coef == 0)
  at::Tensor total;  ///< ce + z (what is back-propagated)
};

/// logits: fp32 [B, T, V]; targets: int64 [B, T] (ignore index -100).
LossParts lm_loss(const at::Tensor& logits, const at::Tensor& targets, double z_coef);

}  // namespace openlm
