// One rank of a multi-process Communicator test, started by test_comm through the launcher.
//   comm_worker <scenario> <timeout_s>
// Exits 0 and prints "OK <scenario>" when every check held; otherwise prints what failed and exits 1.
// Expected errors (timeouts, dead peers) are printed as "CommError: ..." with the elapsed seconds.
#include <ATen/ATen.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <thread>

#include "openlm_cpp/core/config.h"
#include "openlm_cpp/core/dist_env.h"
#include "openlm_cpp/parallel/comm.h"

using namespace openlm;
using namespace openlm::parallel;
using Clock = std::chrono::steady_clock;

namespace {

int g_rank = -1;

#define REQUIRE(cond)                                                                                  \
  do {                                                                                               \
    if (!(cond)) throw std::runtime_error(std::string("check failed at line ") + std::to_string(__LINE__) + \
                                          ": " #cond);                                               \
  } while (0)

bool same_bits(const at::Tensor& a, const at::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || a.numel() != b.numel()) return false;
  return std::memcmp(a.contiguous().data_ptr(), b.contiguous().data_ptr(), a.nbytes()) == 0;
}

/// Random bits as bf16 (every pattern, NaNs included, must survive the byte-view transport).
at::Tensor random_bf16(int64_t n, int seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(seed));
  return at::randint(-32768, 32767, {n}, gen, at::kShort).view(at::kBFloat16);
}

