// End-to-end runs of the trainer on synthetic shards: the loss falls, runs are deterministic,
// stop + resume equals the uninterrupted run bit for bit, and a NaN loss stops the run without
// touching the weights on disk.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "openlm_cpp/checkpoint/hf_import.h"
#include "openlm_cpp/checkpoint/state_shards.h"
#include "openlm_cpp/checkpoint/tensor_file.h"
#include "openlm_cpp/core/error.h"
#include "openlm_cpp/core/recipe.h"
#include "openlm_cpp/train/trainer.h"
#include "train_fixtures.h"

namespace fs = std::filesystem;
using namespace openlm;
using namespace openlm::testing;

namespace {
const std::string& manifest() {
  static std::string m = write_counting_shards(temp_dir("data"), 400, 16, 64, 3);
  return m;
}
/// A .safetensors file of weights (no optimizer state): init_from_mode full must refuse it.
std::string run_dir_without_checkpoint() {
  static std::string p = [] {
    std::string d = temp_dir("weights_only");
    checkpoint::save_safetensors(d + "/w.safetensors", checkpoint::NamedTensors{{"x", torch::zeros({1})}});
    return d;
  }();
  return p;
}
TrainOptions quiet() {
  TrainOptions o;
  o.quiet = true;
  return o;
}
}  // namespace

TEST(Training, LossFallsAndOutputsAreWritten) {
  std::string run = temp_dir("falls");
  auto cfg = tiny_recipe(manifest(), run, 40);
  auto res = run_training(cfg, quiet());
  auto m = read_metrics(run);
  ASSERT_EQ(m.size(), 40u);
  EXPECT_EQ(m.front()["step"], 1);
  EXPECT_EQ(m.back()["step"], 40);
  for (auto& k : {"loss", "lr", "tokens_per_s", "grad_norm"}) EXPECT_TRUE(m.front().contains(k)) << k;
  EXPECT_NEAR(m.front()["loss"].get<double>(), std::log(64.0), 0.5);  // starts near uniform
  EXPECT_LT(m.back()["loss"].get<double>(), m.front()["loss"].get<double>() - 1.5);
  EXPECT_DOUBLE_EQ(m[0]["lr"].get<double>(), 1e-2 / 2);  // warmup 2: step 1 uses lr*(0+1)/2
  EXPECT_TRUE(fs::exists(run + "/model.safetensors"));
  EXPECT_TRUE(fs::exists(run + "/checkpoints/latest"));
  EXPECT_NO_THROW(load_train_recipe(run + "/config.json"));
  EXPECT_EQ(res.steps_done, 40);
}

TEST(Training, SameSeedSameLosses) {
  std::string a = temp_dir("det_a"), b = temp_dir("det_b");
  run_training(tiny_recipe(manifest(), a, 6), quiet());
  run_training(tiny_recipe(manifest(), b, 6), quiet());
  auto ma = read_metrics(a), mb = read_metrics(b);
  ASSERT_EQ(ma.size(), mb.size());
  for (std::size_t i = 0; i < ma.size(); ++i) EXPECT_EQ(ma[i]["loss"], mb[i]["loss"]);
}

TEST(Training, StopAndResumeIsBitIdentical) {
  std::string full = temp_dir("full"), part = temp_dir("part");
  run_training(tiny_recipe(manifest(), full, 12), quiet());
  auto cfg = tiny_recipe(manifest(), part, 12);
  cfg.resume = "latest";  // first start: no checkpoint yet, starts from scratch
  TrainOptions stop = quiet();
  stop.stop_at_step = 5;
  EXPECT_EQ(run_training(cfg, stop).steps_done, 5);
  EXPECT_TRUE(fs::exists(part + "/checkpoints/step_5/metadata.json"));
  run_training(cfg, quiet());
  auto mf = read_metrics(full), mp = read_metrics(part);
  ASSERT_EQ(mp.size(), 12u);
  for (std::size_t i = 0; i < 12; ++i) {
    EXPECT_EQ(mp[i]["step"], static_cast<int>(i) + 1);
    EXPECT_EQ(mf[i]["loss"], mp[i]["loss"]) << "step " << i + 1;
    EXPECT_EQ(mf[i]["lr"], mp[i]["lr"]);
  }
  auto wf = checkpoint::load_safetensors(full + "/model.safetensors");
  auto wp = checkpoint::load_safetensors(part + "/model.safetensors");
  for (auto& [n, t] : wf) EXPECT_TRUE(torch::equal(t, wp.at(n))) << n;
}

