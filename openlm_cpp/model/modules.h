#pragma once
/// Internal torch::nn modules of the OpenLM transformer. Include only from .cpp files.
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include "openlm_cpp/core/config.h"
#include "openlm_cpp/model/transformer.h"

namespace openlm {

/// Shared forward-time switches (set on the root, read by every module).
struct RunOptions {
  at::ScalarType compute = at::kFloat;  ///< matmul / activation dtype (bf16 = autocast-style)
  at::ScalarType param = at::kFloat;    ///< stored parameter dtype (bf16 for pure_bf16)
  bool grad_checkpointing = false;
  int64_t ckpt_every = 1;            ///< checkpoint blocks whose index is a multiple of this
  bool ckpt_attention_only = false;  ///< recompute only attention (and its norm), keep the FFN's activations
};

/// A module holding one weight matrix named "weight" (Linear without bias, or an embedding
/// table). Owning the tensor directly lets `output` share it with `tok_embeddings` when tied.
struct WeightImpl : torch::nn::Module {
  explicit WeightImpl(at::Tensor w) { weight = register_parameter("weight", std::move(w)); }
  at::Tensor weight;
};
TORCH_MODULE(Weight);

/// The six OpenLM norms. Parameter names: weight (gain), bias.
struct NormImpl : torch::nn::Module {
  NormImpl(const std::string& type, int64_t dim, double eps);
  at::Tensor forward(const at::Tensor& x, const RunOptions& o);
  std::string type;
  int64_t dim;
  double eps;
  at::Tensor weight, bias;
};
TORCH_MODULE(Norm);

/// Rotary tables and application for rotary / llama_rotary / head_rotary.
struct Rotary {
  Rotary(const std::string& type, int64_t head_dim, double theta);
  /// x: [B, T, H, hd]; positions start at `offset`. Returns the rotated tensor in x's dtype.
  at::Tensor apply(const at::Tensor& x, int64_t offset) const;
  std::string type;
  int64_t head_dim;
  at::Tensor inv_freq;  // [hd/2] fp32

 private:
  /// "rotary" cos/sin tables [1, T, 1, hd] (fp32) for the last (T, offset, device): q and k of every
  /// layer's forward (and activation checkpointing's recomputation) reuse them instead of
  /// recomputing arange/outer/cat/cos/sin per call.
  const std::pair<at::Tensor, at::Tensor>& tables(int64_t T, int64_t offset, const at::Device& device) const;
  mutable std::pair<at::Tensor, at::Tensor> tables_;
  mutable int64_t tables_T_ = -1, tables_offset_ = -1;
};

struct AttentionImpl : torch::nn::Module {
  AttentionImpl(const ModelConfig& c, int64_t layer);
  /// x: [B, T, d] -> [B, T, d]
  at::Tensor forward(const at::Tensor& x, const RunOptions& o, at::Tensor* k_cache, at::Tensor* v_cache,
                     int64_t offset);
  int64_t n_heads, n_kv, hd, A, Akv;
  Weight in_proj{nullptr}, out_proj{nullptr};
  Norm q_norm{nullptr}, k_norm{nullptr};
  Rotary rotary;
  bool use_rotary;
};
TORCH_MODULE(Attention);

/// swiglu/swiglu_torch (w12, w3) or gelu (Sequential-style names "0" and "2").
struct FeedForwardImpl : torch::nn::Module {
  FeedForwardImpl(const ModelConfig& c);
  at::Tensor forward(const at::Tensor& x, const RunOptions& o);
  bool gelu;
  int64_t hidden;
  Weight w12{nullptr}, w3{nullptr};  // gelu: w12 = "0" (d -> 4d), w3 = "2" (4d -> d)
};
TORCH_MODULE(FeedForward);

struct BlockImpl : torch::nn::Module {
  BlockImpl(const ModelConfig& c, int64_t layer);
  /// Runs the block, through activation checkpointing when enabled and training.
  at::Tensor forward(const at::Tensor& x, const RunOptions& o, at::Tensor* k_cache = nullptr,
                     at::Tensor* v_cache = nullptr, int64_t offset = 0);
  at::Tensor forward_impl(const at::Tensor& x, const RunOptions& o, at::Tensor* k_cache,
                          at::Tensor* v_cache, int64_t offset);
  int64_t layer_id;
  Attention attention{nullptr};
  FeedForward feed_forward{nullptr};
  Norm attention_norm{nullptr}, ffn_norm{nullptr};
};
TORCH_MODULE(Block);

struct TransformerModule : torch::nn::Module {
  explicit TransformerModule(const ModelConfig& c);
  at::Tensor forward(const at::Tensor& tokens, KVCache* cache);
  /// Everything but the output projection: the final norm's output [B, T, d].
  at::Tensor forward_hidden(const at::Tensor& tokens, KVCache* cache);
  void init_weights();
  ModelConfig cfg;
  RunOptions run;
  UnitHooks* hooks = nullptr;
  Weight tok_embeddings{nullptr};
  Norm post_embed_norm{nullptr};
  std::vector<Block> layers;
  Norm norm{nullptr};
  Weight output{nullptr};
};

/// Linear in the compute dtype (autocast-style: bf16 inputs and weights, bf16 output).
at::Tensor linear(const at::Tensor& x, const at::Tensor& w, const RunOptions& o);

}  // namespace openlm
