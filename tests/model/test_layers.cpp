// Norms, rotary (both conventions and the historic head_rotary), qk-norm and SwiGLU against small
// cases computed by hand.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "openlm_cpp/core/torch_compat.h"
#include "openlm_cpp/model/modules.h"

using namespace openlm;

namespace {
RunOptions fp32() { return RunOptions{}; }
}  // namespace

TEST(Norm, RmsNormByHand) {
  Norm n("rms_norm", 2, 1e-5);
  n->weight.data().copy_(torch::tensor({2.0f, 0.5f}));
  auto y = n->forward(torch::tensor({{3.0f, 4.0f}}), fp32());
  double r = 1.0 / std::sqrt((9.0 + 16.0) / 2.0 + 1e-5);
  EXPECT_NEAR(y[0][0].item<double>(), 3 * r * 2.0, 1e-5);
  EXPECT_NEAR(y[0][1].item<double>(), 4 * r * 0.5, 1e-5);
  EXPECT_EQ(n->parameters().size(), 1u);
}

TEST(Norm, LayerNormVariantsByHand) {
  // x = [1, 3]: mean 2, var 1 -> normalised [-1, 1] (up to eps).
  auto x = torch::tensor({{1.0f, 3.0f}});
  double z = 1.0 / std::sqrt(1.0 + 1e-5);
  for (std::string t : {"default_layer_norm", "lp_layer_norm", "gain_only_layer_norm",
                        "gain_only_lp_layer_norm", "no_wb_layer_norm"}) {
    Norm n(t, 2, 1e-5);
    if (n->weight.defined()) n->weight.data().copy_(torch::tensor({2.0f, 3.0f}));
    if (n->bias.defined()) n->bias.data().copy_(torch::tensor({0.5f, -0.5f}));
    auto y = n->forward(x, fp32());
    double g0 = n->weight.defined() ? 2 : 1, g1 = n->weight.defined() ? 3 : 1;
    double b0 = n->bias.defined() ? 0.5 : 0, b1 = n->bias.defined() ? -0.5 : 0;
    EXPECT_NEAR(y[0][0].item<double>(), -z * g0 + b0, 1e-5) << t;
    EXPECT_NEAR(y[0][1].item<double>(), z * g1 + b1, 1e-5) << t;
  }
  EXPECT_EQ(Norm("default_layer_norm", 4, 1e-5)->parameters().size(), 2u);
  EXPECT_EQ(Norm("gain_only_lp_layer_norm", 4, 1e-5)->parameters().size(), 1u);
  EXPECT_EQ(Norm("no_wb_layer_norm", 4, 1e-5)->parameters().size(), 0u);
}

TEST(Rotary, HalvesConventionByHand) {
  // hd = 4: inv_freq = [1, 1/100]; position 1: angles [1, 0.01].
  Rotary r("rotary", 4, 10000.0);
  auto x = torch::tensor({1.0f, 2.0f, 3.0f, 4.0f}).view({1, 1, 1, 4});
  auto y0 = r.apply(x, 0);
  EXPECT_TRUE(torch::allclose(y0, x));  // position 0 is the identity
  auto y = r.apply(x, 1).flatten();
  double c0 = std::cos(1.0), s0 = std::sin(1.0), c1 = std::cos(0.01), s1 = std::sin(0.01);
  // pairs (x0, x2) at angle 1 and (x1, x3) at angle 0.01
  EXPECT_NEAR(y[0].item<double>(), 1 * c0 - 3 * s0, 1e-5);
  EXPECT_NEAR(y[1].item<double>(), 2 * c1 - 4 * s1, 1e-5);
  EXPECT_NEAR(y[2].item<double>(), 3 * c0 + 1 * s0, 1e-5);
  EXPECT_NEAR(y[3].item<double>(), 4 * c1 + 2 * s1, 1e-5);
}

TEST(Rotary, InterleavedConventionByHand) {
  Rotary r("llama_rotary", 4, 10000.0);
  auto x = torch::tensor({1.0f, 2.0f, 3.0f, 4.0f}).view({1, 1, 1, 4});
  auto y = r.apply(x, 1).flatten();
  double c0 = std::cos(1.0), s0 = std::sin(1.0), c1 = std::cos(0.01), s1 = std::sin(0.01);
  // pairs (x0, x1) at angle 1 and (x2, x3) at angle 0.01
  EXPECT_NEAR(y[0].item<double>(), 1 * c0 - 2 * s0, 1e-5);
  EXPECT_NEAR(y[1].item<double>(), 1 * s0 + 2 * c0, 1e-5);
  EXPECT_NEAR(y[2].item<double>(), 3 * c1 - 4 * s1, 1e-5);
  EXPECT_NEAR(y[3].item<double>(), 3 * s1 + 4 * c1, 1e-5);
}