void check_collectives(Communicator& c) {
  const int w = c.size(), r = c.rank();
  const int64_t n = 1003;  // odd on purpose
  // all_gather_into, fp32: rank i contributes i*10000 + j
  {
    at::Tensor in = at::arange(n, at::kFloat) + r * 10000.0;
    at::Tensor out = at::full({w * n}, -1.0f);
    c.all_gather_into(out, in);
    at::Tensor want = (at::arange(w, at::kFloat) * 10000.0).view({w, 1}) + at::arange(n, at::kFloat).view({1, n});
    REQUIRE(at::equal(out, want.view({-1})));
  }
  // all_gather_into, bf16: bit-identical
  {
    at::Tensor out = at::empty({w * n}, at::kBFloat16);
    c.all_gather_into(out, random_bf16(n, 100 + r));
    for (int i = 0; i < w; ++i) REQUIRE(same_bits(out.narrow(0, i * n, n), random_bf16(n, 100 + i)));
  }
  // reduce_scatter, fp32 sum: in[j] = (rank+1) * j, exact in fp32
  {
    at::Tensor in = at::arange(w * n, at::kFloat) * (r + 1.0);
    at::Tensor out = at::empty({n}, at::kFloat);
    c.reduce_scatter(out, in);
    REQUIRE(at::equal(out, at::arange(r * n, (r + 1) * n, at::kFloat) * (w * (w + 1) / 2.0)));
    c.reduce_scatter(out, in, ReduceOp::Max);
    REQUIRE(at::equal(out, at::arange(r * n, (r + 1) * n, at::kFloat) * double(w)));
    c.reduce_scatter(out, in, ReduceOp::Avg);
    REQUIRE(at::allclose(out, at::arange(r * n, (r + 1) * n, at::kFloat) * ((w + 1) / 2.0), 1e-6, 0));
  }
  // reduce_scatter, bf16: values 1 + k*2^-7 sum exactly in fp32 and are rounded once to bf16
  {
    at::Tensor in = (1.0 + at::arange(w * n, at::kFloat).remainder(5) * (r + 1) / 128.0).to(at::kBFloat16);
    at::Tensor out = at::empty({n}, at::kBFloat16);
    c.reduce_scatter(out, in);
    at::Tensor sum32 = at::zeros({w * n}, at::kFloat);
    for (int i = 0; i < w; ++i) sum32 += 1.0 + at::arange(w * n, at::kFloat).remainder(5) * (i + 1) / 128.0;
    REQUIRE(same_bits(out, sum32.narrow(0, r * n, n).to(at::kBFloat16)));
  }
  // all_reduce: fp32 sum/max/min/avg, bf16 sum (reduced in fp32), int64 and int16 sums
  {
    at::Tensor t = at::arange(n, at::kFloat) + r;
    c.all_reduce(t);
    REQUIRE(at::equal(t, at::arange(n, at::kFloat) * w + w * (w - 1) / 2.0));
    t = at::full({7}, float(r));
    c.all_reduce(t, ReduceOp::Max);
    REQUIRE(at::equal(t, at::full({7}, float(w - 1))));
    t = at::full({7}, float(r) + 1);
    c.all_reduce(t, ReduceOp::Min);
    REQUIRE(at::equal(t, at::full({7}, 1.0f)));
    t = at::full({7}, float(r));
    c.all_reduce(t, ReduceOp::Avg);
    REQUIRE(at::allclose(t, at::full({7}, (w - 1) / 2.0f)));
    at::Tensor b = at::full({n}, 1.0 + (r + 1) / 128.0, at::kBFloat16);
    c.all_reduce(b);
    REQUIRE(same_bits(b, at::full({n}, w + w * (w + 1) / 2 / 128.0, at::kFloat).to(at::kBFloat16)));
    at::Tensor l = at::full({3}, int64_t(1) << 40, at::kLong);
    c.all_reduce(l);
    REQUIRE(at::equal(l, at::full({3}, (int64_t(1) << 40) * w, at::kLong)));
    at::Tensor s = at::full({3}, int16_t(100 + r), at::kShort);
    c.all_reduce(s);
    REQUIRE(at::equal(s, at::full({3}, int16_t(100 * w + w * (w - 1) / 2), at::kShort)));
    // a 2-D tensor is reduced in place as a whole
    at::Tensor m = at::ones({4, 5});
    c.all_reduce(m);
    REQUIRE(at::equal(m, at::full({4, 5}, float(w))));
  }
  // broadcast from the last rank, fp32 and bf16 (bit-identical)
  {
    at::Tensor t = at::full({5, 3}, float(r));
    c.broadcast(t, w - 1);
    REQUIRE(at::equal(t, at::full({5, 3}, float(w - 1))));
    at::Tensor b = r == w - 1 ? random_bf16(n, 7) : at::zeros({n}, at::kBFloat16);
    c.broadcast(b, w - 1);
    REQUIRE(same_bits(b, random_bf16(n, 7)));
  }
  // async: two gathers in flight, waited in reverse order
  {
    at::Tensor o1 = at::empty({w * 4}), o2 = at::empty({w * 4});
    auto w1 = c.all_gather_into_async(o1, at::full({4}, float(r)));
    auto w2 = c.all_gather_into_async(o2, at::full({4}, float(10 * r)));
    w2->wait();
    w1->wait();
    w1->wait();  // idempotent
    for (int i = 0; i < w; ++i) {
      REQUIRE(at::equal(o1.narrow(0, 4 * i, 4), at::full({4}, float(i))));
      REQUIRE(at::equal(o2.narrow(0, 4 * i, 4), at::full({4}, float(10 * i))));
    }
  }
  // small objects and scalars
  {
    auto all = c.all_gather_bytes("rank-" + std::to_string(r) + std::string(static_cast<size_t>(r), 'x'));
    REQUIRE(static_cast<int>(all.size()) == w);
    for (int i = 0; i < w; ++i) REQUIRE(all[static_cast<size_t>(i)] == "rank-" + std::to_string(i) + std::string(static_cast<size_t>(i), 'x'));
    REQUIRE(c.all_reduce_scalar(r + 0.5) == w * w / 2.0);
    REQUIRE(c.all_reduce_scalar(r, ReduceOp::Max) == w - 1);
  }
  // argument errors are local CommErrors that name the operation and rank (no collective issued)
  {
    bool threw = false;
    try {
      c.all_gather_into(at::empty({w * n + 1}), at::empty({n}));
    } catch (const CommError& e) {
      threw = std::string(e.what()).find("all_gather_into on rank " + std::to_string(r)) != std::string::npos;
    }
    REQUIRE(threw);
    threw = false;
    try {
      c.all_reduce(at::empty({4, 4}).t());
    } catch (const CommError& e) {
      threw = std::string(e.what()).find("contiguous") != std::string::npos;
    }
    REQUIRE(threw);
  }
  c.barrier();
  REQUIRE(c.stats().calls > 10);
  if (w > 1) REQUIRE(c.stats().all_gather_bytes > 0 && c.stats().reduce_scatter_bytes > 0);
}

