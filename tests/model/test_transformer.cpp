// The assembled transformer: OpenLM parameter names, init statistics, determinism, KV cache and
// activation checkpointing equivalence.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "openlm_cpp/core/recipe.h"
#include "openlm_cpp/model/model_stats.h"
#include "openlm_cpp/model/transformer.h"

using namespace openlm;

namespace {
ModelConfig tiny() {
  ModelConfig c;
  c.name = "t";
  c.dim = 32;
  c.n_layers = 2;
  c.n_heads = 4;
  c.seq_len = 16;
  c.vocab_size = 64;
  return c;
}
int64_t numel(const Transformer& m) {
  int64_t n = 0;
  for (auto& p : m.parameters()) n += p.numel();
  return n;
}
}  // namespace

TEST(Transformer, OpenLMParameterNames) {
  auto c = tiny();
  c.qk_norm = true;
  Transformer m(c, 1);
  std::vector<std::string> names;
  for (auto& [n, t] : m.named_parameters()) names.push_back(n);
  auto has = [&](const std::string& s) { return std::find(names.begin(), names.end(), s) != names.end(); };
  for (std::string n : {"tok_embeddings.weight", "layers.0.attention.in_proj.weight",
                        "layers.0.attention.out_proj.weight", "layers.0.attention.q_norm.weight",
                        "layers.1.attention.k_norm.bias", "layers.0.feed_forward.w12.weight",
                        "layers.1.feed_forward.w3.weight", "layers.0.attention_norm.weight",
                        "layers.0.ffn_norm.bias", "norm.weight", "output.weight"})
    EXPECT_TRUE(has(n)) << n;
  c.ffn_type = "gelu";
  Transformer g(c, 1);
  bool gelu_names = false;
  for (auto& [n, t] : g.named_parameters()) gelu_names |= n == "layers.0.feed_forward.0.weight";
  EXPECT_TRUE(gelu_names);
}

TEST(Transformer, AllocatedCountEqualsFormula) {
  for (std::string norm : {"default_layer_norm", "gain_only_lp_layer_norm", "rms_norm", "no_wb_layer_norm"})
    for (bool qk : {false, true})
      for (std::string ffn : {"swiglu", "gelu"})
        for (bool tie : {false, true}) {
          auto c = tiny();
          c.norm_type = norm;
          c.qk_norm = qk;
          c.ffn_type = ffn;
          c.weight_tying = tie;
          c.n_kv_heads = 2;
          c.post_embed_norm = tie;
          Transformer m(c, 0);
          EXPECT_EQ(numel(m), count_params(c).total) << norm << qk << ffn << tie;
        }
  EXPECT_EQ(numel(Transformer(load_model("open_lm_test_tiny"), 0)), count_params(load_model("open_lm_test_tiny")).total);
}

TEST(Transformer, InitIsDeterministicAndScaled) {
  auto c = tiny();
  Transformer a(c, 7), b(c, 7), d(c, 8);
  auto pa = a.named_parameters(), pb = b.named_parameters(), pd = d.named_parameters();
  for (std::size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(torch::equal(pa[i].second, pb[i].second));
  EXPECT_FALSE(torch::equal(pa[0].second, pd[0].second));
  at::Tensor emb = pa[0].second;
  double s = 1.0 / std::sqrt(32.0);
  EXPECT_NEAR(emb.std().item<double>(), s * 0.987, s * 0.04);  // cutting at 3 sigma shrinks std ~1.3%
  EXPECT_LE(emb.abs().max().item<double>(), 3 * s + 1e-6);
}

TEST(Transformer, KvCacheMatchesFullForward) {
  for (std::string pos : {"rotary", "llama_rotary"}) {
    auto c = tiny();
    c.positional_embedding_type = pos;
    c.n_kv_heads = 2;
    Transformer m(c, 3);
    m.train(false);
    torch::NoGradGuard ng;
    auto tokens = torch::randint(0, 64, {2, 10}, torch::kLong);
    auto full = m.forward(tokens);
    KVCache cache;
    auto first = m.forward(tokens.slice(1, 0, 6), &cache);
    EXPECT_TRUE(torch::allclose(first, full.slice(1, 0, 6), 1e-4, 1e-5));
    auto mid = m.forward(tokens.slice(1, 6, 8), &cache);  // two tokens at once with an offset
    EXPECT_TRUE(torch::allclose(mid, full.slice(1, 6, 8), 1e-4, 1e-5)) << pos;
    for (int t = 8; t < 10; ++t) {
      auto step = m.forward(tokens.slice(1, t, t + 1), &cache);
      EXPECT_TRUE(torch::allclose(step, full.slice(1, t, t + 1), 1e-4, 1e-5)) << pos << t;
    }
  }
}

TEST(Transformer, CausalityHolds) {
  Transformer m(tiny(), 3);
  torch::NoGradGuard ng;
  auto t1 = torch::randint(0, 64, {1, 8}, torch::kLong);
  auto t2 = t1.clone();
  t2[0][7] = (t1[0][7].item<int64_t>() + 1) % 64;
  EXPECT_TRUE(torch::allclose(m.forward(t1).slice(1, 0, 7), m.forward(t2).slice(1, 0, 7)));
}

// Whole blocks, every other block, attention sublayers only (selective), and both: the same
// gradients as without checkpointing.
TEST(Transformer, ActivationCheckpointingGivesSameGradients) {
  auto c = tiny();
  c.n_layers = 3;
  auto tokens = torch::randint(0, 64, {2, 12}, torch::kLong);
  struct Mode {
    bool on;
    int64_t every;
    bool attention_only;
  };
  const Mode modes[] = {{false, 1, false}, {true, 1, false}, {true, 2, false}, {true, 1, true}, {true, 2, true}};
  std::vector<std::vector<at::Tensor>> grads;
  for (const Mode& md : modes) {
    Transformer m(c, 11);
    m.train(true);
    m.set_grad_checkpointing(md.on, md.every, md.attention_only);
    auto logits = m.forward(tokens);
    logits.pow(2).mean().backward();
    grads.emplace_back();
    for (auto& p : m.parameters()) grads.back().push_back(p.grad().clone());
  }
  for (std::size_t k = 1; k < grads.size(); ++k)
    for (std::size_t i = 0; i < grads[0].size(); ++i)
      EXPECT_TRUE(torch::allclose(grads[0][i], grads[k][i], 1e-5, 1e-7)) << "mode " << k << " parameter " << i;
}

TEST(Transformer, Bf16ComputeIsCloseToFp32) {
  Transformer m(tiny(), 5);
  torch::NoGradGuard ng;
  auto tokens = torch::randint(0, 64, {1, 8}, torch::kLong);
  auto ref = m.forward(tokens);
  m.set_compute_dtype(at::kBFloat16);
  auto lo = m.forward(tokens);
  EXPECT_EQ(lo.scalar_type(), at::kFloat);
  EXPECT_LT((lo - ref).abs().max().item<double>(), 0.1);
}
