// recipes/ladders/micro.yaml end to end through the binary: four tiny trainings on the default
// corpus, validation on its held-out documents, the fit and the plot; a rerun skips every run; a
// stopped run is resumed, not restarted; a named suite scores each run once; a failing run stops
// the ladder naming its log.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "cli_util.h"

namespace fs = std::filesystem;
using namespace openlm::science_test;

namespace {

const std::string kMicro = std::string(OPENLM_SOURCE_DIR) + "/recipes/ladders/micro.yaml";

int count_lines(const std::string& path) {
  std::ifstream f(path);
  int n = 0;
  for (std::string l; std::getline(f, l);) n += !l.empty();
  return n;
}

/// A three-scale ladder small enough to train in seconds (explicit tokens, default corpus).
std::string write_small_ladder(const std::string& dir) {
  const std::string p = dir + "/small.yaml";
  std::ofstream f(p);
  f << "name: small\n"
       "base:\n"
       "  model: {name: s, dim: 16, n_layers: 1, n_heads: 2, seq_len: 32, vocab_size: 4096}\n"
       "  data: {default_corpus: true, num_workers: 1}\n"
       "  batch: {global_batch_size: 4, micro_batch_size: 4}\n"
       "  logging: {tensorboard: false}\n"
       "  generate: {max_new_tokens: 0}\n"
       "  eval: {val_data: [default_corpus:heldout], max_sequences: 8}\n"
       "scales:\n"
       "  - {name: s16, tokens: 3840}\n"
       "  - {name: s24, tokens: 5120, model: {dim: 24}}\n"
       "  - {name: s32, tokens: 6400, model: {dim: 32}}\n";
  return p;
}

}  // namespace

TEST(LadderE2E, MicroLadderRunsFitsPlotsAndSkipsFinishedRuns) {
  const std::string d = fresh_dir("micro");
  const auto t0 = std::chrono::steady_clock::now();
  auto r = sh(q(bin()) + " ladder " + q(kMicro) + " --out " + q(d), 900);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(r.rc, 0) << r.out;
  std::cout << "micro ladder: " << secs << " s\n";
  const auto j = nlohmann::json::parse(slurp(d + "/ladder.json"));
  ASSERT_TRUE(j["fit"].is_object()) << j.dump(2);
  for (const char* k : {"E", "A", "alpha"}) EXPECT_TRUE(j["fit"][k].is_number()) << k;
  EXPECT_GE(j["fit"]["E"].get<double>(), 0);
  ASSERT_EQ(j["runs"].size(), 4u);
  for (auto& run : j["runs"]) {
    EXPECT_EQ(run["status"], "trained") << run.dump();
    EXPECT_TRUE(run["loss"].is_number());
    EXPECT_EQ(run["eval_step"], run["steps"]);
    // a validation loss of a few hundred steps: below uniform over the 4096-token vocabulary
    EXPECT_LT(run["loss"].get<double>(), 8.32);
    EXPECT_TRUE(fs::exists(run["run_dir"].get<std::string>() + "/recipe.yaml"));
  }
  EXPECT_EQ(count_lines(d + "/ladder.csv"), 5);  // header + 4 runs
  EXPECT_TRUE(has(slurp(d + "/ladder.csv"), "compute") && has(slurp(d + "/ladder.csv"), "loss"));
  EXPECT_TRUE(is_png(d + "/ladder.png"));

  // Rerun: nothing trains again (the logs do not grow), the outputs are rewritten the same.
  const auto log_size = fs::file_size(d + "/runs/d96/train.log");
  r = sh(q(bin()) + " ladder " + q(kMicro) + " --out " + q(d), 120);
  ASSERT_EQ(r.rc, 0) << r.out;
  for (const char* run : {"d32", "d48", "d64", "d96"})
    EXPECT_TRUE(has(r.out, "run " + std::string(run) + ": finished")) << r.out;
  EXPECT_FALSE(has(r.out, ": training")) << r.out;
  EXPECT_EQ(fs::file_size(d + "/runs/d96/train.log"), log_size);
  EXPECT_EQ(nlohmann::json::parse(slurp(d + "/ladder.json"))["fit"], j["fit"]);

  // The CSV the ladder wrote is itself input for `ladder fit`.
  r = sh(q(bin()) + " ladder fit " + q(d + "/ladder.csv") + " --out " + q(d + "/refit"));
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_NEAR(nlohmann::json::parse(slurp(d + "/refit/ladder.json"))["fit"]["alpha"].get<double>(),
              j["fit"]["alpha"].get<double>(), 1e-9);
  // And the runs draw: validation and training curves.
  r = sh(q(bin()) + " plot " + q(d + "/runs/d32") + " " + q(d + "/runs/d96") + " --out " + q(d + "/curves.png"));
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_TRUE(is_png(d + "/curves.png"));
}

