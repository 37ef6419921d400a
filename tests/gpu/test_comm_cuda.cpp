// The Communicator's NCCL path on a GPU machine (LibTorch 2.x + CUDA), at world size 1: native bf16,
// _allgather_base/_reduce_scatter_base. Registered with ctest (label gpu); without a CUDA device it
// skips with the reason printed. bench/gpu/run.sh runs it on the GPU machine.
#include <ATen/ATen.h>
#include <torch/version.h>

#include <cstdio>

#include <gtest/gtest.h>

#include "launch/launcher.h"
#include "openlm_cpp/core/config.h"
#include "openlm_cpp/core/dist_env.h"
#include "openlm_cpp/parallel/comm.h"

using namespace openlm;
using namespace openlm::parallel;

TEST(Communicator, CudaTensorsAtWorldSize1) {
  // The NCCL path (LibTorch 2.x + CUDA): native bf16, _allgather_base/_reduce_scatter_base.
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device (LibTorch " TORCH_VERSION "): run bench/gpu/run.sh on a GPU machine";
  DistEnv env;
  env.master_port = launch::pick_free_port();
  ParallelConfig cfg;
  cfg.timeout_s = 60;
  auto c = make_process_group_communicator(env, cfg);
  auto cuda = at::TensorOptions().device(at::kCUDA);
  at::Tensor b = at::arange(8, cuda.dtype(at::kFloat)).to(at::kBFloat16), o = at::empty({8}, cuda.dtype(at::kBFloat16));
  c->reduce_scatter(o, b, ReduceOp::Avg);
  EXPECT_TRUE(at::equal(o.cpu(), b.cpu()));
  at::Tensor g = at::empty({8}, cuda.dtype(at::kBFloat16));
  c->all_gather_into(g, b);
  EXPECT_TRUE(at::equal(g.cpu(), b.cpu()));
  at::Tensor t = at::full({4}, 3.0, cuda.dtype(at::kFloat));
  c->all_reduce(t, ReduceOp::Max);
  c->broadcast(t, 0);
  EXPECT_TRUE(at::equal(t.cpu(), at::full({4}, 3.0)));
  EXPECT_EQ(c->backend(), "gloo+nccl") << "LibTorch/NCCL build without the NCCL path (see cmake/CommBackends.cmake)";
}
