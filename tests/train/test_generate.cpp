// Generation with and without the KV cache gives the same tokens (greedy and sampled); sequence_logits.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "openlm_cpp/model/transformer.h"
#include "openlm_cpp/train/generate.h"
#include "openlm_cpp/train/inference.h"

using namespace openlm;

TEST(Generate, KvCacheDoesNotChangeTokens) {
  ModelConfig c;
  c.dim = 32;
  c.n_layers = 2;
  c.n_heads = 4;
  c.seq_len = 24;
  c.vocab_size = 40;
  Transformer m(c, 9);
  std::vector<int64_t> prompt{3, 7, 11};
  for (double temp : {0.0, 1.0}) {
    SampleOptions o;
    o.max_new_tokens = 30;  // runs past seq_len: exercises the sliding window
    o.temperature = temp;
    o.top_k = temp > 0 ? 10 : 0;
    o.top_p = temp > 0 ? 0.9 : 1.0;
    o.seed = 5;
    o.use_kv_cache = true;
    auto with = generate(m, prompt, o);
    o.use_kv_cache = false;
    auto without = generate(m, prompt, o);
    EXPECT_EQ(with, without) << "temperature " << temp;
    EXPECT_EQ(with.size(), prompt.size() + 30);
    for (auto id : with) EXPECT_LT(id, 40);
  }
}

TEST(Generate, TopKOneIsGreedy) {
  ModelConfig c;
  c.dim = 16;
  c.n_layers = 1;
  c.n_heads = 2;
  c.seq_len = 16;
  c.vocab_size = 30;
  Transformer m(c, 2);
  SampleOptions g;
  g.max_new_tokens = 8;
  SampleOptions k1 = g;
  k1.temperature = 1.5;
  k1.top_k = 1;
  EXPECT_EQ(generate(m, {1, 2}, g), generate(m, {1, 2}, k1));
}

TEST(Inference, SequenceLogitsAreTheForwardOfEachSequence) {
  ModelConfig c;
  c.dim = 16;
  c.n_layers = 1;
  c.n_heads = 2;
  c.seq_len = 8;
  c.vocab_size = 20;
  Transformer m(c, 3);
  std::vector<std::vector<int64_t>> seqs{{1, 2, 3, 4, 5}, {6, 7, 8, 9, 10}};
  at::Tensor l = sequence_logits(m, seqs);
  ASSERT_EQ(l.sizes().vec(), (std::vector<int64_t>{2, 5, 20}));
  EXPECT_EQ(l.scalar_type(), at::kFloat);
  torch::NoGradGuard g;
  for (int i = 0; i < 2; ++i) {
    at::Tensor one = m.forward(torch::tensor(seqs[i]).view({1, -1})).to(at::kFloat);
    EXPECT_TRUE(torch::allclose(l[i], one[0], 1e-6, 1e-6)) << "sequence " << i;
  }
  auto error_of = [&](std::vector<std::vector<int64_t>> s) {
    try {
      sequence_logits(m, s);
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  EXPECT_NE(error_of({{1, 2, 3}, {1, 2}}).find("equal length"), std::string::npos);
  EXPECT_NE(error_of({{1, 2, 3, 4, 5, 6, 7, 8, 9}}).find("seq_len 8"), std::string::npos);
  EXPECT_NE(error_of({{1, 20}}).find("outside the vocabulary"), std::string::npos);
}