TEST(Training, CorruptCheckpointFallsBackToAnOlderOne) {
  std::string run = temp_dir("corrupt");
  auto cfg = tiny_recipe(manifest(), run, 8);
  cfg.checkpoint.every_steps = 2;
  cfg.checkpoint.keep_last = 3;
  TrainOptions stop = quiet();
  stop.stop_at_step = 6;
  run_training(cfg, stop);
  {  // flip a byte in the newest checkpoint's weights
    std::fstream f(run + "/checkpoints/step_6/model-shard00000-of-00001.safetensors", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-3, std::ios::end);
    f.put('\x7f');
  }
  cfg.resume = run + "/checkpoints/step_6";
  EXPECT_THROW(run_training(cfg, quiet()), DataError);
  cfg.resume = "latest";
  stop.stop_at_step = 7;
  run_training(cfg, stop);  // resumes from step_4
  auto m = read_metrics(run);
  EXPECT_EQ(m.back()["step"], 7);
  EXPECT_EQ(m.size(), 7u);  // steps 5 and 6 were dropped and redone, each step once
}

TEST(Training, NanLossStopsWithoutOverwritingWeights) {
  std::string good = temp_dir("nan_src"), run = temp_dir("nan_run");
  run_training(tiny_recipe(manifest(), good, 2), quiet());
  auto w = checkpoint::load_safetensors(good + "/model.safetensors");
  w["norm.weight"].fill_(std::numeric_limits<float>::quiet_NaN());
  checkpoint::save_safetensors(run + "/nan_init.safetensors", w);
  auto before = checkpoint::load_safetensors(good + "/model.safetensors");
  auto cfg = tiny_recipe(manifest(), good, 4);
  cfg.init_from = run + "/nan_init.safetensors";
  // A run directory holding a run is refused unless the run resumes: resume (from no checkpoint,
  // so from init_from) in the directory whose model.safetensors must stay as it is.
  std::filesystem::remove_all(good + "/checkpoints");
  cfg.resume = "latest";
  try {
    run_training(cfg, quiet());
    FAIL() << "no error on NaN loss";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("step 1"), std::string::npos) << e.what();
  }
  auto after = checkpoint::load_safetensors(good + "/model.safetensors");
  for (auto& [n, t] : before) EXPECT_TRUE(torch::equal(t, after.at(n))) << n;
}

