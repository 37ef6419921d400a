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

struct HeadLoss {
  at::Tensor objective;  ///< ce_scale * ce + z_scale * z: the only differentiable output
  at::Tensor ce;         ///< as LossParts::ce (detached)
  at::Tensor z;          ///< as LossParts::z (detached)
};

/// The output head and the loss in one pass, chunk by chunk over the tokens, so the [B*T, V]
/// logits never exist at once (the plain path holds them in fp32, plus their softmax for
/// backward): for each chunk, logits = hidden_chunk * weight^T (in `compute` dtype, then fp32),
/// one logsumexp serves cross entropy and z-loss, and the gradients with respect to the chunk's
/// hidden states and to the weight are computed right there (a custom autograd function; backward
/// only scales them). Same values and gradients as lm_loss on the full logits within fp32
/// round-off. Works with ignored targets (-100) and with tied weights (the weight receives this
/// gradient besides the embedding's).
///   hidden [B, T, d] (or [N, d]), weight [V, d], targets int64 [B, T] (or [N]).
///   ce_scale, z_scale: the objective's weights (e.g. 1/accumulation, or a token share).
///   chunk_tokens: tokens per chunk; 0 = as many as fit 64 MiB of fp32 logits (at least 64).
HeadLoss fused_head_loss(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
                         double z_coef, double ce_scale = 1.0, double z_scale = 1.0, int64_t chunk_tokens = 0,
                         c10::ScalarType compute = c10::ScalarType::Float);

}  // namespace openlm
