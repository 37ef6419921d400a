// The recipe parser/validator: every recipe in recipes/ parses, and bad recipes give errors that
// name the file, the key and the line.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "openlm_cpp/core/error.h"
#include "openlm_cpp/core/recipe.h"
#include "../common/test_util.h"

namespace fs = std::filesystem;
using namespace openlm;

namespace {
std::string write_tmp(const std::string& name, const std::string& text) {
  // One directory per test process: ctest runs the tests of this file in parallel processes.
  static const std::string dir = openlm::test_util::fresh_dir("recipe", "test");
  fs::path p = fs::path(dir) / name;
  std::ofstream(p) << text;
  return p.string();
}
const char* kGood = R"(model: open_lm_test_tiny
batch:
  global_batch_size: 8
  micro_batch_size: 2
optim:
  lr: 1.0e-3
schedule:
  warmup: 2
max_steps: 10
run_dir: /tmp/x
data:
  manifests: [{path: a/manifest.jsonl, weight: 0.7}, b/manifest.jsonl]
)";
/// Expects a ConfigError whose message contains every fragment.
void expect_error(const std::string& text, std::initializer_list<std::string> fragments,
                  std::vector<std::string> overrides = {}) {
  std::string p = write_tmp("bad.yaml", text);
  try {
    load_train_recipe(p, overrides);
    FAIL() << "no error for:\n" << text;
  } catch (const ConfigError& e) {
    for (auto& f : fragments) EXPECT_NE(std::string(e.what()).find(f), std::string::npos) << e.what() << " lacks " << f;
  }
}
}  // namespace

TEST(Recipe, EveryRecipeFileParses) {
  int n = 0;
  for (auto& sub : {"models", "train", "finetune", "ladders"}) {
    fs::path d = fs::path(OPENLM_SOURCE_DIR) / "recipes" / sub;
    if (!fs::exists(d)) continue;
    for (auto& e : fs::recursive_directory_iterator(d)) {
      if (e.path().extension() != ".yaml") continue;
      ++n;
      if (std::string(sub) == "models") {
        EXPECT_NO_THROW(load_model(e.path().string())) << e.path();
      } else if (std::string(sub) != "ladders") {
        EXPECT_NO_THROW(load_train_recipe(e.path().string())) << e.path();
      }
    }
  }
  EXPECT_GE(n, 16);
}

TEST(Recipe, GoodRecipeAndDefaults) {
  auto c = load_train_recipe(write_tmp("good.yaml", kGood));
  EXPECT_EQ(c.model.dim, 16);
  EXPECT_EQ(c.model.norm_type, "default_layer_norm");
  EXPECT_EQ(accumulation_steps(c, 1), 4);
  EXPECT_EQ(accumulation_steps(c, 2), 2);
  EXPECT_THROW(accumulation_steps(c, 3), ConfigError);
  EXPECT_DOUBLE_EQ(c.optim.beta2, 0.95);
  ASSERT_EQ(c.data.manifests.size(), 2u);
  EXPECT_DOUBLE_EQ(c.data.manifests[0].weight, 0.7);
  EXPECT_EQ(fs::path(c.data.manifests[1].path), fs::absolute(fs::path(c.source_file).parent_path() / "b/manifest.jsonl"));
  EXPECT_DOUBLE_EQ(c.data.manifests[1].weight, 1.0);
}

TEST(Recipe, OverridesAndModelOverrides) {
  std::string p = write_tmp("good.yaml", kGood);
  auto c = load_train_recipe(p, {"optim.lr=0.5", "model.qk_norm=true", "model.norm_type=rms_norm", "max_steps=20"});
  EXPECT_DOUBLE_EQ(c.optim.lr, 0.5);
  EXPECT_TRUE(c.model.qk_norm);
  EXPECT_EQ(c.model.norm_type, "rms_norm");
  EXPECT_EQ(c.model.dim, 16);  // the rest still from open_lm_test_tiny
  EXPECT_EQ(c.max_steps, 20);
}

TEST(Recipe, ResolvedJsonLoadsBack) {
  auto c = load_train_recipe(write_tmp("good.yaml", kGood), {"model.qk_norm=true"});
  std::string p = write_tmp("resolved.json", to_json(c).dump(2));
  auto c2 = load_train_recipe(p);
  EXPECT_EQ(to_json(c2), to_json(c));
}

TEST(Recipe, UnknownKeyNamesFileKeyAndLine) {
  expect_error(std::string(kGood) + "optim2:\n  lr: 1\n", {"bad.yaml:13", "optim2", "unknown key"});
  expect_error("model: open_lm_test_tiny\nbatch:\n  global_batch_size: 8\n  micro_bach_size: 2\n",
               {"bad.yaml:4", "batch.micro_bach_size", "unknown key"});
}