void check_groups(Communicator& world) {
  const int w = world.size(), r = world.rank();
  // a subset group {0, w-1}: members get a communicator, others nullptr
  auto ends = world.new_group({0, w - 1});
  REQUIRE((ends != nullptr) == (r == 0 || r == w - 1));
  if (ends) {
    REQUIRE(ends->size() == 2 && ends->rank() == (r == 0 ? 0 : 1));
    REQUIRE(ends->all_reduce_scalar(r) == w - 1);
    check_collectives(*ends);
  }
  if (w % 2 != 0) return;
  // hybrid: shard groups of 2 consecutive ranks, replicate groups across them
  HybridGroups h = make_hybrid_groups(world, 2);
  REQUIRE(h.shard && h.replicate);
  REQUIRE(h.shard->size() == 2 && h.shard->rank() == r % 2);
  REQUIRE(h.replicate->size() == w / 2 && h.replicate->rank() == r / 2);
  REQUIRE(h.shard->all_reduce_scalar(r) == (r / 2) * 4 + 1);  // (2g) + (2g+1)
  double rep_sum = 0;
  for (int g = 0; g < w / 2; ++g) rep_sum += 2 * g + r % 2;
  REQUIRE(h.replicate->all_reduce_scalar(r) == rep_sum);
  // FSDP-style use: gather the shard group's flat parameter, all-reduce gradients across replicas
  at::Tensor full = at::empty({2 * 3});
  h.shard->all_gather_into(full, at::full({3}, float(r % 2)));
  REQUIRE(at::equal(full, at::cat({at::zeros({3}), at::ones({3})})));
  check_collectives(*h.shard);
  check_collectives(*h.replicate);
  bool threw = false;
  try {
    make_hybrid_groups(world, 3);
  } catch (const ConfigError&) {
    threw = true;
  }
  REQUIRE(threw || w % 3 == 0);
}

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: comm_worker <scenario> <timeout_s>\n");
    return 2;
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // lines reach the launcher when printed
  std::string scenario = argv[1];
  ParallelConfig cfg;
  cfg.timeout_s = std::atof(argv[2]);
  auto t0 = Clock::now();
  try {
    DistEnv env = detect_dist_env();
    g_rank = env.rank;
    const bool last = env.rank == env.world_size - 1;
    auto sleep_s = [](double s) { std::this_thread::sleep_for(std::chrono::milliseconds(int(s * 1000))); };
    if (scenario == "no_join" && last) {  // this rank never shows up
      sleep_s(cfg.timeout_s * 4);
      return 0;
    }
    if (scenario == "no_master" && env.rank == 0) {
      sleep_s(cfg.timeout_s * 4);
      return 0;
    }
    t0 = Clock::now();
    auto comm = make_communicator(env, cfg);
    if (scenario == "collectives") {
      check_collectives(*comm);
      check_groups(*comm);
      std::printf("OK collectives rank %d of %d (%s)\n", comm->rank(), comm->size(), comm->backend().c_str());
      return 0;
    }
    if (scenario == "restart") {  // the last rank fails once after joining; the group is restarted
      comm->barrier();
      if (last && env.restart_count == 0) {
        std::printf("failing on purpose in attempt 0\n");
        return 1;
      }
      REQUIRE(comm->all_reduce_scalar(1.0) == env.world_size);
      std::printf("OK restart rank %d attempt %d\n", env.rank, env.restart_count);
      return 0;
    }
    if (scenario == "peer_dies" || scenario == "peer_stuck") {
      comm->barrier();
      if (last) {
        if (scenario == "peer_dies") {  // vanish mid-run without telling anyone
          sleep_s(0.3);                  // (after rank 0 has left the barrier for the all_reduce)
          ::_exit(0);
        }
        sleep_s(cfg.timeout_s * 4);               // alive but never calls the collective
        return 0;
      }
      t0 = Clock::now();
      at::Tensor t = at::ones({1 << 16});
      for (int i = 0; i < 10; ++i) comm->all_reduce(t);
      std::printf("no error on rank %d\n", env.rank);
      return 1;
    }
    std::fprintf(stderr, "unknown scenario %s\n", scenario.c_str());
    return 2;
  } catch (const CommError& e) {
    std::printf("CommError after %.2f s: %s\n", seconds_since(t0), e.what());
    return 3;
  } catch (const std::exception& e) {
    std::printf("FAILED on rank %d: %s\n", g_rank, e.what());
    return 1;
  }
}
