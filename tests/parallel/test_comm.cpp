// Communicator tests: real processes over Gloo on CPU, started by our launcher (world size 2 and
// 4, OMP_NUM_THREADS=1), plus the single-process communicator in this process.
#include <ATen/ATen.h>
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <regex>
#include <sstream>

#include <gtest/gtest.h>

#include "launch/launcher.h"
#include "openlm_cpp/core/config.h"
#include "openlm_cpp/core/dist_env.h"
#include "openlm_cpp/parallel/comm.h"

using namespace openlm;
using namespace openlm::parallel;

namespace {

struct WorkerRun {
  launch::LaunchResult res;
  std::string out;
  double seconds = 0;
};

/// Runs comm_worker on `nproc` ranks through the launcher; stdout+stderr of all ranks in `out`.
WorkerRun run_workers(int nproc, const std::string& scenario, double timeout_s, int max_restarts = 0) {
  char path[] = "/tmp/openlm_comm_XXXXXX";
  int fd = ::mkstemp(path);
  launch::LaunchOptions o;
  o.nproc_per_node = nproc;
  o.standalone = true;
  o.stop_grace_s = 2;
  o.max_restarts = max_restarts;
  o.command = {OPENLM_COMM_WORKER, scenario, std::to_string(timeout_s)};
  o.extra_env = {{"OMP_NUM_THREADS", "1"}};
  o.out_fd = fd;
  o.err_fd = fd;
  WorkerRun r;
  auto t0 = std::chrono::steady_clock::now();
  r.res = launch::run(o);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ::close(fd);
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  r.out = s.str();
  ::unlink(path);
  return r;
}

/// The elapsed seconds the failing rank printed with its CommError.
double error_seconds(const std::string& out) {
  std::smatch m;
  if (!std::regex_search(out, m, std::regex(R"(CommError after ([0-9.]+) s)"))) return -1;
  return std::stod(m[1]);
}

}  // namespace

TEST(Communicator, CollectivesExactAtWorldSize2) {
  WorkerRun r = run_workers(2, "collectives", 30);
  ASSERT_EQ(r.res.exit_code, 0) << r.res.message << "\n" << r.out;
  for (int i = 0; i < 2; ++i)
    EXPECT_NE(r.out.find("[rank" + std::to_string(i) + "]: OK collectives rank " + std::to_string(i) + " of 2 (gloo)"),
              std::string::npos)
        << r.out;
}

TEST(Communicator, CollectivesExactAtWorldSize4WithHybridGroups) {
  WorkerRun r = run_workers(4, "collectives", 30);
  ASSERT_EQ(r.res.exit_code, 0) << r.res.message << "\n" << r.out;
  for (int i = 0; i < 4; ++i)
    EXPECT_NE(r.out.find("[rank" + std::to_string(i) + "]: OK collectives rank " + std::to_string(i) + " of 4"),
              std::string::npos)
        << r.out;
}

