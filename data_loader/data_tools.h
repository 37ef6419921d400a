#pragma once
/// Shard tools behind `openlm data convert|stats`. Torch-free. Text -> shards is prepare_data
/// (prepare_data.h, library openlm_data_prep, because it needs the tokenizer).
#include <cstdint>
#include <string>
#include <vector>

#include "data_loader/manifest.h"

namespace openlm::data {

/// Splits text into documents as prepare-data reads a text file: runs of lines that are not blank
/// (whitespace only), joined with "\n", a trailing '\r' of each line dropped. Implemented in
/// doc_reader.cpp (library openlm_data_prep).
std::vector<std::string> split_documents(const std::string& text);

/// Converts every shard of a manifest to `to` in output_dir (same shard names, same sequence order,
/// same manifest). Input shards that share a file name are written as <name>-<k> (k: manifest
/// position). The written manifest is read back and must list the written files with the input's
/// shard and sequence counts (DataError otherwise). Tar -> native requires equal-length, non-negative sequences (error naming the
/// member otherwise); dtype from vocab_size if > 0, else from the largest id. Native -> tar writes
/// members <shard>_<index:08>.json.gz. Returns the number of sequences written.
int64_t convert_manifest(const std::string& manifest, const std::string& output_dir, ShardFormat to,
                         int64_t vocab_size = 0);

struct ManifestStats {
  std::string format;  ///< "openlm-tar", "native" or "mixed"
  int64_t num_shards = 0, num_sequences = 0, num_tokens = 0;
  int64_t seq_len = 0;  ///< tokens per stored sequence (the longest when lengths differ)
  int64_t min_seq_len = 0, max_seq_len = 0;
  int64_t max_token_id = -1, min_token_id = 0;
};

/// Reads every member of every shard (verifying native checksums and manifest counts) with
/// `threads` threads. Throws DataError naming the shard (and member) on corruption.
ManifestStats compute_stats(const std::string& manifest, int threads = 1);

/// mkdir -p. Throws IoError.
void make_dirs(const std::string& dir);
/// dir + "/" + name (no doubled slash).
std::string join_path(const std::string& dir, const std::string& name);

}  // namespace openlm::data
