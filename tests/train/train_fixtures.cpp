#include "train_fixtures.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <iterator>
#include <sys/wait.h>
#include <fstream>
#include <vector>

#include "data_loader/manifest.h"
#include "data_loader/native_shard.h"
#include "openlm_cpp/core/recipe.h"

namespace fs = std::filesystem;

namespace openlm::testing {

namespace {
fs::path test_root() { return fs::temp_directory_path() / ("openlm_test_" + std::to_string(::getpid())); }
/// Removes this process's temporary tree at exit (kept when OPENLM_KEEP_TEST_FILES is set).
struct Cleanup {
  ~Cleanup() {
    std::error_code ec;
    if (!std::getenv("OPENLM_KEEP_TEST_FILES")) fs::remove_all(test_root(), ec);
  }
} cleanup;
}  // namespace

std::string temp_dir(const std::string& name) {
  fs::path d = test_root() / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d.string();
}

std::string write_counting_shards(const std::string& dir, int64_t n, int64_t seq_len, int64_t vocab, int shards) {
  fs::create_directories(dir);
  std::vector<data::ManifestEntry> entries;
  uint64_t state = 12345;
  int64_t per = (n + shards - 1) / shards;
  for (int s = 0; s < shards; ++s) {
    std::string name = "shard_" + std::to_string(s);
    data::NativeShardWriter w(dir + "/" + name + data::kNativeExt, data::native_dtype_bytes(vocab), seq_len + 1,
                              /*tokenizer=*/"");  // made with no tokenizer: not checked against a run's
    for (int64_t i = s * per; i < std::min(n, (s + 1) * per); ++i) {
      state = state * 6364136223846793005ULL + 1442695040888963407ULL;
      int64_t start = static_cast<int64_t>((state >> 33) % static_cast<uint64_t>(vocab));
      std::vector<int64_t> seq(seq_len + 1);
      for (int64_t t = 0; t <= seq_len; ++t) seq[t] = (start + t) % vocab;
      w.append(seq.data(), seq.size());
    }
    entries.push_back({name, w.count(), "", data::ShardFormat::Native});
    w.finish();
  }
  data::write_manifest(dir + "/manifest.jsonl", entries);
  return dir + "/manifest.jsonl";
}

TrainConfig tiny_recipe(const std::string& manifest, const std::string& run_dir, int64_t steps) {
  std::string p = temp_dir("recipe") + "/tiny.yaml";
  std::ofstream(p) << "model:\n  name: t\n  dim: 32\n  n_layers: 2\n  n_heads: 4\n  seq_len: 16\n  vocab_size: 64\n"
                   << "data:\n  manifests: [{path: " << manifest << "}]\n"
                   << "batch: {global_batch_size: 8, micro_batch_size: 4}\n"
                   << "optim: {lr: 1.0e-2, z_loss: 1.0e-4}\nschedule: {warmup: 2}\n"
                   << "max_steps: " << steps << "\nrun_dir: " << run_dir << "\nlogging: {tensorboard: false}\n";
  return load_train_recipe(p);
}

std::vector<nlohmann::json> read_metrics(const std::string& run_dir) {
  std::vector<nlohmann::json> out;
  std::ifstream in(run_dir + "/metrics.jsonl");
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

std::string openlm_bin() {
  const char* b = std::getenv("OPENLM_TEST_BIN");
  return b && *b ? b : OPENLM_BINARY_DIR "/bin/openlm";
}

std::string q(const std::string& s) { return "'" + s + "'"; }

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return in ? std::string(std::istreambuf_iterator<char>(in), {}) : std::string();
}

bool has(const std::string& s, const std::string& what) { return s.find(what) != std::string::npos; }

Result sh(const std::string& script, int timeout_s, std::string* stdout_only) {
  static int n = 0;
  const std::string dir = temp_dir("sh_" + std::to_string(++n));
  std::ofstream(dir + "/cmd.sh") << "export OMP_NUM_THREADS=1\n" << script << "\n";
  const std::string cmd = "timeout -k 5 " + std::to_string(timeout_s) + " /bin/sh " + dir + "/cmd.sh > " + dir +
                          "/out 2> " + dir + "/err";
  Result r;
  const int st = std::system(cmd.c_str());
  r.rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  if (stdout_only) *stdout_only = slurp(dir + "/out");
  r.out = slurp(dir + "/out") + slurp(dir + "/err");
  return r;
}

std::map<std::string, std::string> snapshot(const std::string& root) {
  std::map<std::string, std::string> out;
  for (auto& e : fs::recursive_directory_iterator(root)) {
    const std::string rel = fs::relative(e.path(), root).string();
    if (e.is_symlink()) out[rel] = "->" + fs::read_symlink(e.path()).string();
    else if (e.is_directory()) out[rel] = "<dir>";
    else out[rel] = slurp(e.path().string());
  }
  return out;
}

}  // namespace openlm::testing
