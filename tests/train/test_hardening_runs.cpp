// Issue 13 B.1-2 through the CLI, as a user runs `openlm`: a run directory holding another run's
// files is refused before anything in it is written (--overwrite moves them aside; resume=latest
// serves the first start and every restart, also on 2 ranks), and the first Ctrl-C checkpoints and
// stops (one process and 2 ranks under `openlm launch`) so that resume continues with each step once.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>

#include "openlm_cpp/checkpoint/atomic_file.h"
#include "openlm_cpp/core/recipe.h"
#include "train_fixtures.h"

namespace stdfs = std::filesystem;
using openlm::testing::read_metrics;
using openlm::testing::temp_dir;

namespace {

using namespace openlm::testing;  // openlm_bin, sh, q, slurp, has, snapshot, temp_dir, ...

const std::string kBin = openlm_bin();

/// A finished 4-step tiny run (checkpoints step_2, step_4, TensorBoard on), trained once; copied per test.
const std::string& base_run() {
  static const std::string run = [] {
    const std::string root = temp_dir("runs_base");
    const std::string manifest = openlm::testing::write_counting_shards(root + "/data", 64, 16, 64);
    openlm::TrainConfig c = openlm::testing::tiny_recipe(manifest, root + "/run", 4);
    c.checkpoint.every_steps = 2;
    c.checkpoint.keep_last = 5;
    c.logging.tensorboard = true;
    std::ofstream(root + "/recipe.json") << openlm::to_json(c).dump(2);
    Result r = sh("OMP_NUM_THREADS=1 " + q(kBin) + " train " + q(root + "/recipe.json") + " --run-dir " + q(root + "/run"));
    EXPECT_EQ(r.rc, 0) << r.out;
    EXPECT_TRUE(stdfs::exists(root + "/run/checkpoints/step_4/metadata.json")) << r.out;
    return root + "/run";
  }();
  return run;
}

std::string recipe() { return stdfs::path(base_run()).parent_path().string() + "/recipe.json"; }

std::string copy_run(const std::string& name) {
  const std::string dir = temp_dir(name) + "/run";
  stdfs::copy(base_run(), dir, stdfs::copy_options::recursive);
  return dir;
}

Result train(const std::string& run, const std::string& extra, int world = 1) {
  std::string cmd = "OMP_NUM_THREADS=1 ";
  if (world > 1) cmd += q(kBin) + " launch --standalone --nproc-per-node " + std::to_string(world) + " -- ";
  return sh(cmd + q(kBin) + " train " + q(recipe()) + " --run-dir " + q(run) + " " + extra);
}

std::string latest(const std::string& run) {
  std::string name;
  std::ifstream(run + "/checkpoints/latest") >> name;
  return name;
}

void expect_each_step_once(const std::string& run, std::size_t steps) {
  auto m = read_metrics(run);
  ASSERT_EQ(m.size(), steps);
  for (std::size_t i = 0; i < m.size(); ++i) EXPECT_EQ(m[i]["step"], static_cast<int64_t>(i) + 1);
}

}  // namespace

// ---- B.1: a run directory holding another run --------------------------------------------------

TEST(RunDir, HoldingAnotherRunIsRefusedAndLeftByteIdentical) {
  const std::string run = copy_run("rundir_refused");
  const auto before = snapshot(run);
  Result r = train(run, "--max-steps 2");
  EXPECT_NE(r.rc, 0) << r.out;
  EXPECT_TRUE(has(r.out, "already holds another run")) << r.out;
  EXPECT_TRUE(has(r.out, "resume=latest")) << r.out;
  EXPECT_TRUE(has(r.out, "--run-dir")) << r.out;
  EXPECT_TRUE(has(r.out, "--overwrite")) << r.out;
  EXPECT_TRUE(snapshot(run) == before) << "the refused run directory changed";

  // Any one of the run's files is enough (e.g. a run that died before its first checkpoint).
  const std::string partial = temp_dir("rundir_partial") + "/run";
  stdfs::create_directories(partial);
  std::ofstream(partial + "/metrics.jsonl") << "{\"step\":1}\n";
  const auto partial_before = snapshot(partial);
  Result p = train(partial, "--max-steps 2");
  EXPECT_NE(p.rc, 0) << p.out;
  EXPECT_TRUE(snapshot(partial) == partial_before);
}

