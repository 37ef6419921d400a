#pragma once
/// Internals of prepare_data (prepare_data.cpp): input enumeration, the output directory's
/// lifecycle and the shard writers (prepare_output.cpp).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data_loader/doc_reader.h"
#include "data_loader/manifest.h"
#include "data_loader/native_shard.h"
#include "data_loader/tar_format.h"

namespace openlm::data::detail {

struct InputFile {
  std::string path;
  InputKind kind;
  uint64_t size = 0;
};

/// A file is itself; a folder is every input file below it (is_input_file_name; hidden folders
/// skipped), sorted by path so that the order never depends on the file system. Throws
/// ConfigError for a missing path or a folder without input files.
std::vector<InputFile> list_source_files(const std::string& path);

/// Refuses an output directory inside an input folder: a rerun would read the previous output
/// (prepare_data.json, manifest.jsonl) as input. ConfigError naming both.
void refuse_output_inside(const std::string& input, const std::string& output_dir);

/// The output directory: checks it holds nothing but an earlier prepare-data output, removes stale
/// .partial-* folders, and creates DIR/.partial-<pid>/ (with tmp/ for shuffle runs) to work in.
class OutputDir {
 public:
  explicit OutputDir(std::string dir);
  /// Removes the partial folder unless commit() ran.
  ~OutputDir();
  const std::string& partial() const { return partial_; }
  std::string tmp() const { return partial_ + "/tmp"; }
  /// Writes manifest.jsonl and prepare_data.json into the partial folder, then replaces the
  /// directory's previous output: old manifest.jsonl first, old shards and stats, new shards and
  /// stats moved in, new manifest.jsonl last; the partial folder is removed.
  void commit(const std::vector<ManifestEntry>& entries, const std::string& stats_json);

 private:
  std::string dir_, partial_;
  bool committed_ = false;
};

/// Whether `name` is a file prepare-data writes (shard_NNNNNNNN.olmtok/.tar, their .tmp,
/// manifest.jsonl, prepare_data.json).
bool is_output_file_name(const std::string& name);

/// Writes shuffled sequences into shards of `per_shard` sequences: shard_00000000.olmtok ... or
/// .tar (members <shard>_<index:08>.json.gz, the layout `openlm data convert` writes). Tar members
/// are formatted and gzip-compressed on `threads` threads in blocks, then written in order.
class ShardSink {
 public:
  ShardSink(std::string dir, ShardFormat format, int64_t per_shard, int64_t seq_tokens, int64_t vocab_size,
            std::string tokenizer_id, int threads = 1);
  ~ShardSink();
  void add(const uint32_t* tokens);
  /// Closes the last shard; returns the manifest entries.
  std::vector<ManifestEntry> finish();

 private:
  void open_shard();
  void close_shard();
  void flush_tar();  // compresses the pending sequences and writes them as members

  std::string dir_, tokenizer_id_;
  ShardFormat format_;
  int64_t per_shard_, L_;
  int dtype_, threads_;
  std::unique_ptr<NativeShardWriter> native_;
  std::unique_ptr<TarWriter> tar_;
  int64_t in_shard_ = 0;
  std::vector<ManifestEntry> entries_;
  std::vector<int64_t> ids_;
  std::vector<uint32_t> pending_;  // tar: sequences waiting for compression (whole blocks)
};

}  // namespace openlm::data::detail
