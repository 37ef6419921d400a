#include "openlm_cpp/model/modules.h"

#include <torch/autograd.h>

#include <cmath>

#include "openlm_cpp/core/error.h"
#include "openlm_cpp/core/torch_compat.h"

namespace openlm {

at::Tensor linear(const at::Tensor& x, const at::Tensor& w, const RunOptions& o) {
  return at::linear(x.to(o.compute), w.to(o.compute));
}

// ------------------------------------------------------------------------------------------
// Norms
// ------------------------------------------------------------------------------------------
NormImpl::NormImpl(const std::string& t, int64_t d, double e) : type(t), dim(d), eps(e) {
  if (t != "no_wb_layer_norm") weight = register_parameter("weight", at::ones({d}));
  if (t == "default_layer_norm" || t == "lp_layer_norm") bias = register_parameter("bias", at::zeros({d}));
}

at::Tensor NormImpl::forward(const at::Tensor& x, const RunOptions& o) {
  if (type == "rms_norm") {
    // OpenLM RmsNorm: normalise in fp32, cast back to the input dtype, then scale by the gain.
    at::Tensor xf = x.to(at::kFloat);
    at::Tensor y = (xf * at::rsqrt(xf.pow(2).mean(-1, true) + eps)).to(x.scalar_type());
    return y * weight;
  }
  // LP variants run in the low-precision compute dtype; the others in the parameter dtype
  // (fp32 under autocast-style bf16, which is what autocast does for layer_norm).
  bool lp = type == "lp_layer_norm" || type == "gain_only_lp_layer_norm";
  at::ScalarType dt = lp ? o.compute : o.param;
  at::Tensor w = weight.defined() ? weight.to(dt) : at::Tensor();
  at::Tensor b = bias.defined() ? bias.to(dt) : at::Tensor();
  return at::layer_norm(x.to(dt), {dim}, w, b, eps);
}

// ------------------------------------------------------------------------------------------
// Rotary
// ------------------------------------------------------------------------------------------
Rotary::Rotary(const std::string& t, int64_t hd, double theta) : type(t), head_dim(hd) {
  if (t == "none") return;
  // inv_freq[i] = theta^(-2i/hd)
  inv_freq = at::pow(theta, at::arange(0, hd, 2, at::kFloat) / static_cast<double>(hd)).reciprocal();
}

at::Tensor Rotary::apply(const at::Tensor& x, int64_t offset) const {
  // x: [B, T, H, hd]
  const int64_t T = x.size(1), H = x.size(2);
  at::Tensor inv = inv_freq.to(x.device());
  if (type == "head_rotary") {
    // Historic OpenLM bug: positions run over the heads axis (head h rotated by angle h*f),
    // identically for every token; offsets are ignored.
    at::Tensor ang = at::outer(at::arange(H, inv.options()), inv);  // [H, hd/2]
    at::Tensor emb = at::cat({ang, ang}, -1).view({1, 1, H, head_dim});
    at::Tensor c = emb.cos().to(x.scalar_type()), s = emb.sin().to(x.scalar_type());
    auto halves = x.chunk(2, -1);
    return x * c + at::cat({-halves[1], halves[0]}, -1) * s;
  }
  if (type == "llama_rotary") {
    at::Tensor ang = at::outer(at::arange(offset, offset + T, inv.options()), inv);  // [T, hd/2] fp32
    // Interleaved pairs (2i, 2i+1), computed in fp32 like OpenLM's complex multiply.
    at::Tensor xf = x.to(at::kFloat).view({x.size(0), T, H, head_dim / 2, 2});
    at::Tensor c = ang.cos().view({1, T, 1, head_dim / 2}), s = ang.sin().view({1, T, 1, head_dim / 2});
    at::Tensor x0 = xf.select(-1, 0), x1 = xf.select(-1, 1);
    at::Tensor out = at::stack({x0 * c - x1 * s, x0 * s + x1 * c}, -1).flatten(3);
    return out.to(x.scalar_type());
  }
  // "rotary": GPT-NeoX halves over the full head_dim.
  const auto& [cos_t, sin_t] = tables(T, offset, x.device());
  at::Tensor c = cos_t.to(x.scalar_type()), s = sin_t.to(x.scalar_type());
  auto halves = x.chunk(2, -1);
  return x * c + at::cat({-halves[1], halves[0]}, -1) * s;
}

const std::pair<at::Tensor, at::Tensor>& Rotary::tables(int64_t T, int64_t offset, const at::Device& device) const {
  if (tables_T_ != T || tables_offset_ != offset || !tables_.first.defined() || tables_.first.device() != device) {
    at::Tensor inv = inv_freq.to(device);
    at::Tensor ang = at::outer(at::arange(offset, offset + T, inv.options()), inv);  // [T, hd/2] fp32
    at::Tensor emb = at::cat({ang, ang}, -1).view({1, T, 1, head_dim});
    tables_ = {emb.cos(), emb.sin()};
    tables_T_ = T;
    tables_offset_ = offset;
  }
  return tables_;
}

// ------------------------------------------------------------------------------------------
// Attention
// ------------------------------------------------------------------------------------------
AttentionImpl::AttentionImpl(const ModelConfig& c, int64_t /*layer*/)
    : n_heads(c.n_heads),
      n_kv(c.kv_heads()),
      hd(c.head_dim()),
      A(c.attn_width()),
      Akv(c.kv_width()),
      rotary(c.positional_embedding_type, c.head_dim(), c.rope_theta),
      use_rotary(c.positional_embedding_type != "none") {
  in_proj = register_module("in_proj", Weight(at::empty({A + 2 * Akv, c.dim})));
  out_proj = register_module("out_proj", Weight(at::empty({c.dim, A})));
  if (c.qk_norm) {
    q_norm = register_module("q_norm", Norm(c.norm_type, A, c.norm_eps));
    k_norm = register_module("k_norm", Norm(c.norm_type, Akv, c.norm_eps));
  }
}

at::Tensor AttentionImpl::forward(const at::Tensor& x, const RunOptions& o, at::Tensor* k_cache,
                                  at::Tensor* v_cache, int64_t offset) {
  const int64_t B = x.size(0), T = x.size(1);
  at::Tensor qkv = linear(x, in_proj->weight, o);  // [B, T, A + 2*Akv]
  auto parts = qkv.split_with_sizes({A, Akv, Akv}, -1);
  at::Tensor q = parts[0], k = parts[1], v = parts[2];
  if (q_norm) {  // over the full q / k vectors, before splitting into heads
    q = q_norm->forward(q, o);
    k = k_norm->forward(k, o);
  }
  q = q.reshape({B, T, n_heads, hd});
  k = k.reshape({B, T, n_kv, hd});
  v = v.reshape({B, T, n_kv, hd});
  if (use_rotary) {
    q = rotary.apply(q, offset);
    k = rotary.apply(k, offset);
  }
  q = q.to(v.scalar_type()).transpose(1, 2);  // [B, H, T, hd]
  k = k.to(v.scalar_type()).transpose(1, 2);
  v = v.transpose(1, 2);
  if (k_cache) {
    if (k_cache->defined()) {
      k = at::cat({*k_cache, k}, 2);
      v = at::cat({*v_cache, v}, 2);
    }
    *k_cache = k;
    *v_cache = v;
  }
  if (n_kv != n_heads) {
    k = k.repeat_interleave(n_heads / n_kv, 1);
    v = v.repeat_interleave(n_heads / n_kv, 1);
  }
  at::Tensor mask;
  bool causal = true;
  if (offset > 0) {
    if (T == 1) {
      causal = false;  // one new token sees the whole cache
    } else {
      at::Tensor qi = at::arange(offset, offset + T, x.options().dtype(at::kLong)).unsqueeze(1);
      at::Tensor kj = at::arange(0, offset + T, x.options().dtype(at::kLong)).unsqueeze(0);
      mask = kj <= qi;  // [T, offset+T]
    }
  }
  at::Tensor out = compat::sdpa(q.contiguous(), k.contiguous(), v.contiguous(), mask, causal);
  out = out.transpose(1, 2).reshape({B, T, A});
  return linear(out, out_proj->weight, o);
}

// ------------------------------------------------------------------------------------------
// Feed-forward
// ------------------------------------------------------------------------------------------
FeedForwardImpl::FeedForwardImpl(const ModelConfig& c) : gelu(c.ffn_type == "gelu"), hidden(c.hidden_dim()) {
  if (gelu) {  // OpenLM builds nn.Sequential(Linear, GELU, Linear): names "0" and "2"
    w12 = register_module("0", Weight(at::empty({hidden, c.dim})));
    w3 = register_module("2", Weight(at::empty({c.dim, hidden})));
  } else {
    w12 = register_module("w12", Weight(at::empty({2 * hidden, c.dim})));
    w3 = register_module("w3", Weight(at::empty({c.dim, hidden})));
  }
}

at::Tensor FeedForwardImpl::forward(const at::Tensor& x, const RunOptions& o) {
  at::Tensor h = linear(x, w12->weight, o);
  if (gelu) return linear(at::gelu(h), w3->weight, o);
  auto gu = h.chunk(2, -1);  // (gate, up)
  return linear(at::silu(gu[0]) * gu[1], w3->weight, o);
}

// ------------------------------------------------------------------------------------------
// Block (+ activation checkpointing)
// ------------------------------------------------------------------------------------------
namespace {
/// Reentrant activation checkpoint: forward without saving activations, recompute the block (or
/// only its attention sublayer, `attention_only`) in backward and back-propagate through the
/// recomputation (parameter grads accumulate there).
at::Tensor checkpointed_part(BlockImpl* blk, const at::Tensor& x, const RunOptions& o, bool attention_only) {
  return attention_only ? blk->attention->forward(blk->attention_norm->forward(x, o), o, nullptr, nullptr, 0)
                        : blk->forward_impl(x, o, nullptr, nullptr, 0);
}

struct CheckpointFn : torch::autograd::Function<CheckpointFn> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, at::Tensor x, BlockImpl* blk,
                            const RunOptions* o, bool attention_only) {
    ctx->saved_data["blk"] = reinterpret_cast<int64_t>(blk);
    ctx->saved_data["opt"] = reinterpret_cast<int64_t>(o);
    ctx->saved_data["attn"] = attention_only;
    ctx->save_for_backward({x});
    at::NoGradGuard no_grad;
    return checkpointed_part(blk, x, *o, attention_only);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto* blk = reinterpret_cast<BlockImpl*>(ctx->saved_data["blk"].toInt());
    auto* o = reinterpret_cast<const RunOptions*>(ctx->saved_data["opt"].toInt());
    at::Tensor x = ctx->get_saved_variables()[0].detach().requires_grad_(true);
    at::Tensor out;
    {
      at::AutoGradMode enable(true);
      out = checkpointed_part(blk, x, *o, ctx->saved_data["attn"].toBool());
    }
    torch::autograd::backward({out}, {grads[0]});
    return {x.grad(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};
}  // namespace

BlockImpl::BlockImpl(const ModelConfig& c, int64_t layer) : layer_id(layer) {
  attention = register_module("attention", Attention(c, layer));
  feed_forward = register_module("feed_forward", FeedForward(c));
  attention_norm = register_module("attention_norm", Norm(c.norm_type, c.dim, c.norm_eps));
  ffn_norm = register_module("ffn_norm", Norm(c.norm_type, c.dim, c.norm_eps));
}

at::Tensor BlockImpl::forward_impl(const at::Tensor& x, const RunOptions& o, at::Tensor* kc,
                                   at::Tensor* vc, int64_t offset) {
  at::Tensor h = x + attention->forward(attention_norm->forward(x, o), o, kc, vc, offset);
  return h + feed_forward->forward(ffn_norm->forward(h, o), o);
}

at::Tensor BlockImpl::forward(const at::Tensor& x, const RunOptions& o, at::Tensor* kc, at::Tensor* vc,
                              int64_t offset) {
  if (o.grad_checkpointing && layer_id % o.ckpt_every == 0 && is_training() && at::GradMode::is_enabled() && !kc &&
      x.requires_grad()) {
    if (!o.ckpt_attention_only) return CheckpointFn::apply(x, this, &o, false);
    at::Tensor h = x + CheckpointFn::apply(x, this, &o, true);  // the FFN keeps its activations
    return h + feed_forward->forward(ffn_norm->forward(h, o), o);
  }
  return forward_impl(x, o, kc, vc, offset);
}

// ------------------------------------------------------------------------------------------
// Transformer
// ------------------------------------------------------------------------------------------
TransformerModule::TransformerModule(const ModelConfig& c) : cfg(c) {
  tok_embeddings = register_module("tok_embeddings", Weight(at::empty({c.vocab_size, c.dim})));
  if (c.post_embed_norm) post_embed_norm = register_module("post_embed_norm", Norm(c.norm_type, c.dim, c.norm_eps));
  // Registered as "layers.{i}" through a holder module so names match OpenLM's ModuleList.
  auto holder = register_module("layers", std::make_shared<torch::nn::Module>());
  for (int64_t i = 0; i < c.n_layers; ++i) layers.push_back(holder->register_module(std::to_string(i), Block(c, i)));
  norm = register_module("norm", Norm(c.norm_type, c.dim, c.norm_eps));
  output = register_module("output", Weight(c.weight_tying ? tok_embeddings->weight
                                                           : at::empty({c.vocab_size, c.dim})));
}

at::Tensor TransformerModule::forward_hidden(const at::Tensor& tokens, KVCache* cache) {
  if (tokens.dim() != 2) throw Error("Transformer::forward: tokens must be [B, T]");
  int64_t offset = cache ? cache->length : 0;
  if (cache && cache->k.empty()) {
    cache->k.resize(layers.size());
    cache->v.resize(layers.size());
  }
  if (hooks) hooks->before_forward(0);
  at::Tensor x = at::embedding(tok_embeddings->weight, tokens);  // [B, T, d], parameter dtype
  if (post_embed_norm) x = post_embed_norm->forward(x, run);
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const int unit = static_cast<int>(i) + 1;
    if (hooks) hooks->before_forward(unit);
    x = layers[i]->forward(x, run, cache ? &cache->k[i] : nullptr, cache ? &cache->v[i] : nullptr, offset);
    if (hooks) hooks->after_forward(unit, x);
  }
  x = norm->forward(x, run);  // [B, T, d]
  if (cache) cache->length += tokens.size(1);
  return x;
}

at::Tensor TransformerModule::forward(const at::Tensor& tokens, KVCache* cache) {
  at::Tensor x = forward_hidden(tokens, cache);
  at::Tensor logits = linear(x, output->weight, run).to(at::kFloat);  // [B, T, V] fp32
  if (hooks) hooks->after_forward(0, logits);
  return logits;
}

}  // namespace openlm