TEST(RunDir, TwoRanksRefuseTogetherBeforeWriting) {
  const std::string run = copy_run("rundir_refused2");
  const auto before = snapshot(run);
  Result r = train(run, "--max-steps 2 --set parallel.strategy=full_shard", 2);
  EXPECT_NE(r.rc, 0) << r.out;
  EXPECT_TRUE(has(r.out, "already holds another run")) << r.out;
  EXPECT_TRUE(snapshot(run) == before) << "the refused run directory changed";
}

TEST(RunDir, OverwriteMovesTheOldRunAside) {
  const std::string run = copy_run("rundir_overwrite");
  std::ofstream(run + "/notes.txt") << "mine\n";  // not a run file: stays where it is
  const auto before = snapshot(run);
  Result r = train(run, "--max-steps 2 --overwrite");
  ASSERT_EQ(r.rc, 0) << r.out;
  ASSERT_TRUE(stdfs::is_directory(run + "/previous-1")) << r.out;
  auto moved = snapshot(run + "/previous-1");
  for (auto& [rel, bytes] : before) {
    if (rel == "notes.txt") continue;
    ASSERT_TRUE(moved.count(rel)) << rel;
    EXPECT_TRUE(moved.at(rel) == bytes) << rel;
  }
  EXPECT_EQ(moved.size(), before.size() - 1);
  EXPECT_EQ(slurp(run + "/notes.txt"), "mine\n");
  expect_each_step_once(run, 2);
  EXPECT_EQ(latest(run), "step_2");
  EXPECT_FALSE(stdfs::exists(run + "/checkpoints/step_4"));

  // Again: the second old run goes to previous-2, the first stays as it was.
  Result again = train(run, "--max-steps 3 --overwrite");
  ASSERT_EQ(again.rc, 0) << again.out;
  EXPECT_TRUE(snapshot(run + "/previous-1") == moved);
  EXPECT_TRUE(stdfs::exists(run + "/previous-2/checkpoints/step_2"));
  expect_each_step_once(run, 3);

  // --overwrite with resume would move aside, on a restart, the run it should continue.
  Result both = train(run, "--max-steps 3 --overwrite --set resume=latest");
  EXPECT_NE(both.rc, 0) << both.out;
  EXPECT_TRUE(has(both.out, "--overwrite")) << both.out;
  EXPECT_FALSE(stdfs::exists(run + "/previous-3"));
}

TEST(RunDir, ResumeLatestServesTheFirstStartAndEveryRestart) {
  // The same command line: a run directory that does not exist yet, then the same one resumed,
  // on 2 ranks (the launcher's --max-restarts relies on it); an empty directory is fine too.
  const std::string run = temp_dir("rundir_resume") + "/run";
  const std::string cmd = "--max-steps 6 --set resume=latest --set checkpoint.every_steps=1 --set parallel.strategy=full_shard";
  Result first = train(run, cmd + " --stop-at-step 2", 2);
  ASSERT_EQ(first.rc, 0) << first.out;
  Result second = train(run, cmd + " --stop-at-step 4", 2);
  ASSERT_EQ(second.rc, 0) << second.out;
  expect_each_step_once(run, 4);

  const std::string empty = temp_dir("rundir_empty") + "/run";
  stdfs::create_directories(empty);
  Result e = train(empty, "--max-steps 2");
  ASSERT_EQ(e.rc, 0) << e.out;
  expect_each_step_once(empty, 2);
}

// ---- B.2: Ctrl-C checkpoints and stops ---------------------------------------------------------

