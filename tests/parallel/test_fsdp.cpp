// Sharding strategies against the single-process run: real processes (Gloo on CPU, one thread
// each) started by `openlm launch`, each strategy at world size 2 and 4 (hybrid: 2 groups of 2),
// fp32, with gradient accumulation. Same losses and final weights within 1e-5 relative; FULL_SHARD
// holds at most 0.3x the single-process state per rank; stop + resume is bit-identical under every
// strategy, and per-rank checkpoint shards resume on other world sizes (1->2->4->2, 2->1->4).
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "openlm_cpp/checkpoint/tensor_file.h"
#include "train_fixtures.h"

namespace fs = std::filesystem;
using namespace openlm;
using namespace openlm::testing;

namespace {

std::string recipe_path() {
  static std::string p = [] {
    std::string manifest = write_counting_shards(temp_dir("fsdp_data"), 200, 16, 64, 3);
    std::string path = temp_dir("fsdp_recipe") + "/tiny.yaml";
    std::ofstream(path) << "model:\n  name: t\n  dim: 32\n  n_layers: 3\n  n_heads: 4\n  seq_len: 16\n"
                        << "  vocab_size: 64\n  norm_type: gain_only_lp_layer_norm\n  qk_norm: true\n"
                        << "data:\n  manifests: [{path: " << manifest << "}]\n"
                        << "batch: {global_batch_size: 8, micro_batch_size: 2}\n"
                        << "optim: {lr: 1.0e-2, z_loss: 1.0e-4, wd: 0.1}\nschedule: {warmup: 2}\n"
                        << "max_steps: 10\nlogging: {tensorboard: false}\nrun_dir: unused\n";
    return path;
  }();
  return p;
}

/// Runs `openlm train` on `world` ranks (world 1: directly); returns the exit status.
int train(const std::string& run, int world, const std::string& extra) {
  std::string cmd = "OMP_NUM_THREADS=1 ";
  if (world > 1) cmd += std::string(OPENLM_CLI) + " launch --standalone --nproc-per-node " + std::to_string(world) + " -- ";
  cmd += std::string(OPENLM_CLI) + " train " + recipe_path() + " --run-dir " + run + " " + extra + " > " + run +
         ".log 2>&1";
  return std::system(cmd.c_str());
}


std::string log_of(const std::string& run) {
  std::ifstream in(run + ".log");
  return std::string(std::istreambuf_iterator<char>(in), {});
}

const std::string& reference() {
  static std::string run = [] {
    std::string r = temp_dir("fsdp_ref") + "/run";
    EXPECT_EQ(train(r, 1, ""), 0) << log_of(r);
    return r;
  }();
  return run;
}

void expect_matches_reference(const std::string& run) {
  auto ref = read_metrics(reference()), got = read_metrics(run);
  ASSERT_EQ(got.size(), ref.size()) << log_of(run);
  for (std::size_t i = 0; i < ref.size(); ++i)
    EXPECT_NEAR(got[i]["loss"].get<double>(), ref[i]["loss"].get<double>(), 1e-5 * ref[i]["loss"].get<double>())
        << "step " << i + 1;
  auto wr = checkpoint::load_safetensors(reference() + "/model.safetensors");
  auto wg = checkpoint::load_safetensors(run + "/model.safetensors");
  ASSERT_EQ(wr.size(), wg.size());
  for (auto& [n, t] : wr) {
    double rel = (wg.at(n) - t).norm().item<double>() / std::max(t.norm().item<double>(), 1e-12);
    EXPECT_LE(rel, 1e-5) << n;
  }
}

struct Case {
  const char* strategy;
  int world;
  const char* extra;
};

}  // namespace

class Strategies : public ::testing::TestWithParam<Case> {};

TEST_P(Strategies, MatchSingleProcess) {
  const Case& c = GetParam();
  std::string run = temp_dir(std::string("fsdp_") + c.strategy + std::to_string(c.world)) + "/run";
  ASSERT_EQ(train(run, c.world, std::string("--set parallel.strategy=") + c.strategy + " " + c.extra), 0)
      << log_of(run);
  expect_matches_reference(run);
}

