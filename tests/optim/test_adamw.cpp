// AdamW against a hand-computed update, and gradient clipping by the global norm.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "openlm_cpp/optim/adamw.h"

using namespace openlm;

TEST(AdamW, TwoStepsByHand) {
  OptimConfig c;
  c.beta1 = 0.9;
  c.beta2 = 0.95;
  c.eps = 1e-8;
  c.wd = 0.1;
  auto p = torch::tensor({1.0, -2.0}, torch::kDouble);
  AdamW opt({{"p", p, true, {}}}, c);
  std::vector<at::Tensor> g1{torch::tensor({0.5, 0.25}, torch::kDouble)};
  opt.step(0.01, &g1);
  // Step 1: m = 0.1 g, v = 0.05 g^2, mhat = g, vhat = g^2 -> update = sign(g) (eps aside).
  double p0 = 1.0 * (1 - 0.01 * 0.1) - 0.01 * 0.5 / (0.5 + 1e-8);
  EXPECT_NEAR(p[0].item<double>(), p0, 1e-12);
  std::vector<at::Tensor> g2{torch::tensor({-0.5, 0.25}, torch::kDouble)};
  opt.step(0.01, &g2);
  double m = 0.9 * 0.05 + 0.1 * -0.5, v = 0.95 * 0.0125 + 0.05 * 0.25;
  double mhat = m / (1 - 0.81), vhat = v / (1 - 0.9025);
  double p1 = p0 * (1 - 0.001) - 0.01 * mhat / (std::sqrt(vhat) + 1e-8);
  EXPECT_NEAR(p[0].item<double>(), p1, 1e-12);
  EXPECT_EQ(opt.steps(), 2);
}

TEST(AdamW, NoDecayExclusionAndStateRoundTrip) {
  OptimConfig c;
  c.wd = 0.5;
  auto a = torch::ones({2}), b = torch::ones({2});
  AdamW opt({{"w", a, true, {}}, {"norm.weight", b, false, {}}}, c);
  std::vector<at::Tensor> zero{torch::zeros({2}), torch::zeros({2})};
  opt.step(0.1, &zero);
  EXPECT_NEAR(a[0].item<double>(), 0.95, 1e-7);
  EXPECT_NEAR(b[0].item<double>(), 1.0, 1e-7);
  EXPECT_TRUE(is_no_decay_name("layers.0.attention_norm.weight"));
  EXPECT_TRUE(is_no_decay_name("tok_embeddings.weight"));
  EXPECT_FALSE(is_no_decay_name("layers.0.attention.in_proj.weight"));
  auto st = opt.state();
  AdamW other({{"w", a.clone(), true, {}}, {"norm.weight", b.clone(), false, {}}}, c);
  other.load_state(st, opt.steps());
  EXPECT_EQ(other.steps(), 1);
  EXPECT_THROW(other.load_state({}, 1), std::exception);
}

TEST(Clip, GlobalNormAcrossTensors) {
  std::vector<at::Tensor> g{torch::tensor({3.0f}), torch::tensor({4.0f})};
  double n = grad_norm(g);
  EXPECT_NEAR(n, 5.0, 1e-6);
  clip_grads(g, 1.0, n);
  EXPECT_NEAR(g[0].item<double>(), 0.6, 1e-5);
  EXPECT_NEAR(g[1].item<double>(), 0.8, 1e-5);
  std::vector<at::Tensor> small{torch::tensor({0.1f})};
  clip_grads(small, 1.0, grad_norm(small));
  EXPECT_FLOAT_EQ(small[0].item<float>(), 0.1f);
}
