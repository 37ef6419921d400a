// load_tokenizer (type detection) and encode_batch, for both implementations.
#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "openlm_cpp/core/error.h"
#include "openlm_cpp/tokenizer/tokenizer.h"

namespace openlm {

std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::string& path);  // sentencepiece_tokenizer.cpp

namespace {
namespace stdfs = std::filesystem;

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

/// A directory stands for its tokenizer file: tokenizer.model (SentencePiece, what our
/// SentencePiece runs and Llama-2-style HF directories carry) before tokenizer.json.
std::string resolve_dir(const std::string& path, const std::string& type) {
  std::error_code ec;
  if (!stdfs::is_directory(path, ec)) return path;
  auto model = stdfs::path(path) / "tokenizer.model", json = stdfs::path(path) / "tokenizer.json";
  if (type == "bpe") return json.string();
  if (type == "sentencepiece") return model.string();
  if (stdfs::exists(model)) return model.string();
  if (stdfs::exists(json)) return json.string();
  throw DataError("tokenizer directory '" + path + "' has neither tokenizer.model nor tokenizer.json");
}

}  // namespace

std::string detect_tokenizer_type(const std::string& path) {
  std::string p = resolve_dir(path, "auto");
  return ends_with(p, ".json") ? "bpe" : "sentencepiece";
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& type, const std::string& path) {
  if (type != "sentencepiece" && type != "bpe" && type != "auto" && !type.empty())
    throw ConfigError("", "tokenizer.type", 0,
                      "unknown tokenizer type '" + type + "' (expected: sentencepiece, bpe or auto)");
  if (path.empty()) throw ConfigError("", "tokenizer.path", 0, "no tokenizer file given");
  // The recipe default is "sentencepiece": a .json path means a tokenizer.json all the same.
  std::string file = resolve_dir(path, type == "bpe" ? "bpe" : "auto");
  std::string t = ends_with(file, ".json") ? "bpe" : (type == "bpe" ? "bpe" : "sentencepiece");
  if (t == "sentencepiece") return load_sentencepiece_tokenizer(file);
  if (!ends_with(file, ".json"))
    throw ConfigError("", "tokenizer.path", 0,
                      "tokenizer.type bpe needs a Hugging Face tokenizer.json, got '" + file + "'");
  std::ifstream f(file, std::ios::binary);
  if (!f) throw DataError("tokenizer file '" + file + "' not found or unreadable");
  std::stringstream ss;
  ss << f.rdbuf();
  return load_bpe_tokenizer_json(ss.str(), file, file);
}

std::vector<std::vector<int32_t>> encode_batch(const Tokenizer& tok, const std::vector<std::string>& texts,
                                               int threads) {
  std::vector<std::vector<int32_t>> out(texts.size());
  if (threads <= 1 || texts.size() <= 1) {
    for (std::size_t i = 0; i < texts.size(); ++i) out[i] = tok.encode(texts[i]);
    return out;
  }
  std::atomic<std::size_t> next{0};
  std::exception_ptr failure;
  std::atomic<bool> failed{false};
  auto work = [&] {
    try {
      for (std::size_t i; (i = next.fetch_add(1)) < texts.size() && !failed.load();) out[i] = tok.encode(texts[i]);
    } catch (...) {
      if (!failed.exchange(true)) failure = std::current_exception();
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (auto& th : pool) th.join();
  if (failure) std::rethrow_exception(failure);
  return out;
}

}  // namespace openlm
