// prepare-data throughput end to end (read JSONL, tokenise, pack, shuffle, write shards): input MB/s
// and tokens/s at 1 and 2 tokenizer threads, native and OpenLM tar output, in-memory and external
// shuffle. Prints one JSON line per configuration.
//
//   bench_prepare_data [--text FILE] [--tokenizer FILE] [--mb 16] [--seq-len 2048] [--dir DIR]
// Defaults: the embedded default corpus text (assets/generated/default_corpus/corpus.txt) when it
// exists, else synthetic word salad; the GPT-NeoX-layout tokenizer.json of tests/tokenizer/data.
// The documents are repeated into one JSONL file of about --mb MB.
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "data_loader/data_tools.h"
#include "data_loader/prepare_data.h"

#include "bench/bench_args.h"

namespace {
namespace stdfs = std::filesystem;

using openlm::bench::arg;

std::vector<std::string> documents(const std::string& text_path) {
  if (stdfs::exists(text_path)) {
    std::ifstream f(text_path);
    std::stringstream ss;
    ss << f.rdbuf();
    auto docs = openlm::data::split_documents(ss.str());
    if (!docs.empty()) return docs;
  }
  static const char* lex[] = {"the",  "model", "reads",   "tokens", "from",  "shards", "while", "ranks",
                              "share", "batches", "quickly", "and",  "resume", "after", "a",     "checkpoint"};
  std::mt19937 rng(1);
  std::vector<std::string> docs;
  for (int d = 0; d < 2000; ++d) {
    std::string s;
    for (int w = 0, n = 20 + static_cast<int>(rng() % 300); w < n; ++w)
      s += std::string(w ? (w % 15 == 0 ? ".\n" : " ") : "") + lex[rng() % 16];
    docs.push_back(s);
  }
  return docs;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string src = OPENLM_SOURCE_DIR;
  const std::string text = arg(argc, argv, "--text", src + "/assets/generated/default_corpus/corpus.txt");
  const std::string tokenizer = arg(argc, argv, "--tokenizer", src + "/tests/tokenizer/data/neox_tiny_tokenizer.json");
  const double mb = std::stod(arg(argc, argv, "--mb", "16"));
  const int64_t seq_len = std::stoll(arg(argc, argv, "--seq-len", "2048"));
  const std::string dir = arg(argc, argv, "--dir", "/tmp/bench_prepare_data_" + std::to_string(::getpid()));
  stdfs::create_directories(dir);

  const auto docs = documents(text);
  const std::string input = dir + "/input.jsonl";
  uint64_t bytes = 0;
  {
    std::ofstream f(input, std::ios::binary);
    for (size_t i = 0; bytes < mb * 1e6; i = (i + 1) % docs.size()) {
      std::string line = nlohmann::json{{"text", docs[i]}, {"id", i}}.dump() + "\n";
      bytes += line.size();
      f << line;
    }
  }
  struct Config {
    int threads;
    openlm::data::ShardFormat format;
    double budget_mb;
  };
  const std::vector<Config> configs = {{1, openlm::data::ShardFormat::Native, 1024},
                                       {2, openlm::data::ShardFormat::Native, 1024},
                                       {2, openlm::data::ShardFormat::OpenLMTar, 1024},
                                       {2, openlm::data::ShardFormat::Native, 1}};
  for (const auto& c : configs) {
    openlm::data::PrepareOptions o;
    o.inputs = {{input, 1.0}};
    o.tokenizer_path = tokenizer;
    o.output_dir = dir + "/out";
    o.format = c.format;
    o.seq_len = seq_len;
    o.seed = 1;
    o.threads = c.threads;
    o.memory_budget_mb = c.budget_mb;
    stdfs::remove_all(o.output_dir);
    auto t0 = std::chrono::steady_clock::now();
    const std::clock_t c0 = std::clock();
    auto r = openlm::data::prepare_data(o);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    nlohmann::json j = {{"bench", "prepare_data"},
                        {"threads", c.threads},
                        {"format", openlm::data::format_name(c.format)},
                        {"memory_budget_mb", c.budget_mb},
                        {"shuffle_runs", r.shuffle_runs},
                        {"input_mb", bytes / 1e6},
                        {"documents", r.documents},
                        {"tokens", r.tokens},
                        {"sequences", r.sequences},
                        {"seconds", s},
                        {"cpu_seconds", static_cast<double>(std::clock() - c0) / CLOCKS_PER_SEC},
                        {"input_mb_per_s", bytes / 1e6 / s},
                        {"tokens_per_s", r.tokens / s},
                        {"tokenizer", tokenizer}};
    std::printf("%s\n", j.dump().c_str());
    std::fflush(stdout);
  }
  stdfs::remove_all(dir);
  return 0;
}
