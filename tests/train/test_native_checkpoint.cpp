// Native checkpoints: atomic directories, the `latest` pointer, retention, verification of
// checksums and completeness, a disk-full write that keeps the previous checkpoint, and SIGKILL at
// any moment of a save.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>

#include "openlm_cpp/checkpoint/atomic_file.h"
#include "openlm_cpp/checkpoint/native_checkpoint.h"
#include "openlm_cpp/core/error.h"
#include "train_fixtures.h"

namespace stdfs = std::filesystem;
using namespace openlm;
using namespace openlm::checkpoint;

namespace {
CheckpointFiles files(int64_t n, float v) {
  CheckpointFiles f;
  f.tensor_files.push_back({"model.safetensors", {{"w", torch::full({n}, v)}}});
  f.metadata = {{"note", "test"}};
  return f;
}
std::string latest(const std::string& run) {
  std::string s = openlm::fs::read_file(run + "/checkpoints/latest");
  return s.substr(0, s.find('\n'));
}
}  // namespace

TEST(NativeCheckpoint, RetentionAndLatest) {
  std::string run = openlm::testing::temp_dir("ckpt_retention");
  for (int64_t s = 1; s <= 8; ++s) save_checkpoint(run, s, files(4, float(s)), /*keep_last=*/2, /*keep_every=*/4);
  std::vector<std::string> left;
  for (auto& e : stdfs::directory_iterator(run + "/checkpoints"))
    if (e.is_directory()) left.push_back(e.path().filename().string());
  std::sort(left.begin(), left.end());
  EXPECT_EQ(left, (std::vector<std::string>{"step_4", "step_7", "step_8"}));
  EXPECT_EQ(latest(run), "step_8");
  auto meta = verify_checkpoint(run + "/checkpoints/step_8");
  EXPECT_EQ(meta["step"], 8);
  EXPECT_EQ(meta["note"], "test");
  EXPECT_EQ(resolve_checkpoint(run, "latest"), run + "/checkpoints/step_8");
}

TEST(NativeCheckpoint, TruncatedOrIncompleteIsRefusedAndLatestFallsBack) {
  std::string run = openlm::testing::temp_dir("ckpt_truncated");
  save_checkpoint(run, 1, files(64, 1.f), 3, 0);
  save_checkpoint(run, 2, files(64, 2.f), 3, 0);
  stdfs::resize_file(run + "/checkpoints/step_2/model.safetensors", 100);
  try {
    verify_checkpoint(run + "/checkpoints/step_2");
    FAIL();
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("model.safetensors"), std::string::npos) << e.what();
  }
  EXPECT_EQ(resolve_checkpoint(run, "latest"), run + "/checkpoints/step_1");
  stdfs::create_directories(run + "/checkpoints/step_3");  // a crash before metadata.json
  EXPECT_EQ(resolve_checkpoint(run, "latest"), run + "/checkpoints/step_1");
  EXPECT_THROW(resolve_checkpoint(run, run + "/checkpoints/step_3"), DataError);
  EXPECT_EQ(resolve_checkpoint(openlm::testing::temp_dir("ckpt_empty"), "latest"), "");
}

TEST(NativeCheckpoint, DiskFullKeepsThePreviousCheckpoint) {
  std::string run = openlm::testing::temp_dir("ckpt_diskfull");
  save_checkpoint(run, 1, files(16, 1.f), 2, 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {  // child: files may not exceed 64 KiB; the write of 4 MB fails with EFBIG
    std::signal(SIGXFSZ, SIG_IGN);
    rlimit lim{64 << 10, 64 << 10};
    setrlimit(RLIMIT_FSIZE, &lim);
    try {
      save_checkpoint(run, 2, files(1 << 20, 2.f), 2, 0);
      _exit(0);
    } catch (const IoError& e) {
      _exit(std::string(e.what()).find("model.safetensors") != std::string::npos ? 3 : 4);
    } catch (...) {
      _exit(5);
    }
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 3) << "expected an IoError naming the file";
  EXPECT_EQ(latest(run), "step_1");
  EXPECT_EQ(resolve_checkpoint(run, "latest"), run + "/checkpoints/step_1");
  EXPECT_FALSE(stdfs::exists(run + "/checkpoints/step_2"));
}

TEST(NativeCheckpoint, SigkillDuringSavesLeavesLatestValid) {
  // A child saves 8 MB checkpoints in a loop; it is SIGKILLed at various moments (mid-write,
  // mid-commit, between saves). Afterwards `latest` must name a complete, verified checkpoint, and
  // `resume: latest` must find one.
  for (int delay_ms : {3, 11, 23, 41, 67, 97}) {
    std::string run = openlm::testing::temp_dir("ckpt_kill_" + std::to_string(delay_ms));
    save_checkpoint(run, 1, files(1 << 21, 1.f), 2, 0);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      for (int64_t step = 2;; ++step) save_checkpoint(run, step, files(1 << 21, static_cast<float>(step)), 2, 0);
    }
    usleep(static_cast<useconds_t>(delay_ms) * 1000);
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status));
    std::string name = latest(run);
    EXPECT_NO_THROW(verify_checkpoint(run + "/checkpoints/" + name)) << "latest = " << name;
    EXPECT_NE(resolve_checkpoint(run, "latest"), "");
    // The next save cleans up whatever the killed one left half-written.
    save_checkpoint(run, 1000, files(16, 0.f), 2, 0);
    for (auto& e : stdfs::directory_iterator(run + "/checkpoints"))
      EXPECT_EQ(e.path().filename().string().find(".partial"), std::string::npos) << e.path();
  }
}

TEST(NativeCheckpoint, ChecksumHashedWhileWritingEqualsTheFilesHash) {
  std::string dir = openlm::testing::temp_dir("ckpt_hash");
  NamedTensors t = {{"a", torch::randn({1000, 37})}, {"b", torch::arange(11, torch::kInt64)},
                    {"c", torch::ones({3}, torch::kBFloat16)}, {"empty", torch::zeros({0})}};
  const uint64_t h = save_safetensors_hashed(dir + "/x.safetensors", t, {{"k", "v"}});
  EXPECT_EQ(std::stoull(file_xxh64(dir + "/x.safetensors"), nullptr, 16), h);
  t[0].second[0][0] = 5.f;  // another content, another hash
  EXPECT_NE(save_safetensors_hashed(dir + "/y.safetensors", t), h);
}
