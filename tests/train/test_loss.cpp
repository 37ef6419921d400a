// Cross entropy + z-loss by hand, and k micro-batches equal one batch.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "openlm_cpp/model/transformer.h"
#include "openlm_cpp/train/loss.h"

using namespace openlm;

TEST(Loss, CrossEntropyAndZLossByHand) {
  auto logits = torch::tensor({{{1.0f, 2.0f, 0.0f}, {0.0f, 0.0f, 0.0f}}});  // [1, 2, 3]
  auto targets = torch::tensor({{1L, 2L}});
  auto lp = lm_loss(logits, targets, 1e-2);
  double lse0 = std::log(std::exp(1.0) + std::exp(2.0) + 1.0), lse1 = std::log(3.0);
  double ce = ((lse0 - 2.0) + (lse1 - 0.0)) / 2;
  EXPECT_NEAR(lp.ce.item<double>(), ce, 1e-6);
  EXPECT_NEAR(lp.z.item<double>(), 1e-2 * (lse0 * lse0 + lse1 * lse1) / 2, 1e-7);
  EXPECT_NEAR(lp.total.item<double>(), lp.ce.item<double>() + lp.z.item<double>(), 1e-7);
  auto ignored = lm_loss(logits, torch::tensor({{1L, -100L}}), 0.0);
  EXPECT_NEAR(ignored.ce.item<double>(), lse0 - 2.0, 1e-6);
}

TEST(Loss, MicroBatchesEqualOneBatch) {
  ModelConfig c;
  c.dim = 32;
  c.n_layers = 2;
  c.n_heads = 4;
  c.seq_len = 8;
  c.vocab_size = 50;
  auto tokens = torch::randint(0, 50, {4, 9}, torch::kLong);
  auto in = tokens.slice(1, 0, -1), tg = tokens.slice(1, 1);
  Transformer a(c, 3), b(c, 3);
  lm_loss(a.forward(in), tg, 1e-4).total.backward();
  for (int k = 0; k < 4; ++k)  // 4 micro-batches of 1, each scaled by 1/4
    (lm_loss(b.forward(in.slice(0, k, k + 1)), tg.slice(0, k, k + 1), 1e-4).total / 4.0).backward();
  auto pa = a.parameters(), pb = b.parameters();
  for (std::size_t i = 0; i < pa.size(); ++i)
    EXPECT_TRUE(torch::allclose(pa[i].grad(), pb[i].grad(), 1e-4, 1e-6)) << i;
}

// The fused, chunked head + loss equals lm_loss on the full logits: values and gradients of hidden
// states and weight, for random shapes, ignored targets or none, z-loss on or off, objective
// weights, and chunk sizes that do not divide the tokens.
TEST(FusedHeadLoss, EqualsThePlainPathInValuesAndGradients) {
  at::manual_seed(3);
  struct Case {
    int64_t B, T, d, V, chunk;
    double z, ce_scale, z_scale;
    bool masked;
  };
  for (const Case& c : {Case{2, 7, 16, 37, 5, 1e-4, 1.0, 1.0, false}, Case{3, 5, 8, 101, 4, 0.0, 0.5, 0.25, true},
                        Case{1, 9, 12, 64, 9, 1e-2, 0.3, 0.7, true}, Case{2, 6, 4, 13, 0, 1e-3, 1.0, 1.0, false},
                        Case{4, 3, 8, 29, 1, 1e-4, 0.125, 0.125, true}}) {
    SCOPED_TRACE("B=" + std::to_string(c.B) + " T=" + std::to_string(c.T) + " V=" + std::to_string(c.V) +
                 " chunk=" + std::to_string(c.chunk));
    at::Tensor h0 = torch::randn({c.B, c.T, c.d}) * 2, w0 = torch::randn({c.V, c.d}) * 0.5;
    at::Tensor targets = torch::randint(0, c.V, {c.B, c.T}, torch::kLong);
    if (c.masked) targets = targets.masked_fill(torch::rand({c.B, c.T}) < 0.4, -100);
    at::Tensor h1 = h0.clone().requires_grad_(), w1 = w0.clone().requires_grad_();
    auto plain = lm_loss(at::matmul(h1, w1.t()), targets, c.z);
    (plain.ce * c.ce_scale + plain.z * c.z_scale).backward();
    at::Tensor h2 = h0.clone().requires_grad_(), w2 = w0.clone().requires_grad_();
    auto fused = fused_head_loss(h2, w2, targets, c.z, c.ce_scale, c.z_scale, c.chunk);
    fused.objective.backward();
    EXPECT_NEAR(fused.ce.item<double>(), plain.ce.item<double>(), 1e-5);
    EXPECT_NEAR(fused.z.item<double>(), plain.z.item<double>(), 1e-6);
    EXPECT_FALSE(fused.ce.requires_grad());
    EXPECT_TRUE(torch::allclose(h2.grad(), h1.grad(), 1e-4, 1e-6)) << (h2.grad() - h1.grad()).abs().max();
    EXPECT_TRUE(torch::allclose(w2.grad(), w1.grad(), 1e-4, 1e-6)) << (w2.grad() - w1.grad()).abs().max();
  }
}

// Tied weights: the output weight is the embedding table; both gradients accumulate into it.
TEST(FusedHeadLoss, TiedModelGradientsEqualThePlainForward) {
  ModelConfig c;
  c.dim = 32;
  c.n_layers = 2;
  c.n_heads = 4;
  c.seq_len = 8;
  c.vocab_size = 50;
  for (bool tied : {true, false}) {
    c.weight_tying = tied;
    Transformer a(c, 5), b(c, 5);
    auto tokens = torch::randint(0, 50, {3, 9}, torch::kLong);
    auto in = tokens.slice(1, 0, -1), tgt = tokens.slice(1, 1);
    lm_loss(a.forward(in), tgt, 1e-4).total.backward();
    auto f = fused_head_loss(b.forward_hidden(in), b.output_weight(), tgt, 1e-4, 1.0, 1.0, 7);
    f.objective.backward();
    auto pa = a.named_parameters(), pb = b.named_parameters();
    ASSERT_EQ(pa.size(), pb.size());
    for (std::size_t i = 0; i < pa.size(); ++i)
      EXPECT_TRUE(torch::allclose(pa[i].second.grad(), pb[i].second.grad(), 1e-4, 1e-6))
          << (tied ? "tied " : "untied ") << pa[i].first;
  }
}