TEST(Rotary, HeadRotaryRotatesByHeadIndexNotPosition) {
  Rotary r("head_rotary", 2, 10000.0);
  auto x = torch::ones({1, 3, 2, 2});  // [B, T, H, hd]
  auto y = r.apply(x, 0);
  // head 0 untouched at every position; head 1 rotated by angle 1 at every position
  EXPECT_TRUE(torch::allclose(y.select(2, 0), x.select(2, 0)));
  for (int t = 0; t < 3; ++t) {
    EXPECT_NEAR(y[0][t][1][0].item<double>(), std::cos(1.0) - std::sin(1.0), 1e-5);
    EXPECT_NEAR(y[0][t][1][1].item<double>(), std::cos(1.0) + std::sin(1.0), 1e-5);
  }
}

TEST(FeedForward, SwiGLUByHand) {
  ModelConfig c;
  c.dim = 2;
  c.ffn_hidden = 1;
  FeedForward f(c);
  f->w12->weight.data().copy_(torch::tensor({{1.0f, 0.0f}, {0.0f, 2.0f}}));  // gate = x0, up = 2*x1
  f->w3->weight.data().copy_(torch::tensor({{1.0f}, {-1.0f}}));
  auto y = f->forward(torch::tensor({{0.5f, 3.0f}}), fp32());
  double silu = 0.5 / (1 + std::exp(-0.5));
  EXPECT_NEAR(y[0][0].item<double>(), silu * 6.0, 1e-5);
  EXPECT_NEAR(y[0][1].item<double>(), -silu * 6.0, 1e-5);
}

TEST(Attention, QkNormIsOverTheFullVectorBeforeHeads) {
  ModelConfig c;
  c.dim = 4;
  c.n_heads = 2;
  c.qk_norm = true;
  c.norm_type = "no_wb_layer_norm";
  c.positional_embedding_type = "none";
  Attention a(c, 0);
  EXPECT_EQ(a->q_norm->dim, 4);  // width A, not head_dim
  // With in_proj = [I; I; I], q = x normalised over all 4 features.
  a->in_proj->weight.data().copy_(torch::cat({torch::eye(4), torch::eye(4), torch::eye(4)}, 0));
  a->out_proj->weight.data().copy_(torch::eye(4));
  auto x = torch::tensor({{{1.0f, 2.0f, 3.0f, 4.0f}}});
  auto y = a->forward(x, fp32(), nullptr, nullptr, 0);
  EXPECT_TRUE(torch::allclose(y, x, 1e-5, 1e-6));  // one token attends to itself: output = v = x
}

// compat::sdpa (SDPA on 2.x; on 1.13 causal attention in query blocks for long sequences) equals
// softmax(q k^T / sqrt(hd) + causal mask) v spelled out, in values and gradients, for lengths
// below, at and not a multiple of the block size.
TEST(Attention, CompatSdpaEqualsSpelledOutCausalAttention) {
  torch::manual_seed(4);
  for (int64_t T : {5, 128, 300}) {
    auto q0 = torch::randn({2, 3, T, 8}), k0 = torch::randn({2, 3, T, 8}), v0 = torch::randn({2, 3, T, 8});
    auto q1 = q0.clone().requires_grad_(), k1 = k0.clone().requires_grad_(), v1 = v0.clone().requires_grad_();
    auto s = torch::matmul(q1, k1.transpose(-2, -1)) / std::sqrt(8.0);
    s = s.masked_fill(torch::ones({T, T}, torch::kBool).tril().logical_not(), -INFINITY);
    auto ref = torch::matmul(torch::softmax(s, -1), v1);
    auto q2 = q0.clone().requires_grad_(), k2 = k0.clone().requires_grad_(), v2 = v0.clone().requires_grad_();
    auto got = openlm::compat::sdpa(q2, k2, v2, at::Tensor(), true);
    EXPECT_TRUE(torch::allclose(got, ref, 1e-5, 1e-5)) << "T=" << T << " " << (got - ref).abs().max();
    auto w = torch::randn_like(ref);
    (ref * w).sum().backward();
    (got * w).sum().backward();
    for (auto [a, b] : {std::pair{q1, q2}, std::pair{k1, k2}, std::pair{v1, v2}})
      EXPECT_TRUE(torch::allclose(a.grad(), b.grad(), 1e-4, 1e-5)) << "T=" << T << " " << (a.grad() - b.grad()).abs().max();
  }
}