INSTANTIATE_TEST_SUITE_P(
    Fsdp, Strategies,
    ::testing::Values(Case{"full_shard", 2, ""}, Case{"shard_grad_op", 2, ""}, Case{"no_shard", 2, ""},
                      Case{"hybrid_shard", 2, "--set parallel.shard_group_size=2"},
                      Case{"full_shard", 4, ""}, Case{"shard_grad_op", 4, ""}, Case{"no_shard", 4, ""},
                      Case{"hybrid_shard", 4, "--set parallel.shard_group_size=2"},
                      Case{"full_shard", 2, "--set grad_checkpointing=true --set batch.micro_batch_size=1"}),
    [](const auto& param_info) {
      const Case& c = param_info.param;
      return std::string(c.strategy) + "_w" + std::to_string(c.world) + (param_info.index == 8 ? "_ckpt" : "");
    });

TEST(Fsdp, FullShardStateIsAQuarterAtWorldFour) {
  std::string run = temp_dir("fsdp_mem") + "/run";
  ASSERT_EQ(train(run, 4, "--set parallel.strategy=full_shard --max-steps 2 --set schedule.warmup=1"), 0) << log_of(run);
  double single = read_metrics(reference()).front()["state_bytes_per_rank"].get<double>();
  double sharded = read_metrics(run).front()["state_bytes_per_rank"].get<double>();
  EXPECT_LE(sharded, 0.3 * single) << sharded << " vs " << single;
}

TEST(Fsdp, CheckpointReshardsAcrossWorldSizes) {
  // Stop at step 4 on 2 ranks (FULL_SHARD), resume on 1, stop at 7, resume on 4 ranks (hybrid):
  // the stitched run must equal the reference.
  std::string run = temp_dir("fsdp_reshard") + "/run";
  ASSERT_EQ(train(run, 2, "--set parallel.strategy=full_shard --set resume=latest --stop-at-step 4"), 0) << log_of(run);
  ASSERT_EQ(train(run, 1, "--set resume=latest --stop-at-step 7"), 0) << log_of(run);
  ASSERT_EQ(train(run, 4, "--set parallel.strategy=hybrid_shard --set parallel.shard_group_size=2 --set resume=latest"), 0)
      << log_of(run);
  EXPECT_NE(log_of(run).find("resharded from 1 to 4 ranks"), std::string::npos) << log_of(run);
  expect_matches_reference(run);
}

/// Uninterrupted vs stopped at step 4 and resumed, same world size and strategy: bit-identical
/// losses and weights on CPU. Checks the per-rank shard files each strategy writes. The FULL_SHARD
/// case saves asynchronously every step (commits happen at later step boundaries).
class ResumeStrategies : public ::testing::TestWithParam<Case> {};

TEST_P(ResumeStrategies, ResumedEqualsUninterrupted) {
  const Case& c = GetParam();
  const std::string base = std::string("--set parallel.strategy=") + c.strategy + " " + c.extra;
  std::string dir = temp_dir(std::string("fsdp_resume_") + c.strategy);
  std::string whole = dir + "/whole", part = dir + "/part";
  ASSERT_EQ(train(whole, c.world, base), 0) << log_of(whole);
  ASSERT_EQ(train(part, c.world, base + " --set resume=latest --stop-at-step 4"), 0) << log_of(part);

  // Each distinct shard is written once, by its own rank, with the layout in metadata.json.
  const int shards = std::string(c.strategy) == "no_shard" ? 1 : 2;
  auto meta = nlohmann::json::parse(std::ifstream(part + "/checkpoints/step_4/metadata.json"));
  ASSERT_EQ(meta["shards"]["model"].size(), static_cast<std::size_t>(shards)) << meta["shards"].dump();
  for (int s = 0; s < shards; ++s)
    for (const char* kind : {"model", "optim"}) {
      char name[64];
      std::snprintf(name, sizeof name, "%s-shard%05d-of-%05d.safetensors", kind, s, shards);
      EXPECT_TRUE(fs::exists(part + "/checkpoints/step_4/" + name)) << name;
    }
  EXPECT_EQ(meta["world_size"], c.world);

  ASSERT_EQ(train(part, c.world, base + " --set resume=latest"), 0) << log_of(part);
  auto mw = read_metrics(whole), mp = read_metrics(part);
  ASSERT_EQ(mp.size(), mw.size());
  for (std::size_t i = 0; i < mw.size(); ++i) {
    EXPECT_EQ(mp[i]["step"], mw[i]["step"]);
    EXPECT_EQ(mp[i]["loss"], mw[i]["loss"]) << "step " << i + 1;
  }
  auto ww = checkpoint::load_safetensors(whole + "/model.safetensors");
  auto wp = checkpoint::load_safetensors(part + "/model.safetensors");
  for (auto& [n, t] : ww) EXPECT_TRUE(torch::equal(t, wp.at(n))) << n;
}