TEST(Training, NanLossAfterAnAsyncCheckpointStillCommitsIt) {
  std::string run = temp_dir("nan_async");
  auto cfg = tiny_recipe(manifest(), run, 6);
  cfg.checkpoint.every_steps = 1;
  cfg.checkpoint.async = true;
  cfg.schedule.warmup = 0;
  cfg.optim.lr = 1e30;  // step 1's update makes the weights so large that the next loss is not finite
  try {
    run_training(cfg, quiet());
    FAIL() << "no error on NaN loss";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("step 2"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(fs::exists(run + "/checkpoints/step_1/metadata.json")) << "the pending checkpoint was lost";
}

TEST(Training, AsyncCheckpointsEqualSynchronousOnes) {
  std::string sync = temp_dir("sync"), async = temp_dir("async");
  auto a = tiny_recipe(manifest(), sync, 6);
  a.checkpoint.every_steps = 2;
  a.checkpoint.keep_last = 5;
  auto b = a;
  b.run_dir = async;
  b.checkpoint.async = true;
  run_training(a, quiet());
  run_training(b, quiet());
  for (int s : {2, 4, 6}) {
    std::string d = "/checkpoints/step_" + std::to_string(s);
    auto ws = checkpoint::load_model_weights(sync + d);
    auto wa = checkpoint::load_model_weights(async + d);
    for (auto& [n, t] : ws) EXPECT_TRUE(torch::equal(t, wa.at(n))) << s << " " << n;
  }
}

TEST(Training, CheckpointHoldsShardFilesLayoutAndRngStates) {
  std::string run = temp_dir("layout");
  run_training(tiny_recipe(manifest(), run, 3), quiet());
  std::string d = run + "/checkpoints/step_3";
  auto meta = nlohmann::json::parse(std::ifstream(d + "/metadata.json"));
  for (auto f : {"model-shard00000-of-00001.safetensors", "optim-shard00000-of-00001.safetensors", "rng.safetensors"})
    EXPECT_TRUE(meta["files"].contains(f)) << f;
  ASSERT_EQ(meta["shards"]["model"].size(), 1u);
  auto& t = meta["shards"]["model"][0]["tensors"]["tok_embeddings.weight"];
  EXPECT_EQ(t["shape"], nlohmann::json({64, 32}));
  EXPECT_EQ(t["range"], nlohmann::json({0, 64 * 32}));
  EXPECT_EQ(meta["optimizer_steps"], 3);
  EXPECT_EQ(meta["lr_schedule"]["total_steps"], 3);
  // The checkpoint's weights are the run's final weights.
  auto w = checkpoint::load_model_weights(d);
  auto final_w = checkpoint::load_safetensors(run + "/model.safetensors");
  ASSERT_EQ(w.size(), final_w.size());
  for (auto& [n, x] : final_w) EXPECT_TRUE(torch::equal(x, w.at(n))) << n;
  // export-hf / import-hf read the same weights from the per-rank shard files.
  auto native = checkpoint::load_native(d);
  for (auto& [n, x] : final_w) EXPECT_TRUE(torch::equal(x, native.tensors.at(n))) << n;
  checkpoint::SafetensorsFile rng(d + "/rng.safetensors");
  EXPECT_TRUE(rng.contains("rank00000.cpu"));
}

TEST(Training, InitFromFullStateContinuesOptimizerAndSchedule) {
  std::string src = temp_dir("ft_src"), full = temp_dir("ft_full"), weights = temp_dir("ft_weights");
  auto a = tiny_recipe(manifest(), src, 10);
  TrainOptions stop = quiet();
  stop.stop_at_step = 4;
  run_training(a, stop);
  auto reference = read_metrics(src);

  auto b = tiny_recipe(manifest(), full, 10);
  b.init_from = src + "/checkpoints/step_4";
  b.init_from_mode = "full";
  run_training(b, quiet());
  auto m = read_metrics(full);
  ASSERT_EQ(m.size(), 6u);
  EXPECT_EQ(m.front()["step"], 5);  // the schedule goes on from step 4
  a.resume = "latest";
  run_training(a, quiet());          // the source run continued: same lr at every step
  auto cont = read_metrics(src);
  ASSERT_EQ(cont.size(), 10u);
  for (std::size_t i = 0; i < m.size(); ++i) EXPECT_EQ(m[i]["lr"], cont[i + 4]["lr"]);

  auto c = tiny_recipe(manifest(), weights, 10);
  c.init_from = src + "/checkpoints/step_4";  // weights only: fresh optimizer, schedule from step 1
  run_training(c, quiet());
  auto mw = read_metrics(weights);
  ASSERT_EQ(mw.size(), 10u);
  EXPECT_EQ(mw.front()["lr"], reference.front()["lr"]);
  // Both fine-tunes start from the same weights on the same first batch (new data, read from its
  // start): the same first loss, and not the fresh initialisation's.
  EXPECT_EQ(mw.front()["loss"], m.front()["loss"]);
  EXPECT_NE(mw.front()["loss"], reference.front()["loss"]);

  c.init_from = run_dir_without_checkpoint();
  c.init_from_mode = "full";
  EXPECT_THROW(run_training(c, quiet()), Error);
}