TEST(Recipe, WrongTypes) {
  expect_error("model: open_lm_test_tiny\nbatch:\n  global_batch_size: eight\n", {"bad.yaml:3", "batch.global_batch_size", "integer"});
  expect_error(std::string(kGood) + "grad_checkpointing: maybe\n", {"grad_checkpointing", "true or false"});
  expect_error("model: open_lm_test_tiny\noptim: 3\n", {"optim", "mapping"});
  expect_error("model: open_lm_test_tiny\nbatch:\n  global_batch_size: 2.5\n", {"integer"});
}

TEST(Recipe, MissingRequiredAndImpossibleValues) {
  expect_error("batch:\n  global_batch_size: 8\n  micro_batch_size: 2\nmax_steps: 3\n", {"model", "missing"});
  expect_error("model: open_lm_test_tiny\nmax_steps: 3\n", {"batch.global_batch_size", "missing"});
  expect_error(std::string(kGood) + "  weight: 1\n", {"data.weight", "unknown key"});
  expect_error(kGood, {"data.manifests[0].weight", "> 0"}, {"data.manifests=[{path: x, weight: -1}]"});
  expect_error(kGood, {"schedule.warmup", "exceeds"}, {"schedule.warmup=11"});
  expect_error(kGood, {"batch.global_batch_size", "multiple"}, {"batch.micro_batch_size=3"});
  expect_error(kGood, {"model.n_kv_heads", "divide"}, {"model.n_kv_heads=3", "model.n_heads=2"});
  expect_error(kGood, {"model.norm_type", "rms_norm"}, {"model.norm_type=batch_norm"});
  expect_error(kGood, {"precision"}, {"precision=fp8"});
  expect_error(kGood, {"--set optim.beta2", "optim.beta2"}, {"optim.beta2=1.5"});
  expect_error("model:\n  name: open_lm_test_tiny\n  dim: 1\nbatch:\n  global_batch_size: 8\n  micro_batch_size: 2\nmax_steps: 3\n",
               {"bad.yaml:2", "model.n_heads", "exceeds"});
  expect_error(std::string(kGood) + "max_steps: 4\n", {"bad.yaml:13", "max_steps", "duplicate"});
  expect_error("model: no_such_model\n", {"no_such_model", "known models"});
  expect_error("model: [unclosed\n", {"bad.yaml", "YAML syntax"});
}

TEST(Recipe, ModelRegistry) {
  auto names = model_names();
  EXPECT_EQ(names.size(), 16u);
  auto m = load_model("open_lm_87m");
  EXPECT_EQ(m.head_dim(), 40);
  EXPECT_EQ(load_model("open_lm_1b_old").positional_embedding_type, "head_rotary");
}

