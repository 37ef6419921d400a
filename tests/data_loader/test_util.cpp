#include "test_util.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "data_loader/manifest.h"
#include "data_loader/native_shard.h"
#include "data_loader/shard_reader.h"
#include "data_loader/tar_format.h"
#include "data_loader/token_codec.h"

namespace openlm::data::test {

std::string temp_dir(const std::string& tag) {
  static std::atomic<int> counter{0};
  std::string base = std::string(OPENLM_BINARY_DIR) + "/test_tmp";
  ::mkdir(base.c_str(), 0755);
  std::string d = base + "/" + tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++);
  run("rm -rf '" + d + "'");
  if (::mkdir(d.c_str(), 0755) != 0) throw std::runtime_error("cannot create " + d);
  return d;
}

std::string write_synthetic(const std::string& dir, bool native, int shards, int per_shard, int len, int64_t start) {
  std::vector<ManifestEntry> entries;
  int64_t g = start;
  for (int s = 0; s < shards; ++s) {
    std::string name = "part_" + std::to_string(s);
    std::vector<int64_t> ids(static_cast<size_t>(len));
    if (native) {
      NativeShardWriter w(dir + "/" + name + kNativeExt, 2, len, "test");
      for (int i = 0; i < per_shard; ++i, ++g) {
        for (int t = 0; t < len; ++t) ids[static_cast<size_t>(t)] = token_of(g, t);
        w.append(ids.data(), ids.size());
      }
      w.finish();
    } else {
      TarWriter w(dir + "/" + name + ".tar");
      for (int i = 0; i < per_shard; ++i, ++g) {
        for (int t = 0; t < len; ++t) ids[static_cast<size_t>(t)] = token_of(g, t);
        std::string js = format_json_int_list(ids.data(), ids.size());
        auto gz = gzip_compress(js.data(), js.size());
        w.add(name + "_" + std::to_string(i) + ".json.gz", gz.data(), gz.size());
      }
      w.finish();
    }
    ManifestEntry e;
    e.shard = name;
    e.num_sequences = per_shard;
    entries.push_back(e);
  }
  write_manifest(dir + "/manifest.jsonl", entries);
  return dir + "/manifest.jsonl";
}

std::string python_shards(const std::string& dir, const std::string& args) {
  std::string out;
  std::string cmd = "/usr/bin/python3 " + std::string(OPENLM_SOURCE_DIR) + "/tests/data_loader/make_openlm_shards.py '" +
                    dir + "' " + args;
  if (run(cmd, &out) != 0) throw std::runtime_error("python shard writer failed: " + out);
  return dir + "/manifest.jsonl";
}

int run(const std::string& cmd, std::string* out) {
  std::FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return -1;
  char buf[4096];
  std::string acc;
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) acc.append(buf, n);
  int st = ::pclose(p);
  if (out) *out = acc;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::vector<std::vector<int64_t>> read_all_sequences(const std::string& manifest) {
  Manifest m = read_manifest(manifest);
  std::vector<std::vector<int64_t>> out;
  DecodeScratch scratch;
  for (const auto& e : m.entries) {
    auto r = open_shard(e);
    if (r->size() != e.num_sequences)
      throw std::runtime_error(manifest + ": shard " + e.path + " holds " + std::to_string(r->size()) +
                               " sequences, its manifest line says " + std::to_string(e.num_sequences));
    for (int64_t i = 0; i < r->size(); ++i) {
      std::vector<int64_t> ids;
      r->read(i, ids, scratch);
      out.push_back(std::move(ids));
    }
  }
  return out;
}

}  // namespace openlm::data::test
