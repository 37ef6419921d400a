// Data loader throughput: tokens/s decoding (a) native shards from page cache and (b) OpenLM
// .json.gz tar shards, with 1 and 2 threads, beside an independent Python reader (tarfile + gzip +
// json, bench/py_tar_reader.py) of the same tar shards, and the end-to-end BatchSource (tensors,
// background workers). Prints one JSON line.
//
//   bench_dataloader [--dir DIR] [--shards 8] [--per-shard 256] [--seq-len 2049] [--passes 20] [--keep 1]
#include <ATen/ATen.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "data_loader/batch_source.h"
#include "data_loader/data_tools.h"
#include "data_loader/manifest.h"
#include "data_loader/native_shard.h"
#include "data_loader/shard_reader.h"
#include "data_loader/tar_format.h"
#include "data_loader/token_codec.h"

using namespace openlm::data;

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

/// DCLM-like shards: 2049-token sequences with GPT-NeoX-range ids (skewed towards small ids,
/// as natural text is), written both as tar (.json.gz) and native.
void make_data(const std::string& dir, int shards, int per_shard, int len) {
  make_dirs(dir + "/tar");
  make_dirs(dir + "/native");
  std::mt19937_64 rng(1234);
  std::vector<ManifestEntry> entries;
  std::vector<int64_t> ids(static_cast<size_t>(len));
  for (int s = 0; s < shards; ++s) {
    char name[32];
    std::snprintf(name, sizeof name, "shard_%05d", s);
    TarWriter tw(dir + "/tar/" + name + ".tar");
    NativeShardWriter nw(dir + "/native/" + name + kNativeExt, 2, len, "bench");
    for (int i = 0; i < per_shard; ++i) {
      for (auto& v : ids) {
        double u = std::uniform_real_distribution<double>(0, 1)(rng);
        v = static_cast<int64_t>(50000 * u * u * u);  // many 1-4 digit ids, some 5-digit
      }
      std::string js = format_json_int_list(ids.data(), ids.size());
      auto gz = gzip_compress(js.data(), js.size(), 6);
      tw.add(std::string(name) + "_" + std::to_string(i) + ".json.gz", gz.data(), gz.size());
      nw.append(ids.data(), ids.size());
    }
    tw.finish();
    nw.finish();
    ManifestEntry e;
    e.shard = name;
    e.num_sequences = per_shard;
    entries.push_back(e);
  }
  write_manifest(dir + "/tar/manifest.jsonl", entries);
  write_manifest(dir + "/native/manifest.jsonl", entries);
}

/// Decodes every sequence of the manifest `passes` times with `threads` threads (shards are dealt
/// round-robin). Returns tokens per second.
double read_rate(const std::string& manifest, int threads, int passes) {
  Manifest m = read_manifest(manifest);
  std::vector<std::unique_ptr<ShardReader>> shards;
  for (auto& e : m.entries) shards.push_back(open_shard(e));
  for (auto& s : shards) s->size();  // index tar shards outside the timing (cached after first use)
  std::atomic<int64_t> tokens{0};
  std::atomic<int64_t> sink{0};
  auto work = [&](int t) {
    DecodeScratch scratch;
    std::vector<int64_t> ids;
    int64_t toks = 0, acc = 0;
    for (int p = 0; p < passes; ++p)
      for (size_t s = static_cast<size_t>(t); s < shards.size(); s += static_cast<size_t>(threads)) {
        auto& r = *shards[s];
        int64_t n = r.size(), fixed = r.fixed_length();
        for (int64_t i = 0; i < n; ++i) {
          if (fixed > 0) {
            ids.resize(static_cast<size_t>(fixed));
            r.read_fixed(i, 0, fixed, ids.data());
          } else {
            r.read(i, ids, scratch);
          }
          toks += static_cast<int64_t>(ids.size());
          acc += ids[ids.size() / 2];
        }
      }
    tokens += toks;
    sink += acc;
  };
  double t0 = now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back(work, t);
  for (auto& th : pool) th.join();
  double dt = now() - t0;
  if (sink.load() == 42) std::fprintf(stderr, " ");
  return static_cast<double>(tokens.load()) / dt;
}

