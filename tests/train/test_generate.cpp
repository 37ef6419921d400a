// Generation with and without the KV cache gives the same tokens (greedy and sampled).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "openlm_cpp/model/transformer.h"
#include "openlm_cpp/train/generate.h"

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
