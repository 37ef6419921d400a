#include "openlm_cpp/model/model_stats.h"

#include <algorithm>

namespace openlm {

int64_t norm_params(const std::string& t, int64_t n) {
  if (t == "default_layer_norm" || t == "lp_layer_norm") return 2 * n;  // gain + bias
  if (t == "no_wb_layer_norm") return 0;
  return n;  // gain only: gain_only_*, rms_norm
}

ParamCounts count_params(const ModelConfig& m) {
  const int64_t d = m.dim, A = m.attn_width(), Akv = m.kv_width(), h = m.hidden_dim();
  int64_t layer = (A + 2 * Akv) * d + A * d;                    // in_proj, out_proj
  layer += m.ffn_type == "gelu" ? 2 * h * d : 3 * h * d;         // w12 + w3 (or 2 gelu linears)
  layer += 2 * norm_params(m.norm_type, d);                      // attention_norm, ffn_norm
  if (m.qk_norm) layer += norm_params(m.norm_type, A) + norm_params(m.norm_type, Akv);
  ParamCounts c;
  c.per_layer = layer;
  c.embedding = m.vocab_size * d;
  c.total = c.embedding + (m.weight_tying ? 0 : m.vocab_size * d) + m.n_layers * layer +
            norm_params(m.norm_type, d) * (m.post_embed_norm ? 2 : 1);
  c.non_embedding = c.total - c.embedding;
  return c;
}

double flops_per_token(const ModelConfig& m) {
  return 6.0 * static_cast<double>(count_params(m).non_embedding) +
         12.0 * static_cast<double>(m.n_layers) * static_cast<double>(m.attn_width()) *
             static_cast<double>(m.seq_len);
}

MemoryEstimate estimate_memory(const ModelConfig& m, const std::string& precision, int64_t micro_batch,
                               bool ckpt, int64_t world, const std::string& strategy, int64_t group) {
  const double P = static_cast<double>(count_params(m).total);
  const bool pure = precision == "pure_bf16";
  const bool amp = precision == "amp_bfloat16" || precision == "amp_bf16";
  const double pbytes = pure ? 2 : 4;   // stored parameter / gradient bytes
  const double cbytes = (pure || amp) ? 2 : 4;  // activation bytes
  double shards = static_cast<double>(world);
  if (strategy == "hybrid_shard") shards = static_cast<double>(group > 0 ? std::min(group, world) : world);
  if (strategy == "no_shard") shards = 1;
  MemoryEstimate e;
  // FULL_SHARD keeps only the shard plus one gathered unit (~ the largest block) at a time.
  const double unit = static_cast<double>(std::max(count_params(m).per_layer, m.vocab_size * m.dim));
  e.params = strategy == "no_shard" ? P * pbytes
             : strategy == "shard_grad_op" ? P * pbytes / shards + P * cbytes
                                           : P * pbytes / shards + 2 * unit * cbytes;
  e.grads = P * pbytes / shards;
  e.optimizer = 2 * P * pbytes / shards;
  const double tok = static_cast<double>(micro_batch * m.seq_len);
  const double d = m.dim, A = m.attn_width(), h = m.hidden_dim();
  // Saved per token per layer: fp32 residuals (2d), norm outputs (2d), qkv + rotated q,k + attn out
  // (6A), ffn w12 out, silu, product (4h) in the compute dtype.
  const double full_layer = 4 * 2 * d + cbytes * (2 * d + 6 * A + 4 * h);
  e.activations = ckpt ? tok * (m.n_layers * 4 * d + full_layer) : tok * m.n_layers * full_layer;
  e.logits = tok * m.vocab_size * 4 * 2;  // fp32 logits and their gradient
  return e;
}

}  // namespace openlm