/// End-to-end: the BatchSource with `workers` threads, micro-batches of 8 x 2049 tokens.
double loader_rate(const std::string& manifest, int workers, int64_t seq_len, int64_t sequences) {
  LoaderOptions o;
  o.cfg.manifests = {{manifest, 1.0}};
  o.cfg.num_workers = workers;
  o.cfg.prefetch = 16;
  o.seq_len = seq_len - 1;
  o.vocab_size = 50432;
  o.global_batch_size = 64;
  o.micro_batch_size = 8;
  auto src = make_batch_source(o);
  at::Tensor t;
  src->next(t);  // start-up (thread spawn, tar indexing) outside the timing
  double t0 = now();
  int64_t rows = 0;
  while (rows < sequences && src->next(t)) rows += t.size(0);
  return static_cast<double>(rows * seq_len) / (now() - t0);
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = "/tmp/openlm_bench_dataloader_" + std::to_string(::getpid());
  int shards = 8, per_shard = 256, len = 2049, passes = 20;
  bool keep = false;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--dir") dir = v;
    else if (k == "--shards") shards = std::atoi(v.c_str());
    else if (k == "--per-shard") per_shard = std::atoi(v.c_str());
    else if (k == "--seq-len") len = std::atoi(v.c_str());
    else if (k == "--passes") passes = std::atoi(v.c_str());
    else if (k == "--keep") keep = v == "1";
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  make_data(dir, shards, per_shard, len);
  const std::string tar = dir + "/tar/manifest.jsonl", nat = dir + "/native/manifest.jsonl";
  read_rate(nat, 1, 1);  // warm the page cache
  read_rate(tar, 1, 1);
  double nat1 = read_rate(nat, 1, passes), nat2 = read_rate(nat, 2, passes);
  double tar1 = read_rate(tar, 1, 1), tar2 = read_rate(tar, 2, 1);

  std::string here = __FILE__;  // the Python reader sits beside this source file
  std::string py_reader = here.substr(0, here.find_last_of('/') + 1) + "py_tar_reader.py";
  if (const char* e = std::getenv("OPENLM_PY_TAR_READER")) py_reader = e;
  std::string py_cmd = "/usr/bin/python3 " + py_reader + " '" + tar + "'";
  std::FILE* p = ::popen(py_cmd.c_str(), "r");
  std::string py_out;
  char buf[512];
  size_t n;
  while (p && (n = std::fread(buf, 1, sizeof buf, p)) > 0) py_out.append(buf, n);
  int py_rc = p ? ::pclose(p) : -1;
  double py = 0;
  if (py_rc == 0) py = nlohmann::json::parse(py_out).value("tokens_per_s", 0.0);

  double loader_nat = loader_rate(nat, 2, len, int64_t(shards) * per_shard * 4);
  double loader_tar = loader_rate(tar, 2, len, int64_t(shards) * per_shard);

  auto num_threads = std::thread::hardware_concurrency();
  nlohmann::json j = {
      {"bench", "dataloader"},
      {"tokens", int64_t(shards) * per_shard * len},
      {"seq_len", len},
      {"cpu_threads", num_threads},
      {"native_tok_s_1t", nat1},
      {"native_tok_s_2t", nat2},
      {"tar_tok_s_1t", tar1},
      {"tar_tok_s_2t", tar2},
      {"python_tar_tok_s", py},
      {"tar_vs_python_1t", py > 0 ? tar1 / py : 0.0},
      {"tar_vs_python_2t", py > 0 ? tar2 / py : 0.0},
      {"loader_native_tok_s_2workers", loader_nat},
      {"loader_tar_tok_s_2workers", loader_tar},
      {"targets", {{"native_tok_s_1t", 1e8}, {"tar_vs_python_1t", 4}, {"tar_vs_python_2t", 8}}}};
  std::printf("%s\n", j.dump().c_str());
  if (!keep && std::system(("rm -rf '" + dir + "'").c_str()) != 0) return 1;
  return 0;
}
