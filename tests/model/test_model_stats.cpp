// Parameter counts from the config alone must equal OpenLM's own counts (docs/MODEL.md).
#include <gtest/gtest.h>

#include "openlm_cpp/core/recipe.h"
#include "openlm_cpp/model/model_stats.h"

using namespace openlm;

namespace {
ModelConfig dclm(ModelConfig m) {
  m.norm_type = "gain_only_lp_layer_norm";
  m.qk_norm = true;
  m.ffn_type = "swiglu_torch";
  return m;
}
}  // namespace

TEST(ModelStats, OpenLMDefaultsMatchOpenLM) {
  EXPECT_EQ(count_params(load_model("open_lm_411m_v2")).total, 411666432);
  EXPECT_EQ(count_params(load_model("open_lm_1b")).total, 1439895552);
}

TEST(ModelStats, DclmSettingsMatchOpenLM) {
  EXPECT_EQ(count_params(dclm(load_model("open_lm_411m_v2"))).total, 411665408);
  EXPECT_EQ(count_params(dclm(load_model("open_lm_1b"))).total, 1439893504);
  // DCLM's "params_no_embed" for 411m counts the output layer.
  EXPECT_EQ(count_params(dclm(load_model("open_lm_411m_v2"))).non_embedding, 411665408 - 50432 * 1024);
}

TEST(ModelStats, DclmQuotedCountsExcludeQkNormGains) {
  // DCLM quotes 1,439,795,200 (1B) and 6,889,410,560 (7B): gain-only norms, no qk-norm gains.
  auto m1 = load_model("open_lm_1b");
  m1.norm_type = "gain_only_lp_layer_norm";
  EXPECT_EQ(count_params(m1).total, 1439795200);
  auto m7 = load_model("open_lm_7b");
  m7.norm_type = "gain_only_lp_layer_norm";
  EXPECT_EQ(count_params(m7).total, 6889410560);
}

TEST(ModelStats, EveryRecipeHasAConsistentCount) {
  for (auto& name : model_names()) {
    ModelConfig m = load_model(name);
    auto c = count_params(m);
    const int64_t d = m.dim, A = m.attn_width(), h = m.hidden_dim();
    int64_t layer = 4 * A * d + 3 * h * d + 4 * d;  // default LN: gain + bias, two norms
    EXPECT_EQ(c.total, 2 * m.vocab_size * d + m.n_layers * layer + 2 * d) << name;
    EXPECT_GT(flops_per_token(m), 6.0 * c.non_embedding) << name;
  }
}

TEST(ModelStats, HiddenWidthsFollowOpenLM) {
  EXPECT_EQ(load_model("open_lm_87m").hidden_dim(), 1536);
  EXPECT_EQ(load_model("open_lm_87m").attn_width(), 480);
  EXPECT_EQ(load_model("open_lm_411m_v2").hidden_dim(), 2816);
  EXPECT_EQ(load_model("open_lm_7b").hidden_dim(), 11008);
  EXPECT_EQ(load_model("open_lm_3b").hidden_dim(), 6912);
  EXPECT_EQ(load_model("open_lm_test_tiny").hidden_dim(), 256);
}

TEST(ModelStats, FlopsConvention) {
  auto m = dclm(load_model("open_lm_411m_v2"));
  double expect = 6.0 * 360023040.0 + 12.0 * 24 * 1024 * 2048;  // 411,665,408 - 50432*1024
  EXPECT_DOUBLE_EQ(flops_per_token(m), expect);
}

TEST(ModelStats, FullShardMemoryShrinksWithWorld) {
  auto m = load_model("open_lm_7b");
  auto w1 = estimate_memory(m, "amp_bfloat16", 1, true, 1, "full_shard");
  auto w8 = estimate_memory(m, "amp_bfloat16", 1, true, 8, "full_shard");
  EXPECT_LT(w8.params + w8.grads + w8.optimizer, 0.2 * (w1.params + w1.grads + w1.optimizer));
}
