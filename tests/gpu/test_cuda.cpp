// CUDA paths that only a GPU machine can run (LibTorch 2.x + CUDA): the model in bf16 on CUDA
// against fp32 on CPU, ATen's fused AdamW on CUDA against the CPU update, and an FSDP step at world
// size 1 over NCCL (side-stream gathers with prefetch) against the unsharded model. Without a CUDA
// device every test skips with the reason printed; bench/gpu/run.sh runs them on the GPU machine.
#include <ATen/ATen.h>
#include <torch/version.h>

#include <gtest/gtest.h>

#include "launch/launcher.h"
#include "openlm_cpp/core/config.h"
#include "openlm_cpp/core/dist_env.h"
#include "openlm_cpp/model/transformer.h"
#include "openlm_cpp/optim/adamw.h"
#include "openlm_cpp/parallel/comm.h"
#include "openlm_cpp/parallel/fsdp.h"

using namespace openlm;

namespace {
#define REQUIRE_CUDA()                                                                                  \
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device (LibTorch " TORCH_VERSION "): run bench/gpu/run.sh " \
                                      "on a GPU machine"

ModelConfig small() {
  ModelConfig c;
  c.name = "gpu_small";
  c.dim = 128;
  c.n_layers = 3;
  c.n_heads = 4;
  c.seq_len = 64;
  c.vocab_size = 512;
  c.qk_norm = true;
  c.norm_type = "gain_only_lp_layer_norm";
  return c;
}

double rel_err(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>() /
         b.to(at::kDouble).abs().max().item<double>();
}
}  // namespace

TEST(Cuda, Bf16LogitsMatchCpuFp32) {
  REQUIRE_CUDA();
  at::manual_seed(0);
  at::Tensor tokens = at::randint(0, 512, {2, 64}, at::kLong);
  Transformer cpu(small(), 7), gpu(small(), 7);
  cpu.train(false);
  gpu.train(false);
  at::Tensor ref = cpu.forward(tokens);
  gpu.to(at::Device(at::kCUDA, 0), at::kFloat);
  gpu.set_compute_dtype(at::kBFloat16);  // flash SDPA + bf16 matmuls
  at::Tensor got = gpu.forward(tokens.cuda()).cpu();
  ASSERT_EQ(got.sizes(), ref.sizes());
  EXPECT_LT(rel_err(got, ref), 3e-2) << "bf16 autocast on CUDA drifted from fp32 on CPU";
  gpu.set_compute_dtype(at::kFloat);
  EXPECT_LT(rel_err(gpu.forward(tokens.cuda()).cpu(), ref), 1e-4) << "fp32 on CUDA vs fp32 on CPU";
}

TEST(Cuda, FusedAdamWMatchesCpu) {
  REQUIRE_CUDA();
  at::manual_seed(1);
  OptimConfig oc;
  oc.lr = 1e-2;
  at::Tensor p0 = at::randn({1000}), mask = (at::rand({1000}) > 0.5).to(at::kFloat);
  std::vector<at::Tensor> gs;
  for (int i = 0; i < 5; ++i) gs.push_back(at::randn({1000}));
  auto run = [&](const at::Device& d) {
    at::Tensor p = p0.to(d).clone(), q = p0.to(d).clone();
    AdamW opt({{"p", p, true, {}}, {"q", q, true, mask.to(d)}}, oc);
    for (auto& g : gs) {
      std::vector<at::Tensor> grads{g.to(d), g.to(d) * 0.5};
      opt.step(oc.lr, &grads);
    }
    return std::make_pair(p.cpu(), q.cpu());
  };
  auto [pc, qc] = run(at::kCPU);
  auto [pg, qg] = run(at::Device(at::kCUDA, 0));
  EXPECT_LT(rel_err(pg, pc), 1e-6);
  EXPECT_LT(rel_err(qg, qc), 1e-6);
}

TEST(Cuda, FullShardStepOverNcclMatchesUnsharded) {
  REQUIRE_CUDA();
  DistEnv env;
  env.master_port = launch::pick_free_port();
  ParallelConfig pc;
  pc.timeout_s = 60;
  pc.strategy = "full_shard";
  auto comm = parallel::make_process_group_communicator(env, pc);
  ASSERT_EQ(comm->backend(), "gloo+nccl");
  const at::Device dev(at::kCUDA, 0);
  at::Tensor tokens = at::randint(0, 512, {2, 65}, at::kLong).to(dev);
  at::Tensor in = tokens.narrow(1, 0, 64), tgt = tokens.narrow(1, 1, 64);
  auto loss_of = [&](Transformer& m) {
    at::Tensor logits = m.forward(in);
    return at::cross_entropy_loss(logits.reshape({-1, 512}), tgt.reshape({-1}));
  };
  Transformer ref(small(), 3), sharded(small(), 3);
  ref.to(dev, at::kFloat);
  sharded.to(dev, at::kFloat);
  at::Tensor lr = loss_of(ref);
  lr.backward();
  parallel::ShardedModel sm(sharded, *comm, pc, at::kFloat);
  for (int rep = 0; rep < 2; ++rep) {  // twice: the second forward re-gathers through prefetch
    sm.begin_micro_batch(rep == 1);
    at::Tensor ls = loss_of(sharded);
    EXPECT_NEAR(ls.item<double>(), lr.item<double>(), 1e-5);
    ls.backward();
  }
  sm.finish_backward();
  // Gradient shards (mean over the two identical micro-batches x 1 rank, summed) vs 2x the reference.
  auto names = sm.shard_names();
  auto full = sm.full_from_shards(sm.grad_shards(), "");
  std::map<std::string, at::Tensor> ref_grads;
  for (auto& [n, p] : ref.named_parameters()) ref_grads[n] = p.grad().cpu();
  ASSERT_FALSE(full.empty());
  for (auto& [n, g] : full) {
    ASSERT_TRUE(ref_grads.count(n)) << n;
    EXPECT_LT(rel_err(g, ref_grads[n] * 2), 1e-4) << n;
  }
}
