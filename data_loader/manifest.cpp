#include "data_loader/manifest.h"

#include <fstream>
#include <nlohmann/json.hpp>

#include "data_loader/byte_source.h"
#include "data_loader/native_shard.h"
#include "openlm_cpp/core/error.h"

namespace openlm::data {
namespace {

std::string dir_of(const std::string& p) {
  auto s = p.find_last_of('/');
  return s == std::string::npos ? std::string() : p.substr(0, s + 1);
}

bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

}  // namespace

const char* format_name(ShardFormat f) { return f == ShardFormat::Native ? "native" : "openlm-tar"; }

int64_t Manifest::total_sequences() const {
  int64_t n = 0;
  for (const auto& e : entries) n += e.num_sequences;
  return n;
}

Manifest read_manifest(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw_errno("cannot open manifest", path);
  Manifest m;
  m.path = path;
  const std::string dir = dir_of(path);
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object())
      throw ConfigError(path, "manifest", lineno, "line is not a JSON object");
    ManifestEntry e;
    auto sh = j.find("shard");
    if (sh == j.end() || !sh->is_string() || sh->get<std::string>().empty())
      throw ConfigError(path, "shard", lineno, "missing or non-string \"shard\"");
    e.shard = sh->get<std::string>();
    auto ns = j.find("num_sequences");
    if (ns == j.end()) ns = j.find("num_chunks");
    if (ns == j.end() || !ns->is_number_integer() || ns->get<int64_t>() < 0)
      throw ConfigError(path, "num_sequences", lineno,
                        "shard '" + e.shard + "': missing or invalid \"num_sequences\"/\"num_chunks\"");
    e.num_sequences = ns->get<int64_t>();
    const bool absolute = e.shard[0] == '/' || e.shard.find("://") != std::string::npos || e.shard.rfind("pipe:", 0) == 0;
    std::string base = absolute ? e.shard : dir + e.shard;
    if (ends_with(base, ".tar") && byte_source_exists(base)) {
      e.path = base;
      e.format = ShardFormat::OpenLMTar;
    } else if (ends_with(base, kNativeExt) && byte_source_exists(base)) {
      e.path = base;
      e.format = ShardFormat::Native;
    } else if (byte_source_exists(base + ".tar")) {
      e.path = base + ".tar";
      e.format = ShardFormat::OpenLMTar;
    } else if (byte_source_exists(base + kNativeExt)) {
      e.path = base + kNativeExt;
      e.format = ShardFormat::Native;
    } else {
      throw DataError("manifest '" + path + "' line " + std::to_string(lineno) + ": shard '" + e.shard +
                      "' is missing (looked for " + base + ".tar and " + base + kNativeExt + ")");
    }
    m.entries.push_back(std::move(e));
  }
  if (m.entries.empty()) throw ConfigError(path, "manifest", 0, "manifest lists no shards");
  return m;
}

void write_manifest(const std::string& path, const std::vector<ManifestEntry>& entries) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) throw_errno("cannot create manifest", tmp);
    for (const auto& e : entries)
      out << nlohmann::json{{"shard", e.shard}, {"num_sequences", e.num_sequences}}.dump() << "\n";
    out.flush();
    if (!out) throw_errno("cannot write manifest", tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw_errno("cannot rename manifest to", path);
}

}  // namespace openlm::data