namespace {

/// Starts `openlm ARGS` (through sh, output to `log`) and returns its pid.
pid_t start(const std::string& args, const std::string& log) {
  const std::string cmd = "OMP_NUM_THREADS=1 exec " + q(kBin) + " " + args + " > " + q(log) + " 2>&1";
  pid_t pid = ::fork();
  if (pid == 0) {
    ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  return pid;
}

/// Interrupts a long run once it has logged 3 steps; returns the wait status.
int interrupt_after_three_steps(pid_t pid, const std::string& run) {
  for (int i = 0; i < 1200 && read_metrics(run).size() < 3; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_GE(read_metrics(run).size(), 3u);
  ::kill(pid, SIGINT);
  int st = 0;
  ::waitpid(pid, &st, 0);
  return st;
}

}  // namespace

TEST(Sigint, OneProcessCheckpointsStopsAndResumes) {
  const std::string run = temp_dir("sigint_one") + "/run";
  const std::string log = run + ".log";
  const std::string args = "train " + q(recipe()) + " --run-dir " + q(run) + " --max-steps 5000 --set resume=latest";
  const int st = interrupt_after_three_steps(start(args, log), run);
  ASSERT_TRUE(WIFEXITED(st)) << "killed by signal " << (WIFSIGNALED(st) ? WTERMSIG(st) : 0) << "\n" << slurp(log);
  EXPECT_EQ(WEXITSTATUS(st), 128 + SIGINT) << slurp(log);
  const std::size_t done = read_metrics(run).size();
  ASSERT_LT(done, 5000u);
  EXPECT_EQ(latest(run), "step_" + std::to_string(done)) << slurp(log);
  EXPECT_TRUE(has(slurp(log), "SIGINT")) << slurp(log);
  EXPECT_TRUE(has(slurp(log), "checkpoint saved at step " + std::to_string(done))) << slurp(log);
  EXPECT_TRUE(has(slurp(log), "checkpoints/step_" + std::to_string(done))) << slurp(log);

  Result r = train(run, "--max-steps 5000 --set resume=latest --stop-at-step " + std::to_string(done + 2));
  ASSERT_EQ(r.rc, 0) << r.out;
  expect_each_step_once(run, done + 2);
}

TEST(Sigint, TwoRanksUnderLaunchCheckpointStopAndResume) {
  // Ctrl-C reaches the launcher; it forwards SIGINT to both ranks, which agree on a step, save a
  // checkpoint there and exit; the launcher exits 128 + SIGINT. The same command resumes.
  const std::string run = temp_dir("sigint_two") + "/run";
  const std::string log = run + ".log";
  const std::string train_args = "train " + q(recipe()) + " --run-dir " + q(run) +
                                 " --max-steps 5000 --set resume=latest --set parallel.strategy=full_shard";
  const int st = interrupt_after_three_steps(
      start("launch --standalone --nproc-per-node 2 --stop-grace 60 -- " + q(kBin) + " " + train_args, log), run);
  ASSERT_TRUE(WIFEXITED(st)) << slurp(log);
  EXPECT_EQ(WEXITSTATUS(st), 128 + SIGINT) << slurp(log);
  const std::size_t done = read_metrics(run).size();
  ASSERT_LT(done, 5000u);
  EXPECT_EQ(latest(run), "step_" + std::to_string(done)) << slurp(log);
  EXPECT_TRUE(stdfs::exists(run + "/checkpoints/step_" + std::to_string(done) + "/model-shard00001-of-00002.safetensors"))
      << slurp(log);
  EXPECT_TRUE(has(slurp(log), "checkpoint saved at step " + std::to_string(done))) << slurp(log);

  Result r = train(run, "--max-steps 5000 --set resume=latest --set parallel.strategy=full_shard --stop-at-step " +
                            std::to_string(done + 2),
                   2);
  ASSERT_EQ(r.rc, 0) << r.out;
  expect_each_step_once(run, done + 2);
}
