// Tokenizer throughput: our byte-level BPE (tokenizer.json) encode in MB/s of UTF-8 text at 1 and
// 2 threads, beside the `tokenizers` package (Rust; encode_batch with RAYON_NUM_THREADS=1 and 2,
// bench/py_bench_tokenizer.py) on the same documents and the same tokenizer.json, and whether
// both produced the same ids (token count and an order-sensitive checksum). Prints one JSON line.
//
//   bench_tokenizer [--text FILE] [--tokenizer tokenizer.json] [--python PY] [--passes 3]
//                   [--dir DIR] [--vocab 32000]
// Defaults: the embedded default corpus text (assets/generated/default_corpus/corpus.txt, built by
// `openlm train recipes/train/tiny_demo.yaml` or scripts/demo.sh); a GPT-NeoX-like tokenizer
// trained on it with the venv's `tokenizers` (without the venv: tests/tokenizer's small asset).
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "openlm_cpp/tokenizer/tokenizer.h"

#include "bench/bench_args.h"

namespace {
namespace stdfs = std::filesystem;

using openlm::bench::arg;

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

/// Runs a shell command; returns its last stdout line ("" on failure).
std::string run_last_line(const std::string& cmd) {
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return "";
  std::string out, line;
  char buf[4096];
  while (fgets(buf, sizeof buf, p)) out += buf;
  int rc = pclose(p);
  if (rc != 0) return "";
  std::istringstream ss(out);
  while (std::getline(ss, line))
    if (!line.empty()) out = line;
  return out;
}

std::pair<uint64_t, uint64_t> checksum(const std::vector<std::vector<int32_t>>& batch) {
  uint64_t n = 0, h = 0;
  for (auto& ids : batch)
    for (int32_t i : ids) h += uint64_t(i) * ++n;
  return {n, h};
}

}  // namespace

int main(int argc, char** argv) {
  const std::string src = OPENLM_SOURCE_DIR;
  std::string text_path = arg(argc, argv, "--text", src + "/assets/generated/default_corpus/corpus.txt");
  std::string tok_path = arg(argc, argv, "--tokenizer", "");
  std::string python = arg(argc, argv, "--python", src + "/.venv/bin/python");
  std::string dir = arg(argc, argv, "--dir", (stdfs::temp_directory_path() / "openlm_bench_tokenizer").string());
  int passes = std::atoi(arg(argc, argv, "--passes", "3").c_str());
  std::string vocab = arg(argc, argv, "--vocab", "32000");
  const std::string py_script = src + "/bench/py_bench_tokenizer.py";
  stdfs::create_directories(dir);
  nlohmann::json out = {{"bench", "tokenizer"}};

  std::ifstream tf(text_path, std::ios::binary);
  if (!tf) {
    out["error"] = "no text at " + text_path + " (pass --text FILE, or build the default corpus with scripts/demo.sh)";
    std::printf("%s\n", out.dump().c_str());
    return 1;
  }
  std::stringstream ss;
  ss << tf.rdbuf();
  const std::string text = ss.str();
  // Documents of about 2 KB, cut at line ends.
  std::vector<std::string> docs;
  for (std::size_t pos = 0; pos < text.size();) {
    std::size_t end = std::min(text.size(), pos + 2048);
    std::size_t nl = text.find('\n', end);
    end = nl == std::string::npos ? text.size() : nl + 1;
    docs.push_back(text.substr(pos, end - pos));
    pos = end;
  }
  const std::string docs_path = dir + "/docs.bin";
  {
    std::ofstream f(docs_path, std::ios::binary);
    for (auto& d : docs) f << d << '\0';
  }
  const bool have_python = access(python.c_str(), X_OK) == 0;
  if (tok_path.empty()) {
    tok_path = dir + "/tokenizer.json";
    bool trained = have_python && !run_last_line(shell_quote(python) + " " + shell_quote(py_script) + " train --text " +
                                                 shell_quote(text_path) + " --out " + shell_quote(tok_path) +
                                                 " --vocab " + vocab + " && echo ok")
                                       .empty();
    if (!trained) tok_path = src + "/tests/tokenizer/data/neox_tiny_tokenizer.json";
  }
  auto tok = openlm::load_tokenizer("bpe", tok_path);
  std::size_t bytes = 0;
  for (auto& d : docs) bytes += d.size();
  out["tokenizer"] = tok_path;
  out["vocab_size"] = tok->vocab_size();
  out["text"] = text_path;
  out["text_bytes"] = bytes;
  out["docs"] = docs.size();

  auto warm = openlm::encode_batch(*tok, docs, 1);
  auto [n, h] = checksum(warm);
  out["tokens"] = n;
  nlohmann::json ours = nlohmann::json::object();
  for (int threads : {1, 2}) {
    double best = 1e30;
    for (int p = 0; p < std::max(1, passes); ++p) {
      auto t0 = std::chrono::steady_clock::now();
      auto r = openlm::encode_batch(*tok, docs, threads);
      double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      best = std::min(best, dt);
      if (checksum(r) != std::make_pair(n, h)) out["error"] = "ids differ between thread counts";
    }
    ours[std::to_string(threads)] = bytes / best / 1e6;
  }
  out["ours_mb_per_s"] = ours;

  if (have_python) {
    nlohmann::json theirs = nlohmann::json::object();
    bool match = true;
    for (int threads : {1, 2}) {
      std::string line = run_last_line("RAYON_NUM_THREADS=" + std::to_string(threads) +
                                       " TOKENIZERS_PARALLELISM=true " + shell_quote(python) + " " +
                                       shell_quote(py_script) + " bench --tokenizer " + shell_quote(tok_path) +
                                       " --docs " + shell_quote(docs_path) + " --passes " + std::to_string(passes));
      try {
        auto j = nlohmann::json::parse(line);
        theirs[std::to_string(threads)] = j.at("mb_per_s");
        out["tokenizers_version"] = j.at("version");
        match &= j.at("tokens").get<uint64_t>() == n && j.at("checksum").get<std::string>() == std::to_string(h);
      } catch (const std::exception&) {
        theirs[std::to_string(threads)] = nullptr;
        match = false;
      }
    }
    out["tokenizers_mb_per_s"] = theirs;
    out["ids_match"] = match;
  } else {
    out["tokenizers_mb_per_s"] = nullptr;
    out["note"] = "no python at " + python + ": tokenizers not measured";
  }
  std::printf("%s\n", out.dump().c_str());
  return 0;
}
