// Sharding strategies on CPU over Gloo: tokens/s per rank at world size 1 and 2 for a small model,
// and bytes each rank sends per optimizer step beside the theory for the strategy and backend.
// Driver mode (no RANK in the environment) starts itself through `openlm launch` for every case
// and prints one JSON line; worker mode runs the steps and rank 0 prints its figures.
//   bench_parallel [--steps N]
#include <ATen/ATen.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

#include "openlm_cpp/core/config.h"
#include "openlm_cpp/core/dist_env.h"
#include "openlm_cpp/model/model_stats.h"
#include "openlm_cpp/model/transformer.h"
#include "openlm_cpp/optim/adamw.h"
#include "openlm_cpp/parallel/comm.h"
#include "openlm_cpp/parallel/fsdp.h"
#include "openlm_cpp/train/loss.h"

using namespace openlm;

namespace {

ModelConfig bench_model() {
  ModelConfig c;
  c.name = "bench_small";
  c.dim = 256;
  c.n_layers = 4;
  c.n_heads = 4;
  c.seq_len = 128;
  c.vocab_size = 4096;
  return c;
}

int worker(const std::string& strategy, int steps) {
  DistEnv env = detect_dist_env();
  ParallelConfig pc;
  pc.strategy = strategy;
  pc.shard_group_size = env.world_size;
  auto comm = parallel::make_communicator(env, pc);
  ModelConfig c = bench_model();
  Transformer m(c, 0);
  m.train(true);
  parallel::ShardedModel sm(m, *comm, pc, at::kFloat);
  std::vector<AdamW::Param> ps;
  auto names = sm.shard_names();
  auto masters = sm.masters();
  for (std::size_t i = 0; i < names.size(); ++i) ps.push_back({names[i], masters[i], true, at::Tensor()});
  AdamW opt(ps, OptimConfig{});
  const int64_t micro = 4, accum = 2;  // per rank
  at::manual_seed(env.rank + 1);
  at::Tensor tokens = at::randint(0, c.vocab_size, {micro, c.seq_len + 1}, at::kLong);
  auto step = [&] {
    for (int64_t a = 0; a < accum; ++a) {
      sm.begin_micro_batch(a == accum - 1);
      (lm_loss(m.forward(tokens.slice(1, 0, -1)), tokens.slice(1, 1), 1e-4).total / double(accum)).backward();
    }
    sm.finish_backward();
    auto g = sm.grad_shards();
    clip_grads(g, 1.0, sm.grad_norm());
    opt.step(1e-3, &g);
    sm.after_optimizer_step();
  };
  step();  // warm-up
  comm->reset_stats();
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < steps; ++i) step();
  double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const auto& st = comm->stats();
  double W = env.world_size;
  // Theory per rank and step (ring algorithms): P = padded parameter elements, 4-byte fp32.
  double P = static_cast<double>(count_params(c).total), f = (W - 1) / W, rs_factor = 2;  // Gloo: all-reduce
  double theory = 0;
  double root = 0;  // the root unit stays gathered from forward to backward
  for (auto& [n, t] : m.unit_parameters()[0]) root += static_cast<double>(t.numel());
  if (strategy == "full_shard")  // all-gather in forward and again in backward, per micro-batch
    theory = accum * (f * P * 4 + f * (P - root) * 4 + rs_factor * f * P * 4);
  else if (strategy == "shard_grad_op")
    theory = f * P * 4 + rs_factor * f * P * 4;
  else if (strategy == "no_shard")
    theory = 2 * f * P * 4;
  if (env.rank == 0)
    std::cout << nlohmann::json{{"strategy", strategy},
                                {"world_size", env.world_size},
                                {"tokens_per_s_per_rank", micro * accum * c.seq_len * steps / dt},
                                {"bytes_sent_per_step", static_cast<double>(st.total()) / steps},
                                {"bytes_theory_per_step", theory},
                                {"all_gather_bytes_per_step", static_cast<double>(st.all_gather_bytes) / steps},
                                {"reduce_scatter_bytes_per_step", static_cast<double>(st.reduce_scatter_bytes) / steps},
                                {"all_reduce_bytes_per_step", static_cast<double>(st.all_reduce_bytes) / steps}}
                     .dump()
              << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int steps = 5;
  std::string strategy;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--steps" && i + 1 < argc) steps = std::stoi(argv[++i]);
    if (a == "--strategy" && i + 1 < argc) strategy = argv[++i];
  }
  if (std::getenv("RANK")) return worker(strategy, steps);
  char self[4096] = {0};
  if (readlink("/proc/self/exe", self, sizeof self - 1) < 0) return 1;
  std::string openlm = std::string(self).substr(0, std::string(self).rfind('/')) + "/openlm";
  nlohmann::json results = nlohmann::json::array();
  for (std::string s : {"no_shard", "shard_grad_op", "full_shard"}) {
    for (int w : {1, 2}) {
      std::string cmd = fmt::format("OMP_NUM_THREADS=1 {} launch --standalone --nproc-per-node {} -- {} --strategy {} "
                                    "--steps {} 2>/dev/null",
                                    openlm, w, self, s, steps);
      FILE* p = popen(cmd.c_str(), "r");
      char buf[8192];
      while (p && fgets(buf, sizeof buf, p)) {
        std::string line(buf);
        auto brace = line.find('{');
        if (brace != std::string::npos) results.push_back(nlohmann::json::parse(line.substr(brace)));
      }
      if (p) pclose(p);
    }
  }
  ModelConfig c = bench_model();
  std::cout << nlohmann::json{{"benchmark", "parallel_cpu_gloo"},
                              {"model", {{"params", count_params(c).total}, {"dim", c.dim}, {"n_layers", c.n_layers},
                                         {"seq_len", c.seq_len}, {"micro_batch", 4}, {"accumulation", 2}}},
                              {"theory",
                               "per rank and step, P params x 4 bytes, R root-unit params, f=(W-1)/W: full_shard "
                               "accum*(f P4 + f (P-R)4 + 2 f P4) (all-gather in forward, again in backward except "
                               "the root; Gloo reduce-scatter = all-reduce, 2 f P4), shard_grad_op "
                               "f P4 + 2 f P4, no_shard 2 f P4; a real reduce-scatter (NCCL) halves the RS term"},
                              {"results", results}}
                   .dump()
            << std::endl;
  return 0;
}
