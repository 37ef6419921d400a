#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "data_loader/data_tools.h"
#include "data_loader/native_shard.h"
#include "openlm_cpp/core/error.h"
#include "openlm_cpp/tokenizer/tokenizer.h"

namespace openlm::data {
namespace {

bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

std::string shard_name(int64_t i) {
  char b[32];
  std::snprintf(b, sizeof b, "shard_%08lld", static_cast<long long>(i));
  return b;
}

}  // namespace

std::vector<std::string> split_documents(const std::string& text) {
  std::vector<std::string> docs;
  std::string cur;
  std::istringstream in(text);
  std::string line;
  auto flush = [&] {
    if (!cur.empty()) docs.push_back(std::move(cur));
    cur.clear();
  };
  while (std::getline(in, line)) {
    if (line.find_first_not_of(" \t\r\f\v") == std::string::npos) {
      flush();
      continue;
    }
    if (!cur.empty()) cur += "\n";
    cur += line;
  }
  flush();
  return docs;
}

TokenizeResult tokenize_to_native(const TokenizeOptions& opt) {
  if (opt.inputs.empty()) throw ConfigError("", "--input", 0, "no input files");
  if (opt.seq_len <= 0) throw ConfigError("", "--seq-len", 0, "seq_len must be positive");
  if (opt.shard_sequences <= 0) throw ConfigError("", "--shard-sequences", 0, "must be positive");
  auto tok = load_tokenizer(opt.tokenizer_type, opt.tokenizer_path);
  const int32_t eos = tok->eos_id();
  if (eos < 0) throw ConfigError(opt.tokenizer_path, "eos_id", 0, "the tokenizer has no end-of-text id");
  const int64_t L = opt.seq_len + 1;
  const int dtype = native_dtype_bytes(tok->vocab_size());
  make_dirs(opt.output_dir);

  TokenizeResult res;
  std::vector<ManifestEntry> manifest;
  std::vector<int64_t> buf;  // tokens not yet cut into a sequence
  std::unique_ptr<NativeShardWriter> w;
  auto close_shard = [&] {
    if (!w) return;
    w->finish();
    ManifestEntry e;
    e.shard = shard_name(res.shards);
    e.num_sequences = w->count();
    manifest.push_back(e);
    ++res.shards;
    w.reset();
  };
  auto emit = [&](const int64_t* seq) {
    if (!w) w = std::make_unique<NativeShardWriter>(join_path(opt.output_dir, shard_name(res.shards) + kNativeExt), dtype,
                                                    L, tok->id());
    w->append(seq, static_cast<size_t>(L));
    ++res.sequences;
    if (w->count() == opt.shard_sequences) close_shard();
  };
  auto add_doc = [&](const std::string& text) {
    auto ids = tok->encode(text);
    buf.insert(buf.end(), ids.begin(), ids.end());
    buf.push_back(eos);
    res.tokens += static_cast<int64_t>(ids.size()) + 1;
    ++res.documents;
    size_t used = 0;
    while (buf.size() - used >= static_cast<size_t>(L)) {
      emit(buf.data() + used);
      used += static_cast<size_t>(L);
    }
    buf.erase(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(used));
  };
  for (const auto& path : opt.inputs) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw_errno("cannot open input", path);
    if (ends_with(path, ".jsonl")) {
      std::string line;
      int lineno = 0;
      while (std::getline(in, line)) {
        ++lineno;
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
        auto j = nlohmann::json::parse(line, nullptr, false);
        if (j.is_discarded() || !j.is_object() || !j.contains("text") || !j["text"].is_string())
          throw DataError("input '" + path + "' line " + std::to_string(lineno) +
                          ": expected a JSON object with a string \"text\"");
        add_doc(j["text"].get<std::string>());
      }
    } else {
      std::stringstream ss;
      ss << in.rdbuf();
      for (const auto& d : split_documents(ss.str())) add_doc(d);
    }
  }
  close_shard();
  res.dropped_tail_tokens = static_cast<int64_t>(buf.size());
  if (manifest.empty())
    throw DataError("tokenize: the inputs hold " + std::to_string(res.tokens) + " tokens, fewer than one sequence of " +
                    std::to_string(L));
  write_manifest(join_path(opt.output_dir, "manifest.jsonl"), manifest);
  return res;
}

}  // namespace openlm::data
