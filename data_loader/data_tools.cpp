#include "data_loader/data_tools.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "data_loader/native_shard.h"
#include "data_loader/shard_reader.h"
#include "data_loader/tar_format.h"
#include "data_loader/token_codec.h"
#include "openlm_cpp/core/error.h"
#include "openlm_cpp/core/log.h"
#include "openlm_cpp/tokenizer/tokenizer.h"

namespace openlm::data {
namespace {

void make_dirs(const std::string& dir) {
  std::string cur;
  std::stringstream ss(dir);
  std::string part;
  if (!dir.empty() && dir[0] == '/') cur = "/";
  while (std::getline(ss, part, '/')) {
    if (part.empty()) continue;
    cur += part + "/";
    if (::mkdir(cur.c_str(), 0755) != 0 && errno != EEXIST) throw_errno("cannot create directory", cur);
  }
}

std::string join(const std::string& dir, const std::string& name) {
  return dir.empty() || dir.back() == '/' ? dir + name : dir + "/" + name;
}

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
    if (!w) w = std::make_unique<NativeShardWriter>(join(opt.output_dir, shard_name(res.shards) + kNativeExt), dtype,
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
  write_manifest(join(opt.output_dir, "manifest.jsonl"), manifest);
  return res;
}

int64_t convert_manifest(const std::string& manifest_path, const std::string& output_dir, ShardFormat to,
                         int64_t vocab_size) {
  Manifest m = read_manifest(manifest_path);
  make_dirs(output_dir);
  std::vector<ManifestEntry> out_entries;
  DecodeScratch scratch;
  std::vector<int64_t> ids;
  int64_t total = 0;
  for (const auto& e : m.entries) {
    auto r = open_shard(e);
    const int64_t n = r->size();
    if (n != e.num_sequences)
      throw DataError("manifest '" + manifest_path + "' says shard '" + e.shard + "' has " +
                      std::to_string(e.num_sequences) + " sequences but " + e.path + " holds " + std::to_string(n));
    // output shard name: the manifest name without any extension it carries
    std::string name = e.shard;
    for (const char* ext : {".tar", kNativeExt})
      if (ends_with(name, ext)) name.resize(name.size() - std::char_traits<char>::length(ext));
    std::string base = name.substr(name.find_last_of('/') == std::string::npos ? 0 : name.find_last_of('/') + 1);
    if (to == ShardFormat::Native) {
      // pass 1: lengths and the largest id decide seq_len and dtype
      int64_t len = -1, max_id = -1;
      for (int64_t i = 0; i < n; ++i) {
        r->read(i, ids, scratch);
        if (len < 0) len = static_cast<int64_t>(ids.size());
        if (static_cast<int64_t>(ids.size()) != len)
          throw DataError(r->describe(i) + ": has " + std::to_string(ids.size()) + " tokens, earlier members have " +
                          std::to_string(len) + " (native shards store equal-length sequences)");
        for (int64_t v : ids) {
          if (v < 0) throw DataError(r->describe(i) + ": negative token id " + std::to_string(v) + " (native shards store ids >= 0)");
          max_id = std::max(max_id, v);
        }
      }
      if (n == 0) throw DataError("shard '" + e.path + "' is empty; a native shard needs a sequence length");
      int dtype = native_dtype_bytes(vocab_size > 0 ? vocab_size : max_id + 1);
      std::string tokenizer;
      if (r->format() == ShardFormat::Native) tokenizer = NativeShard(e.path).header().tokenizer;
      NativeShardWriter w(join(output_dir, base + kNativeExt), dtype, len, tokenizer);
      for (int64_t i = 0; i < n; ++i) {
        r->read(i, ids, scratch);
        w.append(ids.data(), ids.size());
      }
      w.finish();
    } else {
      TarWriter w(join(output_dir, base + ".tar"));
      for (int64_t i = 0; i < n; ++i) {
        r->read(i, ids, scratch);
        std::string js = format_json_int_list(ids.data(), ids.size());
        auto gz = gzip_compress(js.data(), js.size());
        char key[64];
        std::snprintf(key, sizeof key, "_%08lld.json.gz", static_cast<long long>(i));
        w.add(base + key, gz.data(), gz.size());
      }
      w.finish();
    }
    ManifestEntry oe;
    oe.shard = base;
    oe.num_sequences = n;
    out_entries.push_back(oe);
    total += n;
  }
  write_manifest(join(output_dir, "manifest.jsonl"), out_entries);
  return total;
}

ManifestStats compute_stats(const std::string& manifest_path, int threads) {
  Manifest m = read_manifest(manifest_path);
  ManifestStats st;
  st.num_shards = static_cast<int64_t>(m.entries.size());
  bool tar = false, native = false;
  for (const auto& e : m.entries) (e.format == ShardFormat::Native ? native : tar) = true;
  st.format = tar && native ? "mixed" : native ? "native" : "openlm-tar";
  std::mutex mu;
  std::atomic<size_t> next{0};
  std::exception_ptr err;
  int64_t minl = INT64_MAX, maxl = 0;
  auto work = [&] {
    DecodeScratch scratch;
    std::vector<int64_t> ids;
    while (true) {
      size_t s = next++;
      if (s >= m.entries.size()) return;
      try {
        const auto& e = m.entries[s];
        auto r = open_shard(e);
        if (e.format == ShardFormat::Native) NativeShard(e.path).verify_checksum();
        int64_t n = r->size();
        if (n != e.num_sequences)
          throw DataError("manifest '" + manifest_path + "' says shard '" + e.shard + "' has " +
                          std::to_string(e.num_sequences) + " sequences but " + e.path + " holds " + std::to_string(n));
        int64_t toks = 0, lo = INT64_MAX, hi = 0, mx = -1, mn = 0;
        for (int64_t i = 0; i < n; ++i) {
          r->read(i, ids, scratch);
          int64_t k = static_cast<int64_t>(ids.size());
          toks += k;
          lo = std::min(lo, k);
          hi = std::max(hi, k);
          for (int64_t v : ids) {
            mx = std::max(mx, v);
            mn = std::min(mn, v);
          }
        }
        std::lock_guard<std::mutex> lk(mu);
        st.num_sequences += n;
        st.num_tokens += toks;
        minl = std::min(minl, lo);
        maxl = std::max(maxl, hi);
        st.max_token_id = std::max(st.max_token_id, mx);
        st.min_token_id = std::min(st.min_token_id, mn);
      } catch (...) {
        std::lock_guard<std::mutex> lk(mu);
        if (!err) err = std::current_exception();
        next = m.entries.size();
        return;
      }
    }
  };
  std::vector<std::thread> pool;
  for (int i = 1; i < std::max(1, threads); ++i) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  if (err) std::rethrow_exception(err);
  st.min_seq_len = st.num_sequences ? minl : 0;
  st.max_seq_len = maxl;
  st.seq_len = maxl;
  return st;
}

}  // namespace openlm::data
