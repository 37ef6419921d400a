// One device's training step at a stated model and micro-batch: forward (bf16 autocast or fp32),
// loss with z-loss, backward (optionally with activation checkpointing), clipping, AdamW (fused
// where the LibTorch has it), on synthetic tokens. Prints one JSON line: tokens/s, MFU against a
// stated peak, peak memory (CUDA allocator peak on GPU, process peak RSS on CPU).
//   bench_step --model NAME_OR_RECIPE [--set key=value ...] [--micro-batch B] [--seq-len T]
//              [--steps N] [--warmup W] [--precision amp_bfloat16|fp32] [--grad-checkpointing]
//              [--device cuda|cpu] [--peak-tflops P]
// bench/gpu/run.sh drives it on a GPU machine (and with a tiny model on CPU, --cpu-smoke).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>
#include <sys/resource.h>

#ifdef OPENLM_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include <chrono>
#include <iostream>
#include <string>
#include <vector>

#include "openlm_cpp/core/recipe.h"
#include "openlm_cpp/model/model_stats.h"
#include "openlm_cpp/model/transformer.h"
#include "openlm_cpp/optim/adamw.h"
#include "bench/train_step.h"

using namespace openlm;

namespace {
int64_t peak_bytes(const at::Device& d) {
#ifdef OPENLM_WITH_CUDA
  if (d.is_cuda()) {
    auto st = c10::cuda::CUDACachingAllocator::getDeviceStats(d.index());
    return st.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)].peak;
  }
#endif
  (void)d;
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<int64_t>(ru.ru_maxrss) * 1024;
}
}  // namespace

int main(int argc, char** argv) try {
  std::string model = "open_lm_test_tiny", precision = "amp_bfloat16", device = "cuda";
  std::vector<std::string> sets;
  int64_t B = 8, T = 0, steps = 20, warm = 3;
  bool ckpt = false;
  double peak_tflops = 0;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error(a + " needs a value");
      return argv[++i];
    };
    if (a == "--model") model = next();
    else if (a == "--set") sets.push_back(next());
    else if (a == "--micro-batch") B = std::stoll(next());
    else if (a == "--seq-len") T = std::stoll(next());
    else if (a == "--steps") steps = std::stoll(next());
    else if (a == "--warmup") warm = std::stoll(next());
    else if (a == "--precision") precision = next();
    else if (a == "--grad-checkpointing") ckpt = true;
    else if (a == "--device") device = next();
    else if (a == "--peak-tflops") peak_tflops = std::stod(next());
    else throw std::runtime_error("unknown argument " + a);
  }
  if (precision != "amp_bfloat16" && precision != "fp32") throw std::runtime_error("--precision: amp_bfloat16 or fp32");
  ModelConfig c = load_model(model, sets);
  if (T > 0) c.seq_len = T;
  const at::Device dev = device == "cuda" ? at::Device(at::kCUDA, 0) : at::Device(at::kCPU);
  if (dev.is_cuda() && !at::hasCUDA()) throw std::runtime_error("--device cuda: no CUDA device");
  if (peak_tflops <= 0) peak_tflops = dev.is_cuda() ? 989.0 : 0.0;  // H100/H200 bf16 dense

  Transformer m(c, 0);
  m.to(dev, at::kFloat);  // fp32 master weights; bf16 compute under amp
  if (precision == "amp_bfloat16") m.set_compute_dtype(at::kBFloat16);
  m.set_grad_checkpointing(ckpt);
  m.train(true);
  AdamW opt = bench::make_adamw(m);
  at::Tensor tokens = at::randint(0, c.vocab_size, {B, c.seq_len + 1}, at::TensorOptions().dtype(at::kLong)).to(dev);
  at::Tensor loss;
  auto step = [&] { loss = bench::train_step(m, opt, tokens, 1e-4); };
  for (int64_t i = 0; i < warm; ++i) step();
  (void)loss.item<double>();  // device idle before the clock starts
  auto t0 = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < steps; ++i) step();
  const double last_loss = loss.item<double>();  // waits for the device
  const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double tps = static_cast<double>(B * c.seq_len * steps) / dt;
  const double fpt = flops_per_token(c);
  nlohmann::json out = {{"benchmark", "train_step"},
                        {"model", model},
                        {"params", count_params(c).total},
                        {"seq_len", c.seq_len},
                        {"micro_batch", B},
                        {"precision", precision},
                        {"grad_checkpointing", ckpt},
                        {"device", dev.str()},
                        {"threads", at::get_num_threads()},
                        {"steps", steps},
                        {"tokens_per_s", tps},
                        {"step_s", dt / static_cast<double>(steps)},
                        {"flops_per_token", fpt},
                        {"loss", last_loss},
                        {"peak_memory_bytes", peak_bytes(dev)}};
  if (peak_tflops > 0) out["mfu"] = tps * fpt / (peak_tflops * 1e12);
  std::cout << out.dump() << std::endl;
  return 0;
} catch (const std::exception& e) {
  nlohmann::json err = {{"benchmark", "train_step"}, {"error", e.what()}};
  std::cout << err.dump() << std::endl;
  return 1;
}