INSTANTIATE_TEST_SUITE_P(Fsdp, ResumeStrategies,
                         ::testing::Values(Case{"full_shard", 2, "--set checkpoint.async=true --set checkpoint.every_steps=1"},
                                           Case{"shard_grad_op", 2, ""}, Case{"no_shard", 2, ""},
                                           Case{"hybrid_shard", 4, "--set parallel.shard_group_size=2"}),
                         [](const auto& param_info) { return std::string(param_info.param.strategy); });

TEST(Fsdp, CheckpointReshardsUpAndDown) {
  // 1 rank -> 2 (SHARD_GRAD_OP) -> 4 (FULL_SHARD) -> 2 (NO_SHARD): every leg reads slices saved
  // with another layout; the stitched run must equal the reference.
  std::string run = temp_dir("fsdp_reshard_up") + "/run";
  ASSERT_EQ(train(run, 1, "--set resume=latest --stop-at-step 3"), 0) << log_of(run);
  ASSERT_EQ(train(run, 2, "--set parallel.strategy=shard_grad_op --set resume=latest --stop-at-step 5"), 0) << log_of(run);
  ASSERT_EQ(train(run, 4, "--set parallel.strategy=full_shard --set resume=latest --stop-at-step 7"), 0) << log_of(run);
  ASSERT_EQ(train(run, 2, "--set parallel.strategy=no_shard --set resume=latest"), 0) << log_of(run);
  EXPECT_NE(log_of(run).find("resharded from 4 to 2 ranks"), std::string::npos) << log_of(run);
  expect_matches_reference(run);
}

TEST(Fsdp, PreemptionSignalCheckpointsAndResumes) {
  // SIGUSR1 to the launcher reaches every rank: they agree on the step, save a checkpoint there,
  // and exit 0; `resume: latest` then continues from that step with each step logged once.
  std::string run = temp_dir("fsdp_preempt") + "/run";
  std::string cmd = "OMP_NUM_THREADS=1 exec " + std::string(OPENLM_CLI) + " launch --standalone --nproc-per-node 2 -- " +
                    OPENLM_CLI + " train " + recipe_path() + " --run-dir " + run +
                    " --max-steps 5000 --set parallel.strategy=full_shard --set resume=latest > " + run + ".log 2>&1";
  fs::create_directories(fs::path(run).parent_path());
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  for (int i = 0; i < 600 && read_metrics(run).size() < 3; ++i) usleep(100 * 1000);
  ASSERT_GE(read_metrics(run).size(), 3u) << log_of(run);
  kill(pid, SIGUSR1);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status)) << log_of(run);
  EXPECT_EQ(WEXITSTATUS(status), 0) << log_of(run);
  const auto done = read_metrics(run).size();
  ASSERT_LT(done, 5000u);
  std::ifstream latest(run + "/checkpoints/latest");
  std::string name;
  latest >> name;
  EXPECT_EQ(name, "step_" + std::to_string(done)) << log_of(run);
  EXPECT_NE(log_of(run).find("preemption signal"), std::string::npos) << log_of(run);

  const int64_t target = static_cast<int64_t>(done) + 2;
  ASSERT_EQ(train(run, 2, "--max-steps 5000 --set parallel.strategy=full_shard --set resume=latest --stop-at-step " +
                              std::to_string(target)),
            0)
      << log_of(run);
  auto m = read_metrics(run);
  ASSERT_EQ(m.size(), static_cast<std::size_t>(target));
  for (std::size_t i = 0; i < m.size(); ++i) EXPECT_EQ(m[i]["step"], static_cast<int64_t>(i) + 1);
}
