#pragma once
/// manifest.jsonl, shared by OpenLM tar shards and native shards: one JSON object per line,
/// {"shard": "<name without extension>", "num_sequences": N} ("num_chunks" in older files).
/// Shard files live beside the manifest as <shard>.tar (OpenLM) or <shard>.olmtok (native).
/// Torch-free.
#include <cstdint>
#include <string>
#include <vector>

namespace openlm::data {

enum class ShardFormat { OpenLMTar, Native };
const char* format_name(ShardFormat f);

struct ManifestEntry {
  std::string shard;          ///< name as written in the manifest
  int64_t num_sequences = 0;  ///< count the manifest claims
  std::string path;           ///< resolved shard file path
  ShardFormat format = ShardFormat::OpenLMTar;
};

struct Manifest {
  std::string path;  ///< the manifest file
  std::vector<ManifestEntry> entries;
  int64_t total_sequences() const;
};

/// Reads and resolves a manifest. Every shard file must exist; its format is detected from the
/// file beside the manifest (<shard>.tar, else <shard>.olmtok; a name that already carries an
/// extension is used as is). Throws ConfigError/DataError naming the manifest, line and shard.
Manifest read_manifest(const std::string& path);

/// Writes manifest.jsonl lines {"shard":..., "num_sequences":...} to `path`. Throws IoError.
void write_manifest(const std::string& path, const std::vector<ManifestEntry>& entries);

}  // namespace openlm::data
