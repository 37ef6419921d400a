// Save/load throughput of our safetensors writer/reader beside Python's torch.save/torch.load
// (Debian's python3-torch, /usr/bin/python3) on the same tensor shapes, in one invocation, plus the
// disk's own fsync'd write rate (dd conv=fsync) for scale, and the same state saved and loaded
// through the native checkpoint path (per-rank shard files, checksums, commit; slice reader).
// Prints one JSON line.
//
//   bench_safetensors_io [--mb 1024] [--dir /tmp] [--reps 2]
//
// Every save is fsync'd (ours by the atomic writer; Python's explicitly). Before each load the
// file's pages are dropped from the page cache (fsync + posix_fadvise DONTNEED, no root needed),
// so loads read from the disk. The state mimics a training state: per layer, fp32 weights with two
// AdamW moments each, plus embeddings.
#include <ATen/ATen.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>

#include "openlm_cpp/checkpoint/native_checkpoint.h"
#include "openlm_cpp/checkpoint/state_shards.h"
#include "openlm_cpp/checkpoint/tensor_file.h"

namespace {

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void drop_cache(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return;
  ::fdatasync(fd);
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
}

std::string run(const std::string& cmd) {
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return "";
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  ::pclose(p);
  return out;
}

const char* kPy = R"PY(
import json, os, sys, time, torch
shapes = json.load(open(sys.argv[1]))
path = sys.argv[2]
reps = int(sys.argv[3])
torch.manual_seed(0)
state = {k: torch.randn(v) for k, v in shapes.items()}
nbytes = sum(t.numel() * t.element_size() for t in state.values())
def drop(p):
    fd = os.open(p, os.O_RDONLY)
    os.fdatasync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)
best_s = best_l = 1e30
for _ in range(reps):
    t0 = time.perf_counter()
    with open(path, 'wb') as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    best_s = min(best_s, time.perf_counter() - t0)
    drop(path)
    t0 = time.perf_counter()
    back = torch.load(path, map_location='cpu')
    best_l = min(best_l, time.perf_counter() - t0)
    del back
os.remove(path)
print(json.dumps({'bytes': nbytes, 'save_s': best_s, 'load_s': best_l}))
)PY";

}  // namespace

