// Checkpoint stall (issue 10.6): the same short run three times, without checkpoints, with sync
// checkpoints and with checkpoint.async, on synthetic tokens; prints one JSON line per mode.
//   stall_s     per checkpoint: the gap between the logs of the checkpointed step and the next
//               one, minus a normal step: the median step of the run without checkpoints (a
//               background writer also slows the steps after the next one, which would make the
//               median of the same run a poor measure of a normal step); stalls_s lists each
//   overhead_s  per checkpoint: (run time with checkpoints - run time without) / checkpoints, which
//               also counts a background writer slowing the steps after it
//   bench_checkpoint [--dim 768] [--layers 8] [--vocab 4096] [--seq-len 128] [--micro-batch 1]
//                    [--steps 25] [--every 8] [--threads 2] [--dir DIR]
// The checkpoints are spaced so that a background write (about 2 s here at the lowest priority
// beside two busy compute threads) ends before the next checkpoint, which would otherwise wait for it.
#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "data_loader/manifest.h"
#include "data_loader/native_shard.h"
#include "openlm_cpp/core/recipe.h"
#include "openlm_cpp/model/model_stats.h"
#include "openlm_cpp/train/trainer.h"

using namespace openlm;
namespace stdfs = std::filesystem;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

std::vector<double> elapsed_of(const std::string& run) {
  std::vector<double> out;
  std::ifstream in(run + "/metrics.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    if (!j.contains("kind")) out.push_back(j.at("elapsed_s").get<double>());
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) try {
  int64_t dim = 768, layers = 8, vocab = 4096, seq = 128, micro = 1, steps = 25, every = 8, threads = 2;
  std::string dir = (stdfs::temp_directory_path() / "openlm_bench_checkpoint").string();
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--dim") dim = std::stoll(v);
    else if (k == "--layers") layers = std::stoll(v);
    else if (k == "--vocab") vocab = std::stoll(v);
    else if (k == "--seq-len") seq = std::stoll(v);
    else if (k == "--micro-batch") micro = std::stoll(v);
    else if (k == "--steps") steps = std::stoll(v);
    else if (k == "--every") every = std::stoll(v);
    else if (k == "--threads") threads = std::stoll(v);
    else if (k == "--dir") dir = v;
    else throw std::runtime_error("unknown option " + k);
  }
  at::set_num_threads(static_cast<int>(threads));
  stdfs::remove_all(dir);
  stdfs::create_directories(dir + "/data");
  // Synthetic tokens: one native shard of (steps + 1) * micro sequences.
  {
    data::NativeShardWriter w(dir + "/data/shard_0" + data::kNativeExt, data::native_dtype_bytes(vocab), seq + 1, "");
    for (int64_t s = 0; s < (steps + 1) * micro; ++s) {
      std::vector<int64_t> q;
      for (int64_t t = 0; t <= seq; ++t) q.push_back((s * 7919 + t * 31) % vocab);
      w.append(q.data(), q.size());
    }
    data::write_manifest(dir + "/data/manifest.jsonl", {{"shard_0", w.count(), "", data::ShardFormat::Native}});
    w.finish();
  }
  const std::string recipe = dir + "/recipe.yaml";
  std::ofstream(recipe) << "model: {name: bench, dim: " << dim << ", n_layers: " << layers << ", n_heads: " << dim / 64
                        << ", seq_len: " << seq << ", vocab_size: " << vocab << "}\n"
                        << "data: {manifests: [" << dir << "/data/manifest.jsonl]}\n"
                        << "batch: {global_batch_size: " << micro << ", micro_batch_size: " << micro << "}\n"
                        << "max_steps: " << steps << "\nschedule: {warmup: 1}\nlogging: {tensorboard: false}\n";
  const double params = static_cast<double>(count_params(load_train_recipe(recipe).model).total);
  double base_total = 0, base_step = 0;
  for (const std::string mode : {"none", "sync", "async"}) {
    std::vector<std::string> sets = {"run_dir=" + dir + "/run_" + mode};
    if (mode != "none") sets.push_back("checkpoint.every_steps=" + std::to_string(every));
    sets.push_back(std::string("checkpoint.async=") + (mode == "async" ? "true" : "false"));
    TrainConfig cfg = load_train_recipe(recipe, sets);
    TrainOptions opt;
    opt.quiet = true;
    const auto t0 = std::chrono::steady_clock::now();
    run_training(cfg, opt);
    const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const std::vector<double> el = elapsed_of(dir + "/run_" + mode);
    std::vector<double> plain, around;
    for (std::size_t i = 1; i < el.size(); ++i) {  // gap between the logs of step i and step i + 1
      const bool after_ckpt = mode != "none" && static_cast<int64_t>(i) % every == 0;
      (after_ckpt ? around : plain).push_back(el[i] - el[i - 1]);
    }
    const double step = median(plain);
    if (mode == "none") {
      base_total = el.back();
      base_step = step;
    }
    // Checkpoints inside the measured span: after steps every, 2*every, ... < steps (the final
    // one, after the last log, is outside it and not counted).
    const int64_t n = mode == "none" ? 0 : (steps - 1) / every;
    nlohmann::json j = {{"bench", "checkpoint_stall"}, {"mode", mode}, {"params", params},
                        {"state_bytes", params * 12.0}, {"threads", threads}, {"steps", steps},
                        {"median_step_s", step}, {"wall_s", total}};
    if (n > 0) {
      double stall = 0;
      std::vector<double> each;
      for (double g : around) {
        stall += g - base_step;
        each.push_back(g - base_step);
      }
      j["checkpoints"] = n;
      j["stalls_s"] = each;
      j["stall_s"] = stall / static_cast<double>(around.size());
      j["overhead_s"] = (el.back() - base_total) / static_cast<double>(n);
    }
    std::cout << j.dump() << std::endl;
  }
  stdfs::remove_all(dir);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_checkpoint: %s\n", e.what());
  return 1;
}
