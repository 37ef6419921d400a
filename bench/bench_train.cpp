// Training throughput on CPU for a stated small config (our trainer's step: forward, loss with
// z-loss, backward, clipping, AdamW), beside an independent PyTorch script of the same model on
// the same LibTorch (Debian's python3-torch 1.13) run in the same invocation. Prints one JSON line.
//   bench_train [--steps N] [--no-python]
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>

#include "openlm_cpp/model/model_stats.h"
#include "openlm_cpp/model/transformer.h"
#include "openlm_cpp/optim/adamw.h"
#include "openlm_cpp/train/loss.h"

using namespace openlm;

int main(int argc, char** argv) {
  int steps = 10, warm = 2;
  bool python = true;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--steps" && i + 1 < argc) steps = std::stoi(argv[++i]);
    if (a == "--no-python") python = false;
  }
  ModelConfig c;
  c.name = "bench_small";
  c.dim = 256;
  c.n_layers = 4;
  c.n_heads = 4;
  c.seq_len = 256;
  c.vocab_size = 4096;
  const int64_t B = 8;
  Transformer m(c, 0);
  m.train(true);
  OptimConfig oc;
  std::vector<AdamW::Param> ps;
  for (auto& [n, t] : m.named_parameters()) ps.push_back({n, t, true, at::Tensor()});
  AdamW opt(ps, oc);
  at::Tensor tokens = at::randint(0, c.vocab_size, {B, c.seq_len + 1}, at::kLong);
  auto step = [&] {
    auto lp = lm_loss(m.forward(tokens.slice(1, 0, -1)), tokens.slice(1, 1), 1e-4);
    lp.total.backward();
    std::vector<at::Tensor> g;
    for (auto& p : opt.params()) g.push_back(p.value.grad());
    clip_grads(g, 1.0, grad_norm(g));
    opt.step(1e-3);
    for (auto& p : opt.params()) p.value.mutable_grad() = at::Tensor();
  };
  for (int i = 0; i < warm; ++i) step();
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < steps; ++i) step();
  double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  double ours = static_cast<double>(B * c.seq_len * steps) / dt;

  nlohmann::json out = {{"benchmark", "train_cpu"},
                        {"config", {{"dim", c.dim}, {"n_layers", c.n_layers}, {"n_heads", c.n_heads},
                                    {"seq_len", c.seq_len}, {"vocab_size", c.vocab_size}, {"micro_batch", B},
                                    {"precision", "fp32"}, {"params", count_params(c).total}}},
                        {"steps", steps},
                        {"threads", at::get_num_threads()},
                        {"openlm_cpp_tokens_per_s", ours},
                        {"flops_per_token", flops_per_token(c)}};
  if (python) {
    std::string cmd = fmt::format("/usr/bin/python3 {}/bench/py_train_reference.py dim={} layers={} heads={} seq={} "
                                  "vocab={} batch={} steps={} warmup={}",
                                  OPENLM_SOURCE_DIR, c.dim, c.n_layers, c.n_heads, c.seq_len, c.vocab_size, B, steps,
                                  warm);
    FILE* p = popen(cmd.c_str(), "r");
    std::string text;
    char buf[4096];
    while (p && fgets(buf, sizeof buf, p)) text += buf;
    int rc = p ? pclose(p) : -1;
    if (rc != 0) {
      out["pytorch_error"] = "reference script failed (exit " + std::to_string(rc) + ")";
    } else {
      auto py = nlohmann::json::parse(text);
      out["pytorch_tokens_per_s"] = py["tokens_per_s"];
      out["pytorch_version"] = py["torch"];
      out["ratio_openlm_cpp_over_pytorch"] = ours / py["tokens_per_s"].get<double>();
    }
  }
  std::cout << out.dump() << std::endl;
  return 0;
}
