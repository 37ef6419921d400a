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
