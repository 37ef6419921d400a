#include "data_loader/data_tools.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "data_loader/native_shard.h"
#include "data_loader/shard_reader.h"
#include "data_loader/tar_format.h"
#include "data_loader/token_codec.h"
#include "openlm_cpp/core/error.h"
#include "openlm_cpp/core/log.h"

namespace openlm::data {
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

std::string join_path(const std::string& dir, const std::string& name) {
  return dir.empty() || dir.back() == '/' ? dir + name : dir + "/" + name;
}

namespace {

bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

/// Output shard names of convert_manifest: the manifest name without folder and extension; when
/// several shards share one (same file name in different folders, or x.tar beside x.olmtok), each of
/// them becomes <name>-<k>, k its 0-based position in the manifest (plus more "-k" if that is taken).
std::vector<std::string> output_shard_names(const Manifest& m) {
  std::vector<std::string> bases;
  std::map<std::string, int> count;
  for (const auto& e : m.entries) {
    std::string name = e.shard;
    for (const char* ext : {".tar", kNativeExt})
      if (ends_with(name, ext)) name.resize(name.size() - std::char_traits<char>::length(ext));
    auto slash = name.find_last_of('/');
    bases.push_back(slash == std::string::npos ? name : name.substr(slash + 1));
    ++count[bases.back()];
  }
  std::set<std::string> taken(bases.begin(), bases.end());
  std::vector<std::string> out = bases;
  for (size_t i = 0; i < bases.size(); ++i) {
    if (count[bases[i]] == 1) continue;
    std::string cand = bases[i] + "-" + std::to_string(i);
    while (taken.count(cand)) cand += "-" + std::to_string(i);
    taken.insert(cand);
    out[i] = cand;
    log::warn("convert: shard '{}' ({}) shares its file name with another input shard; writing it as '{}'",
              m.entries[i].shard, m.entries[i].path, cand);
  }
  return out;
}

}  // namespace

int64_t convert_manifest(const std::string& manifest_path, const std::string& output_dir, ShardFormat to,
                         int64_t vocab_size) {
  Manifest m = read_manifest(manifest_path);
  make_dirs(output_dir);
  const std::vector<std::string> names = output_shard_names(m);
  std::vector<ManifestEntry> out_entries;
  std::vector<std::string> written;  // output shard files, in manifest order
  DecodeScratch scratch;
  std::vector<int64_t> ids;
  int64_t total = 0;
  for (size_t si = 0; si < m.entries.size(); ++si) {
    const auto& e = m.entries[si];
    auto r = open_shard(e);
    const int64_t n = r->size();
    if (n != e.num_sequences)
      throw DataError("manifest '" + manifest_path + "' says shard '" + e.shard + "' has " +
                      std::to_string(e.num_sequences) + " sequences but " + e.path + " holds " + std::to_string(n));
    const std::string& base = names[si];
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
      written.push_back(join_path(output_dir, base + kNativeExt));
      NativeShardWriter w(written.back(), dtype, len, tokenizer);
      for (int64_t i = 0; i < n; ++i) {
        r->read(i, ids, scratch);
        w.append(ids.data(), ids.size());
      }
      w.finish();
    } else {
      written.push_back(join_path(output_dir, base + ".tar"));
      TarWriter w(written.back());
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
  const std::string out_manifest = join_path(output_dir, "manifest.jsonl");
  write_manifest(out_manifest, out_entries);
  // The output must hold exactly what the input held: read it back (names resolved as a loader
  // resolves them, shard files re-counted) and compare with the input manifest.
  Manifest back = read_manifest(out_manifest);
  std::set<std::string> paths;
  int64_t back_total = 0;
  for (size_t i = 0; i < back.entries.size(); ++i) {
    const auto& e = back.entries[i];
    if (i < written.size() && e.path != written[i])
      throw DataError("convert: output manifest line " + std::to_string(i + 1) + " ('" + e.shard + "') resolves to " +
                      e.path + ", not the written " + written[i] + " (a stale file in '" + output_dir +
                      "'? remove it or use an empty output directory)");
    if (!paths.insert(e.path).second)
      throw DataError("convert: output manifest '" + out_manifest + "' lists shard file " + e.path + " twice");
    const int64_t n = open_shard(e)->size();
    if (n != e.num_sequences)
      throw DataError("convert: output shard " + e.path + " holds " + std::to_string(n) + " sequences, its manifest line says " +
                      std::to_string(e.num_sequences));
    back_total += n;
  }
  if (back.entries.size() != m.entries.size() || back_total != m.total_sequences() || total != back_total)
    throw DataError("convert: output manifest '" + out_manifest + "' has " + std::to_string(back.entries.size()) +
                    " shards and " + std::to_string(back_total) + " sequences, input '" + manifest_path + "' has " +
                    std::to_string(m.entries.size()) + " shards and " + std::to_string(m.total_sequences()));
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
