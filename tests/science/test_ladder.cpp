// Ladder files and plans: DCLM's exact token budgets from DCLM's parameter counting, steps and
// FLOPs, every ladder file of recipes/ladders/, and refused ladder files naming file and key.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "openlm_cpp/core/error.h"
#include "openlm_cpp/model/model_stats.h"
#include "openlm_cpp/science/ladder.h"

namespace fs = std::filesystem;
using namespace openlm::science;

namespace {

ModelSize count(const openlm::ModelConfig& m) {
  const auto c = openlm::count_params(m);
  return {c.total, c.non_embedding};
}

std::string ladders() { return std::string(OPENLM_SOURCE_DIR) + "/recipes/ladders/"; }

std::string tmp_dir() {
  const auto d = fs::temp_directory_path() / ("openlm_test_ladder_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d.string();
}

std::string write(const std::string& name, const std::string& text) {
  const std::string p = tmp_dir() + "/" + name;
  std::ofstream(p) << text;
  return p;
}

/// A minimal valid ladder whose base is inline (the test_tiny model on a manifest that need not exist).
const char* kBase =
    "base:\n"
    "  model: {name: open_lm_test_tiny}\n"
    "  data: {manifests: [{path: m.jsonl}]}\n"
    "  batch: {global_batch_size: 2, micro_batch_size: 1}\n"
    "  eval: {val_data: [{name: v, path: v.txt}, {name: w, path: w.txt}]}\n";

}  // namespace

TEST(Ladder, DclmBudgetsAreDclms) {
  const auto spec = load_ladder(ladders() + "dclm.yaml");
  const auto runs = plan_ladder(spec, tmp_dir() + "/out", count);
  // training/configs/*.json of mlfoundations/dclm: "params" and "tokens" (x chinchilla_multiplier).
  const std::map<std::string, std::pair<int64_t, int64_t>> dclm = {
      {"411m_1x", {411616256, 8232325120}},    {"1b_1x", {1439795200, 28795904000}},
      {"1b_5x", {1439795200, 143979520000}},   {"3b_1x", {2795932160, 55918643200}},
      {"7b_1x", {6889410560, 137788211200}},   {"7b_2x", {6889410560, 275576422400}},
      {"79m_1x", {78914048, 1578280960}},      {"154m_1x", {153677376, 3073547520}}};
  ASSERT_EQ(runs.size(), dclm.size());
  for (auto& r : runs) {
    SCOPED_TRACE(r.name);
    ASSERT_TRUE(dclm.count(r.name));
    EXPECT_EQ(r.params, dclm.at(r.name).first);
    EXPECT_EQ(r.tokens, dclm.at(r.name).second);
    EXPECT_EQ(r.cfg.train_num_tokens, r.tokens);
    EXPECT_EQ(r.cfg.model.seq_len, 2048);
    EXPECT_EQ(r.tokens_per_step, r.cfg.batch.global_batch_size * 2048);
    EXPECT_EQ(r.steps, r.tokens / r.tokens_per_step);
    EXPECT_DOUBLE_EQ(r.flops, 6.0 * static_cast<double>(r.params) * static_cast<double>(r.tokens));
    // Our own count has the qk-norm gains too: 2 x layers x attention width more.
    EXPECT_EQ(r.size.total - r.params, 2 * r.cfg.model.n_layers * r.cfg.model.attn_width());
    EXPECT_EQ(r.cfg.resume, "latest");
    EXPECT_EQ(r.run_dir, (fs::path(tmp_dir()) / "out" / "runs" / r.name).string());
    EXPECT_EQ(r.val_source, "heldout");
  }
  EXPECT_EQ(runs[2].steps, 7850);  // 411m: 8,232,325,120 / (512 x 2048), rounded down
}

TEST(Ladder, AttentionFlopsAndParamRules) {
  const std::string body = std::string(kBase) + "flops: 6nd_attention\nparams: total\nval_source: w\n"
                           "scales:\n  - {name: a, tokens: 3200}\n  - {name: b, multiplier: 0.5, model: {dim: 32}}\n";
  const auto runs = plan_ladder(load_ladder(write("attn.yaml", body)), tmp_dir(), count);
  ASSERT_EQ(runs.size(), 2u);
  const auto& m = runs[0].cfg.model;
  EXPECT_EQ(runs[0].params, count(m).total);
  EXPECT_DOUBLE_EQ(runs[0].flops_per_token, 6.0 * runs[0].params + 12.0 * m.n_layers * m.attn_width() * m.seq_len);
  EXPECT_DOUBLE_EQ(runs[0].flops, runs[0].flops_per_token * 3200);
  EXPECT_EQ(runs[0].steps, 3200 / (2 * 16));
  EXPECT_EQ(runs[1].cfg.model.dim, 32);  // the scale's model mapping merged into the base's
  EXPECT_EQ(runs[1].tokens, static_cast<int64_t>(0.5 * 20 * runs[1].params));
  EXPECT_EQ(runs[1].val_source, "w");
}

TEST(Ladder, EveryLadderFilePlans) {
  int n = 0;
  for (auto& e : fs::directory_iterator(ladders())) {
    if (e.path().extension() != ".yaml") continue;
    ++n;
    SCOPED_TRACE(e.path().string());
    const auto spec = load_ladder(e.path().string());
    const auto runs = plan_ladder(spec, tmp_dir() + "/every", count);
    ASSERT_GE(runs.size(), 3u);  // a fit has three parameters
    for (auto& r : runs) EXPECT_GE(r.steps, 1);
  }
  EXPECT_GE(n, 2);
}

TEST(Ladder, MicroLadderIsTiny) {
  const auto runs = plan_ladder(load_ladder(ladders() + "micro.yaml"), tmp_dir() + "/micro", count);
  ASSERT_EQ(runs.size(), 4u);
  int64_t steps = 0;
  for (std::size_t i = 0; i < runs.size(); ++i) {
    EXPECT_TRUE(runs[i].cfg.data.default_corpus);
    EXPECT_EQ(runs[i].val_source, "heldout");
    if (i) {
      EXPECT_GT(runs[i].flops, runs[i - 1].flops);
    }
    steps += runs[i].steps;
  }
  EXPECT_LE(steps, 600);  // minutes on 2 cores, not hours
}

TEST(Ladder, BadLadderFilesNameFileAndKey) {
  const std::string b = kBase;
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {"scales: [{name: a, multiplier: 1}]\n", {"scales[0].base", "missing"}},
      {b + "scalez: []\n", {"scalez", "unknown key"}},
      {b, {"'scales'", "missing required key"}},
      {b + "scales: []\n", {"'scales'", "non-empty list"}},
      {b + "scales: [{name: a}]\n", {"scales[0]", "multiplier"}},
      {b + "scales: [{name: a, multiplier: 1, tokens: 10}]\n", {"scales[0]", "not both"}},
      {b + "scales: [{name: a, multiplier: -2}]\n", {"scales[0].multiplier", "> 0"}},
      {b + "scales: [{name: a, tokens: abc}]\n", {"scales[0].tokens", "integer"}},
      {b + "scales: [{name: a, tokens: 640}, {name: a, tokens: 640}]\n", {"scales[1].name", "duplicate"}},
      {b + "scales: [{name: ../x, tokens: 640}]\n", {"scales[0].name", "run name"}},
      {b + "scales: [{name: a, tokens: 640, colour: red}]\n", {"scales[0].colour", "unknown key"}},
      {b + "params: flops\nscales: [{name: a, tokens: 640}]\n", {"'params'", "dclm, total or non_embedding"}},
      {b + "flops: 6n\nscales: [{name: a, tokens: 640}]\n", {"'flops'", "6nd"}},
      {b + "nproc_per_node: 0\nscales: [{name: a, tokens: 640}]\n", {"nproc_per_node", "> 0"}},
      {b + "slurm: {gpus: 8}\nscales: [{name: a, tokens: 640}]\n", {"slurm.gpus", "unknown key"}},
      {b + "suite: nowhere.yaml\nscales: [{name: a, tokens: 640}]\n", {"'suite'", "file not found"}},
      {b + "set: [a]\nscales: [{name: a, tokens: 640}]\n", {"'set'", "mapping"}},
      {"base: missing.yaml\nscales: [{name: a, tokens: 640}]\n", {"'base'", "file not found"}},
      {b + "scales: [{name: a, tokens: 640}\n", {"YAML syntax error"}},
  };
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const std::string p = write("bad" + std::to_string(i) + ".yaml", cases[i].first);
    try {
      load_ladder(p);
      FAIL() << "no error for:\n" << cases[i].first;
    } catch (const openlm::ConfigError& e) {
      const std::string w = e.what();
      EXPECT_NE(w.find(p), std::string::npos) << w;
      for (auto& f : cases[i].second) EXPECT_NE(w.find(f), std::string::npos) << w << "\n  lacks: " << f;
    }
  }
}

