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
/// retention (keep the newest `keep_last`, plus every step divisible by `keep_every` if > 0, plus
/// `protect`, the checkpoint the run resumed from, if not empty). Returns the directory written.
/// (One writer: begin + write_checkpoint_file + commit below.)
std::string save_checkpoint(const std::string& run_dir, int64_t step, const CheckpointFiles& files,
                            int64_t keep_last, int64_t keep_every, const std::string& protect = "");

/// The multi-writer protocol used by multi-rank runs, where every rank writes its own files:
///   rank 0:        begin_checkpoint            (fresh <root>/step_<step>.partial/, leftovers removed)
///   all ranks:     barrier, then write_checkpoint_file for each of its files (returns xxh64)
///   all ranks:     exchange the checksums
///   rank 0:        commit_checkpoint           (metadata.json with "step" and "files", rename to
///                                               step_<step>, fsync, `latest`, retention)
/// A crash anywhere before the rename leaves only a .partial directory, which is never loaded.
std::string partial_checkpoint_dir(const std::string& run_dir, int64_t step);
void begin_checkpoint(const std::string& run_dir, int64_t step);
std::string write_checkpoint_file(const std::string& run_dir, int64_t step, const std::string& file,
                                  const NamedTensors& tensors, const Metadata& extra = {},
                                  TensorGate* gate = nullptr);
/// `metadata["files"]` must map every file written to its checksum.
std::string commit_checkpoint(const std::string& run_dir, int64_t step, nlohmann::json metadata,
                              int64_t keep_last, int64_t keep_every, const std::string& protect = "");

/// Resolves `spec` ("latest" or a path) to a verified checkpoint directory. "latest" falls back to
/// the newest complete, verified one (logging why newer ones were refused) and returns "" when
/// none exists; an explicit path that fails verification throws DataError.
std::string resolve_checkpoint(const std::string& run_dir, const std::string& spec);

/// Reads and verifies metadata.json and the checksums of every file it lists. Every file it names
/// must be a plain name inside `dir` and a regular file there (not a symlink, FIFO or device), and
/// its steps and counters must be in range (checkpoint_member, check_counters). With parts > 1 only
/// the files whose position in metadata.json's "files" is part (mod parts) are hashed, so the
/// ranks of a run can verify a large checkpoint together, each reading a share of it.
nlohmann::json verify_checkpoint(const std::string& dir, int part = 0, int parts = 1);

/// The checkpoints `spec` may mean, in the order to try them: for "latest" every step directory,
/// newest first (no verification); for a path, just that path.
std::vector<std::string> checkpoint_candidates(const std::string& run_dir, const std::string& spec);

/// `dir`/`name` for a file that a checkpoint's metadata.json names (`what` says where, for the
/// error): `name` must be a plain file name (no '/', not "." or ".."), and the file, if it exists,
/// a regular file (not a symlink, FIFO or device). Throws DataError naming the checkpoint.
std::string checkpoint_member(const std::string& dir, const std::string& name, const std::string& what);

/// Range checks of metadata.json's step and counters (step, optimizer_steps, tokens_seen,
/// world_size, lr_schedule.step/total_steps): each must be an integer in its range, and "step"
/// must match a step_<N> directory name. Throws DataError naming the key and the value.
void check_counters(const std::string& dir, const nlohmann::json& meta);

/// Moves a checkpoint that failed verification out of the way: renames `dir` to
/// `<dir>.corrupt-<n>` (the first free n >= 1), which no resume or retention ever touches, and
/// returns the new path. Nothing is deleted.
std::string set_aside_checkpoint(const std::string& dir);

/// xxh64 of a file's bytes as 16 hex digits.
std::string file_xxh64(const std::string& path);

}  // namespace openlm::checkpoint
