#pragma once
/// Native training checkpoints: one directory per step under <run>/checkpoints/, written under a
/// temporary name, fsync'd and renamed when complete; `checkpoints/latest` (a text file naming the
/// newest complete directory) replaced atomically last. Every file's xxh64 is recorded in
/// metadata.json and verified on load, so a torn or corrupted checkpoint is refused.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "openlm_cpp/checkpoint/tensor_file.h"

namespace openlm::checkpoint {

/// What one checkpoint holds (for this process).
struct CheckpointFiles {
  std::vector<std::pair<std::string, NamedTensors>> tensor_files;  ///< file name -> tensors
  nlohmann::json metadata;  ///< step, tokens, config, data state, ... ("files" is added)
};

/// Writes <run_dir>/checkpoints/step_<step>/ atomically and updates `latest`; then applies
/// retention (keep the newest `keep_last`, plus every step divisible by `keep_every` if > 0).
/// Returns the directory written.
std::string save_checkpoint(const std::string& run_dir, int64_t step, const CheckpointFiles& files,
                            int64_t keep_last, int64_t keep_every);

/// Resolves `spec` ("latest" or a path) to a verified checkpoint directory. "latest" falls back to
/// the newest complete, verified one (logging why newer ones were refused) and returns "" when
/// none exists; an explicit path that fails verification throws DataError.
std::string resolve_checkpoint(const std::string& run_dir, const std::string& spec);

/// Reads and verifies metadata.json and the checksums of every file it lists.
nlohmann::json verify_checkpoint(const std::string& dir);

/// xxh64 of a file's bytes as 16 hex digits.
std::string file_xxh64(const std::string& path);

}  // namespace openlm::checkpoint
