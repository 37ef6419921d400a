// Training throughput and peak memory on CPU for a stated config: our step (the trainer's: the
// model's forward to the final norm, the fused chunked head + cross entropy + z-loss, backward,
// clipping, AdamW) beside an independent PyTorch script of the same model (the straightforward
// formulation an OpenLM user runs: full fp32 logits) on the LibTorch of the Python it finds, each
// side in its own process so that each peak RSS is its own. Prints one JSON line.
//   bench_train [--config vocab_heavy|d256|tiny] [--threads N] [--precision fp32|bf16]
//               [--steps N] [--no-python] [--python PATH]
// Python: --python, else $OPENLM_BENCH_PYTHON, else /usr/bin/python3 (Debian's torch 1.13, the
// same LibTorch as build/); use .venv/bin/python against build-torch2/.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

#include "openlm_cpp/model/model_stats.h"
#include "openlm_cpp/model/transformer.h"
#include "openlm_cpp/optim/adamw.h"
#include "bench/train_step.h"

using namespace openlm;

namespace {
struct BenchConfig {
  ModelConfig model;
  int64_t batch = 8;
};

BenchConfig config_named(const std::string& n) {
  BenchConfig b;
  ModelConfig& c = b.model;
  c.name = "bench_" + n;
  if (n == "tiny") {  // tiny_demo's shape
    c.dim = 128, c.n_layers = 4, c.n_heads = 4, c.seq_len = 128, c.vocab_size = 4096;
  } else if (n == "d256") {
    c.dim = 256, c.n_layers = 4, c.n_heads = 4, c.seq_len = 256, c.vocab_size = 4096;
  } else if (n == "vocab_heavy") {  // open_lm_11m-like: the head dominates
    c.dim = 96, c.n_layers = 12, c.n_heads = 12, c.seq_len = 256, c.vocab_size = 50432;
  } else {
    throw std::runtime_error("--config: vocab_heavy | d256 | tiny, got '" + n + "'");
  }
  return b;
}

double peak_rss_mb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;
}
}  // namespace

int main(int argc, char** argv) try {
  std::string config = "d256", precision = "fp32", python;
  int64_t steps = 10, warm = 2, threads = 0;
  bool run_python = true;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error(a + " needs a value");
      return argv[++i];
    };
    if (a == "--config") config = next();
    else if (a == "--threads") threads = std::stoll(next());
    else if (a == "--precision") precision = next();
    else if (a == "--steps") steps = std::stoll(next());
    else if (a == "--python") python = next();
    else if (a == "--no-python") run_python = false;
    else throw std::runtime_error("unknown argument " + a);
  }
  if (precision != "fp32" && precision != "bf16") throw std::runtime_error("--precision: fp32 | bf16");
  if (python.empty()) python = std::getenv("OPENLM_BENCH_PYTHON") ? std::getenv("OPENLM_BENCH_PYTHON") : "/usr/bin/python3";
  if (threads > 0) at::set_num_threads(static_cast<int>(threads));
  const BenchConfig bc = config_named(config);
  const ModelConfig& c = bc.model;
  const int64_t B = bc.batch;

  nlohmann::json out = {{"benchmark", "train_cpu"},
                        {"config_name", config},
                        {"config", {{"dim", c.dim}, {"n_layers", c.n_layers}, {"n_heads", c.n_heads},
                                    {"seq_len", c.seq_len}, {"vocab_size", c.vocab_size}, {"micro_batch", B},
                                    {"params", count_params(c).total}}},
                        {"precision", precision},
                        {"steps", steps},
                        {"threads", at::get_num_threads()},
                        // Ours runs with the wait policy our executables choose (core/runtime/
                        // omp_wait_policy.cpp); the reference runs with the environment it is given.
                        {"omp_wait_policy", std::getenv("OMP_WAIT_POLICY") ? std::getenv("OMP_WAIT_POLICY") : "default"},
                        {"flops_per_token", flops_per_token(c)}};
  // The reference first, in its own process, before this process allocates anything big.
  if (run_python) {
    // The reference runs in the environment the user gave, as a user of OpenLM would run it: a
    // wait policy our own executable chose is not passed on (set OMP_WAIT_POLICY to give both).
    const bool ours_chose = std::getenv("OPENLM_SET_OMP_WAIT_POLICY") != nullptr;
    out["pytorch_omp_wait_policy"] = ours_chose ? "default" : out["omp_wait_policy"];
    std::string cmd = fmt::format("{}{} {}/bench/py_train_reference.py dim={} layers={} heads={} seq={} vocab={} "
                                  "batch={} steps={} warmup={} threads={} precision={}",
                                  ours_chose ? "env -u OMP_WAIT_POLICY " : "", python, OPENLM_SOURCE_DIR, c.dim, c.n_layers, c.n_heads, c.seq_len, c.vocab_size,
                                  B, steps, warm, at::get_num_threads(), precision);
    FILE* p = popen(cmd.c_str(), "r");
    std::string text;
    char buf[4096];
    while (p && fgets(buf, sizeof buf, p)) text += buf;
    int rc = p ? pclose(p) : -1;
    if (rc != 0) {
      out["pytorch_error"] = fmt::format("`{}` failed (exit {})", cmd, WIFEXITED(rc) ? WEXITSTATUS(rc) : rc);
    } else {
      auto py = nlohmann::json::parse(text);
      out["pytorch_tokens_per_s"] = py["tokens_per_s"];
      out["pytorch_peak_rss_mb"] = py.value("peak_rss_mb", 0.0);
      out["pytorch_version"] = py["torch"];
    }
  }

  Transformer m(c, 0);
  if (precision == "bf16") m.set_compute_dtype(at::kBFloat16);
  m.train(true);
  AdamW opt = bench::make_adamw(m);
  at::Tensor tokens = at::randint(0, c.vocab_size, {B, c.seq_len + 1}, at::kLong);
  at::Tensor last;
  auto step = [&] { last = bench::train_step(m, opt, tokens, 1e-3); };
  for (int64_t i = 0; i < warm; ++i) step();
  auto t0 = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < steps; ++i) step();
  double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  double ours = static_cast<double>(B * c.seq_len * steps) / dt;
  out["openlm_cpp_tokens_per_s"] = ours;
  out["openlm_cpp_peak_rss_mb"] = peak_rss_mb();
  out["openlm_cpp_loss"] = last.item<double>();
  if (out.contains("pytorch_tokens_per_s")) {
    out["ratio_tokens_per_s"] = ours / out["pytorch_tokens_per_s"].get<double>();
    if (out["pytorch_peak_rss_mb"].get<double>() > 0)
      out["ratio_peak_rss"] = out["openlm_cpp_peak_rss_mb"].get<double>() / out["pytorch_peak_rss_mb"].get<double>();
  }
  std::cout << out.dump() << std::endl;
  return 0;
} catch (const std::exception& e) {
  std::cout << nlohmann::json{{"benchmark", "train_cpu"}, {"error", e.what()}}.dump() << std::endl;
  return 1;
}