TEST(Ladder, BadScalesAreRefusedWhenPlanned) {
  const std::string b = kBase;
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      // a recipe key the train parser refuses, named with the scale
      {b + "scales: [{name: a, tokens: 640, set: {optim.lrr: 1}}]\n", {"scales[0]", "scale 'a'", "optim.lrr"}},
      // fewer tokens than one step of 2 x 16
      {b + "scales: [{name: a, tokens: 20}]\n", {"scales[0]", "no full step"}},
      // a run without validation data has no loss to fit
      {b + "set: {eval.val_data: []}\nscales: [{name: a, tokens: 640}]\n", {"scales[0]", "eval.val_data"}},
      {b + "val_source: nope\nscales: [{name: a, tokens: 640}]\n", {"val_source", "nope", "v, w"}},
  };
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const std::string p = write("badplan" + std::to_string(i) + ".yaml", cases[i].first);
    try {
      plan_ladder(load_ladder(p), tmp_dir(), count);
      FAIL() << "no error for:\n" << cases[i].first;
    } catch (const openlm::ConfigError& e) {
      const std::string w = e.what();
      EXPECT_NE(w.find(p), std::string::npos) << w;
      for (auto& f : cases[i].second) EXPECT_NE(w.find(f), std::string::npos) << w << "\n  lacks: " << f;
    }
  }
}