// Issue 11.1, 11.5: eval and averagers keys.
TEST(Recipe, EvalAndAveragers) {
  auto c = load_train_recipe(write_tmp("eval.yaml", std::string(kGood) + R"(eval:
  val_data: [{name: held, path: v/manifest.jsonl}, toks.txt, default_corpus:heldout]
  every_steps: 5
  max_sequences: 8
averagers: [ema_0.999, poly_8]
)"));
  ASSERT_EQ(c.eval.val_data.size(), 3u);
  EXPECT_EQ(c.eval.val_data[0].name, "held");
  EXPECT_EQ(c.eval.val_data[1].name, "toks");  // the file's stem
  EXPECT_EQ(c.eval.val_data[2].name, "heldout");
  EXPECT_EQ(c.eval.val_data[2].path, "default_corpus:heldout");
  EXPECT_EQ(c.eval.every_steps, 5);
  EXPECT_EQ(c.averagers, (std::vector<std::string>{"ema_0.999", "poly_8"}));
  // OpenLM's comma-separated form, as on its command line.
  auto d = load_train_recipe(write_tmp("avg.yaml", kGood), {"averagers=ema_0.99,poly_0"});
  EXPECT_EQ(d.averagers, (std::vector<std::string>{"ema_0.99", "poly_0"}));
  // The resolved dump loads back with the same keys.
  auto p = write_tmp("eval_resolved.json", to_json(c).dump());
  EXPECT_EQ(to_json(load_train_recipe(p)), to_json(c));

  expect_error(kGood, {"averagers", "ema_1.5", "0 < decay < 1"}, {"averagers=[ema_1.5]"});
  expect_error(kGood, {"averagers", "swa_3"}, {"averagers=[swa_3]"});
  expect_error(kGood, {"duplicate averager"}, {"averagers=[ema_0.9, ema_0.9]"});
  expect_error(kGood, {"eval.every_steps", ">= 0"}, {"eval.every_steps=-1"});
  expect_error(kGood, {"eval.val_data[1].name", "duplicate"}, {"eval.val_data=[a/x.txt, b/x.txt]"});
  expect_error(kGood, {"eval.val_data[0].path", "default_corpus:test"}, {"eval.val_data=[default_corpus:test]"});
  expect_error(kGood, {"eval.val_data[0]", "unknown key"}, {"eval.val_data=[{path: a, wieght: 2}]"});
}

// Issue 13 B.4: relative input paths resolve against the recipe's folder, --set ones against the
// working directory; run_dir (an output) stays as written.
TEST(Recipe, RelativePathsOneRule) {
  const std::string p = write_tmp("paths.yaml", std::string(kGood) + "tokenizer: {path: tok/t.model}\ninit_from: ../src\n");
  const fs::path dir = fs::absolute(fs::path(p).parent_path());
  auto c = load_train_recipe(p, {"data.instructions=", "resume=ckpts/step_4"});
  EXPECT_EQ(c.data.manifests[0].path, (dir / "a/manifest.jsonl").string());
  EXPECT_EQ(c.data.manifests[1].path, (dir / "b/manifest.jsonl").string());
  EXPECT_EQ(c.tokenizer.path, (dir / "tok/t.model").string());
  EXPECT_EQ(c.init_from, (dir.parent_path() / "src").string());
  EXPECT_EQ(c.resume, (fs::current_path() / "ckpts/step_4").string());  // from --set
  auto s = load_train_recipe(p, {"data.manifests=[m/manifest.jsonl]", "resume=latest"});
  EXPECT_EQ(s.data.manifests[0].path, (fs::current_path() / "m/manifest.jsonl").string());
  EXPECT_EQ(s.resume, "latest");
  EXPECT_EQ(s.run_dir, "/tmp/x");
}

TEST(Recipe, ModelMayBeLeftOutOnlyWithInitFrom) {
  std::string no_model = kGood;
  no_model.replace(0, std::string("model: open_lm_test_tiny\n").size(), "");
  auto c = load_train_recipe(write_tmp("nomodel.yaml", no_model + "init_from: /runs/x\n"));
  EXPECT_TRUE(c.model_from_init);
  expect_error(no_model, {"model", "missing required key", "init_from"});
}

// Issue 11.6: OpenLM's own JSON model configs.
TEST(Recipe, OpenLMJsonModelConfig) {
  const std::string j = write_tmp("open_lm_1b_swiglutorch.json", R"({
    "hidden_dim": 2048, "n_layers": 24, "n_heads": 16, "seq_len": 2048, "vocab_size": 50432,
    "post_embed_norm": false, "weight_tying": false, "model_norm": "gain_only_lp_layer_norm",
    "norm_type": "gain_only_lp_layer_norm", "ffn_type": "swiglu_torch", "qk_norm": true,
    "positional_embedding_type": "rotary"})");
  ModelConfig m = load_model(j);
  EXPECT_EQ(m.dim, 2048);
  EXPECT_EQ(m.n_layers, 24);
  EXPECT_EQ(m.norm_type, "gain_only_lp_layer_norm");
  EXPECT_EQ(m.ffn_type, "swiglu_torch");
  EXPECT_TRUE(m.qk_norm);
  EXPECT_EQ(m.name, "open_lm_1b_swiglutorch");
  // The same file as a train recipe's model, beside the recipe; OpenLM's plain configs take its defaults.
  write_tmp("open_lm_154m_v2.json", R"({"hidden_dim": 576, "n_layers": 24, "n_heads": 8, "seq_len": 2048,
    "vocab_size": 50432, "post_embed_norm": false, "weight_tying": false})");
  std::string recipe = kGood;
  recipe.replace(0, std::string("model: open_lm_test_tiny").size(), "model: open_lm_154m_v2.json");
  auto c = load_train_recipe(write_tmp("json_model.yaml", recipe));
  EXPECT_EQ(c.model.dim, 576);
  EXPECT_EQ(c.model.norm_type, "default_layer_norm");
  EXPECT_EQ(c.model.ffn_type, "swiglu");
  const std::string moe = write_tmp("moe.json", R"({"hidden_dim": 64, "n_layers": 2, "n_heads": 2, "moe_num_experts": 8})");
  try {
    load_model(moe);
    FAIL() << "MoE config accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("moe_num_experts"), std::string::npos) << e.what();
  }
  const std::string clash = write_tmp("clash.json", R"({"hidden_dim": 64, "n_layers": 2, "n_heads": 2,
    "model_norm": "rms_norm", "norm_type": "lp_layer_norm"})");
  EXPECT_THROW(load_model(clash), ConfigError);
}