TEST(Communicator, GroupRestartsAfterAFailureAndMeetsAgain) {
  // Same TCPStore port in both attempts, as with `openlm launch --max-restarts`.
  WorkerRun r = run_workers(2, "restart", 10, /*max_restarts=*/1);
  ASSERT_EQ(r.res.exit_code, 0) << r.res.message << "\n" << r.out;
  EXPECT_EQ(r.res.restarts, 1);
  EXPECT_NE(r.out.find("[rank1]: failing on purpose in attempt 0"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("[rank0]: OK restart rank 0 attempt 1"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("[rank1]: OK restart rank 1 attempt 1"), std::string::npos) << r.out;
}

TEST(Communicator, RankThatNeverJoinsTimesOut) {
  const double timeout = 2;
  WorkerRun r = run_workers(2, "no_join", timeout);
  EXPECT_EQ(r.res.failed_rank, 0) << r.out;
  EXPECT_EQ(r.res.exit_code, 3) << r.out;
  EXPECT_NE(r.out.find("rendezvous timed out after 2 s on rank 0 of 2"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("rank(s) 1 never arrived"), std::string::npos) << r.out;
  double t = error_seconds(r.out);
  EXPECT_GE(t, timeout - 0.5) << r.out;
  EXPECT_LT(t, timeout + 3) << r.out;
}

TEST(Communicator, MissingMasterTimesOut) {
  const double timeout = 2;
  WorkerRun r = run_workers(2, "no_master", timeout);
  EXPECT_EQ(r.res.failed_rank, 1) << r.out;
  EXPECT_EQ(r.res.exit_code, 3) << r.out;
  EXPECT_NE(r.out.find("rank 1 of 2 could not reach rank 0's TCPStore"), std::string::npos) << r.out;
  double t = error_seconds(r.out);
  EXPECT_GE(t, 0) << r.out;
  EXPECT_LT(t, timeout + 3) << r.out;
}

TEST(Communicator, PeerDyingMidRunIsAnError) {
  const double timeout = 2;
  WorkerRun r = run_workers(2, "peer_dies", timeout);
  EXPECT_EQ(r.res.failed_rank, 0) << r.out;
  EXPECT_EQ(r.res.exit_code, 3) << r.out;
  EXPECT_NE(r.out.find("all_reduce on rank 0 of 2 (world, gloo) failed"), std::string::npos) << r.out;
  double t = error_seconds(r.out);
  EXPECT_GE(t, 0) << r.out;
  EXPECT_LT(t, timeout + 3) << r.out;
}

TEST(Communicator, StuckPeerTimesOut) {
  const double timeout = 2;
  WorkerRun r = run_workers(2, "peer_stuck", timeout);
  EXPECT_EQ(r.res.failed_rank, 0) << r.out;
  EXPECT_EQ(r.res.exit_code, 3) << r.out;
  EXPECT_NE(r.out.find("all_reduce on rank 0 of 2 (world, gloo) failed"), std::string::npos) << r.out;
  double t = error_seconds(r.out);
  EXPECT_GE(t, timeout - 0.5) << r.out;
  EXPECT_LT(t, timeout + 3) << r.out;
  EXPECT_LT(r.seconds, timeout + 10);
}

TEST(Communicator, SingleProcess) {
  auto c = make_communicator(DistEnv{}, ParallelConfig{});
  EXPECT_EQ(c->size(), 1);
  EXPECT_EQ(c->backend(), "single");
  at::Tensor in = at::arange(6, at::kFloat), out = at::empty({6});
  c->all_gather_into(out, in);
  EXPECT_TRUE(at::equal(out, in));
  at::Tensor b = at::arange(6, at::kFloat).to(at::kBFloat16), o = at::empty({6}, at::kBFloat16);
  c->reduce_scatter(o, b);
  EXPECT_TRUE(at::equal(o, b));
  at::Tensor t = at::ones({3});
  c->all_reduce(t, ReduceOp::Avg);
  EXPECT_TRUE(at::equal(t, at::ones({3})));
  c->broadcast(t, 0);
  EXPECT_THROW(c->broadcast(t, 1), CommError);
  EXPECT_THROW(c->all_gather_into(at::empty({5}), in), CommError);
  EXPECT_THROW(c->all_reduce(at::ones({3}, at::kLong), ReduceOp::Avg), CommError);
  EXPECT_EQ(c->all_gather_bytes("hello"), std::vector<std::string>{"hello"});
  EXPECT_EQ(c->all_reduce_scalar(2.5), 2.5);
  auto g = c->new_group({0});
  ASSERT_TRUE(g);
  EXPECT_EQ(g->name(), "world/g0");
  HybridGroups h = make_hybrid_groups(*c, 1);
  EXPECT_EQ(h.shard->size(), 1);
  EXPECT_EQ(h.replicate->size(), 1);
  EXPECT_THROW(make_hybrid_groups(*c, 2), ConfigError);
}

TEST(Communicator, ProcessGroupAtWorldSize1) {
  // The c10d path even for one rank (what a GPU check of NCCL would use).
  DistEnv env;
  env.master_port = launch::pick_free_port();
  ParallelConfig cfg;
  cfg.timeout_s = 10;
  auto c = make_process_group_communicator(env, cfg);
  EXPECT_EQ(c->backend().substr(0, 4), "gloo");
  at::Tensor b = at::arange(8, at::kFloat).to(at::kBFloat16), o = at::empty({8}, at::kBFloat16);
  c->reduce_scatter(o, b);
  EXPECT_TRUE(at::equal(o, b));
  at::Tensor g = at::empty({8}, at::kBFloat16);
  c->all_gather_into(g, b);
  EXPECT_TRUE(at::equal(g, b));
  EXPECT_EQ(c->all_gather_bytes("x"), std::vector<std::string>{"x"});
}