int main(int argc, char** argv) {
  double mb = 1024;
  std::string dir = "/tmp";
  int reps = 2;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--mb") mb = std::stod(argv[i + 1]);
    else if (a == "--dir") dir = argv[i + 1];
    else if (a == "--reps") reps = std::stoi(argv[i + 1]);
    else {
      std::cerr << "usage: bench_safetensors_io [--mb 1024] [--dir /tmp] [--reps 2]\n";
      return 2;
    }
  }
  const std::string base = dir + "/bench_st_" + std::to_string(::getpid());
  // A d=1024, ffn 2816 layer stack: weights + exp_avg + exp_avg_sq, fp32.
  const int64_t d = 1024, ff = 2816, vocab = 32000;
  openlm::checkpoint::NamedTensors state;
  std::string shapes_json = "{";
  uint64_t total = 0;
  auto add = [&](const std::string& name, std::vector<int64_t> shape) {
    for (const char* sfx : {"", ".exp_avg", ".exp_avg_sq"}) {
      at::Tensor t = at::randn(shape);
      total += t.numel() * 4;
      state.emplace_back(name + sfx, t);
      std::string s = "[";
      for (size_t k = 0; k < shape.size(); ++k) s += (k ? "," : "") + std::to_string(shape[k]);
      shapes_json += (shapes_json.size() > 1 ? ",\"" : "\"") + name + sfx + "\":" + s + "]";
    }
  };
  add("tok_embeddings.weight", {vocab, d});
  for (int l = 0; total < mb * 1e6; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    add(p + "attention.in_proj.weight", {3 * d, d});
    add(p + "attention.out_proj.weight", {d, d});
    add(p + "feed_forward.w12.weight", {2 * ff, d});
    add(p + "feed_forward.w3.weight", {d, ff});
    add(p + "attention_norm.weight", {d});
    add(p + "ffn_norm.weight", {d});
  }
  shapes_json += "}";
  const std::string st_path = base + ".safetensors";

  double best_save = 1e30, best_load = 1e30;
  for (int r = 0; r < reps; ++r) {
    double t0 = now();
    openlm::checkpoint::save_safetensors(st_path, state);
    best_save = std::min(best_save, now() - t0);
    drop_cache(st_path);
    t0 = now();
    auto back = openlm::checkpoint::load_safetensors(st_path);
    best_load = std::min(best_load, now() - t0);
  }
  std::filesystem::remove(st_path);

  // The same state through the native checkpoint path the trainer uses: weights and optimizer
  // moments in two per-rank shard files, hashed while written, metadata.json + rename + `latest`;
  // loaded back through the slice reader (what resume does), page cache dropped first.
  namespace ck = openlm::checkpoint;
  std::vector<ck::StateSlice> weights, moments;
  for (auto& [n, t] : state) {
    std::vector<int64_t> shape(t.sizes().begin(), t.sizes().end());
    bool moment = n.find(".exp_avg") != std::string::npos;
    (moment ? moments : weights).push_back({n, shape, 0, t.numel(), t.view({-1})});
  }
  const std::string run_dir = base + "_run";
  double best_ck_save = 1e30, best_ck_load = 1e30;
  for (int r = 0; r < reps; ++r) {
    double t0 = now();
    ck::begin_checkpoint(run_dir, r + 1);
    nlohmann::json meta = {{"shards", {{"model", {ck::slice_layout("model-shard00000-of-00001.safetensors", 0, weights)}},
                                       {"optim", {ck::slice_layout("optim-shard00000-of-00001.safetensors", 0, moments)}}}}};
    meta["files"]["model-shard00000-of-00001.safetensors"] =
        ck::write_checkpoint_file(run_dir, r + 1, "model-shard00000-of-00001.safetensors", ck::slice_tensors(weights));
    meta["files"]["optim-shard00000-of-00001.safetensors"] =
        ck::write_checkpoint_file(run_dir, r + 1, "optim-shard00000-of-00001.safetensors", ck::slice_tensors(moments));
    std::string ckpt = ck::commit_checkpoint(run_dir, r + 1, meta, 1, 0);
    best_ck_save = std::min(best_ck_save, now() - t0);
    for (const char* f : {"/model-shard00000-of-00001.safetensors", "/optim-shard00000-of-00001.safetensors"})
      drop_cache(ckpt + f);
    t0 = now();
    auto m = ck::verify_checkpoint(ckpt);  // checksums: one read of every file
    for (const char* kind : {"model", "optim"}) {
      auto back = ck::StateReader(ckpt, m, kind).all();
    }
    best_ck_load = std::min(best_ck_load, now() - t0);
  }
  std::filesystem::remove_all(run_dir);

  std::ofstream(base + ".shapes.json") << shapes_json;
  std::ofstream(base + ".py") << kPy;
  std::string py = run("/usr/bin/python3 " + base + ".py " + base + ".shapes.json " + base + ".pt " +
                       std::to_string(reps));
  double py_save = 0, py_load = 0;
  if (auto p = py.find("\"save_s\": "); p != std::string::npos) py_save = std::stod(py.substr(p + 10));
  if (auto p = py.find("\"load_s\": "); p != std::string::npos) py_load = std::stod(py.substr(p + 10));
  std::filesystem::remove(base + ".shapes.json");
  std::filesystem::remove(base + ".py");

  // The disk's fsync'd sequential write rate, same size.
  const uint64_t dd_mb = static_cast<uint64_t>(total / (1 << 20));
  std::string dd = run("dd if=/dev/zero of=" + base + ".dd bs=1M count=" + std::to_string(dd_mb) +
                       " conv=fsync 2>&1");
  std::filesystem::remove(base + ".dd");
  double dd_s = 0;
  if (auto p = dd.find(" s, "); p != std::string::npos) {
    auto q = dd.rfind(", ", p - 1);
    dd_s = std::stod(dd.substr(q + 2, p - q - 2));
  }
  const double gb = total / 1e9;
  const double dd_gbps = dd_s > 0 ? dd_mb * 1048576.0 / 1e9 / dd_s : 0;
  std::printf(
      "{\"bench\":\"safetensors_io\",\"bytes\":%llu,\"tensors\":%zu,\"save_gbps\":%.3f,\"load_gbps\":%.3f,"
      "\"torch_save_gbps\":%.3f,\"torch_load_gbps\":%.3f,\"save_ratio\":%.2f,\"load_ratio\":%.2f,"
      "\"dd_fsync_gbps\":%.3f,\"save_vs_disk\":%.2f,\"checkpoint_save_gbps\":%.3f,"
      "\"checkpoint_load_verified_gbps\":%.3f,\"checkpoint_save_vs_disk\":%.2f,\"load_cache\":\"dropped\",\"reps\":%d}\n",
      static_cast<unsigned long long>(total), state.size(), gb / best_save, gb / best_load,
      py_save > 0 ? gb / py_save : 0.0, py_load > 0 ? gb / py_load : 0.0,
      py_save > 0 ? py_save / best_save : 0.0, py_load > 0 ? py_load / best_load : 0.0, dd_gbps,
      dd_gbps > 0 ? (gb / best_save) / dd_gbps : 0.0, gb / best_ck_save, gb / best_ck_load,
      dd_gbps > 0 ? (gb / best_ck_save) / dd_gbps : 0.0, reps);
  return py_save > 0 ? 0 : 1;
}