TEST(LadderE2E, StoppedRunIsResumedCollectWaitsAndSuiteScores) {
  const std::string d = fresh_dir("resume");
  const std::string ladder = write_small_ladder(d);
  // The recipes, without training (as for Slurm); then one run stopped half way.
  auto r = sh(q(bin()) + " ladder " + q(ladder) + " --out " + q(d + "/out") + " --emit-slurm");
  ASSERT_EQ(r.rc, 0) << r.out;
  r = sh(q(bin()) + " train " + q(d + "/out/runs/s24/recipe.yaml") + " --stop-at-step 20", 300);
  ASSERT_EQ(r.rc, 0) << r.out;
  // --collect trains nothing and fits nothing with fewer than 3 finished runs.
  r = sh(q(bin()) + " ladder " + q(ladder) + " --out " + q(d + "/out") + " --collect");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_TRUE(has(r.out, "run s24: not finished")) << r.out;
  auto j = nlohmann::json::parse(slurp(d + "/out/ladder.json"));
  EXPECT_TRUE(j["fit"].is_null());
  const std::string st = j["runs"][1]["status"];
  EXPECT_TRUE(st == "pending" || st == "partial") << st;  // "partial": an eval record before the last step
  EXPECT_EQ(j["runs"][0]["status"], "pending");
  EXPECT_FALSE(fs::exists(d + "/out/ladder.png"));

  r = sh(q(bin()) + " ladder " + q(ladder) + " --out " + q(d + "/out"), 600);
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_TRUE(has(r.out, "run s24: resuming")) << r.out;
  const std::string log = slurp(d + "/out/runs/s24/train.log");
  EXPECT_TRUE(has(log, "resumed from") && has(log, "at step 20") && !has(log, "starting from scratch")) << log;
  j = nlohmann::json::parse(slurp(d + "/out/ladder.json"));
  ASSERT_TRUE(j["fit"].is_object());
  EXPECT_EQ(j["runs"][1]["eval_step"], 40);  // 5120 / (4 x 32)
  EXPECT_TRUE(is_png(d + "/out/ladder.png"));

  // The same ladder naming a downstream suite: nothing retrains, each run is scored once with
  // `openlm eval RUN --suite S --json`, and the scores become columns.
  std::ofstream(d + "/pick.jsonl") << "{\"query\": \"The cat sat on the\", \"choices\": [\"mat\", \"sky\"], \"gold\": 0}\n"
                                   << "{\"query\": \"Time is\", \"choices\": [\"money\", \"green\"], \"gold\": 0}\n";
  std::ofstream(d + "/suite.yaml") << "icl_tasks:\n- label: pick\n  dataset_uri: pick.jsonl\n  icl_task_type: multiple_choice\n";
  std::ofstream(ladder, std::ios::app) << "suite: suite.yaml\n";
  r = sh(q(bin()) + " ladder " + q(ladder) + " --out " + q(d + "/out"), 600);
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_FALSE(has(r.out, ": training") || has(r.out, ": resuming")) << r.out;
  const std::string csv = slurp(d + "/out/ladder.csv");
  EXPECT_TRUE(has(csv, "suite.pick.acc") && has(csv, "suite.mean_centered_acc")) << csv;
  j = nlohmann::json::parse(slurp(d + "/out/ladder.json"));
  for (auto& run : j["runs"]) {
    EXPECT_TRUE(run["suite"]["tasks"].is_array()) << run.dump();
    EXPECT_TRUE(fs::exists(run["run_dir"].get<std::string>() + "/suite.json"));
  }
}

TEST(LadderE2E, FailingRunStopsTheLadderNamingItsLog) {
  const std::string d = fresh_dir("fail");
  const std::string ladder = write_small_ladder(d);
  // 3 ranks cannot split a global batch of 4: the first run fails, the ladder stops there.
  const auto r = sh(q(bin()) + " ladder " + q(ladder) + " --out " + q(d + "/out") + " --nproc-per-node 3", 300);
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_TRUE(has(r.out, "run s16 failed") && has(r.out, d + "/out/runs/s16/train.log")) << r.out;
  EXPECT_FALSE(fs::exists(d + "/out/runs/s24/train.log"));
  EXPECT_FALSE(fs::exists(d + "/out/ladder.json"));
}
