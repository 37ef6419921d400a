#pragma once
/// The sources of a loader (one per manifest) and the rule that turns a Draw of the global stream
/// into exactly sample_len tokens. Torch-free; shared by the worker threads.
///
/// Per draw: negative ids are taken modulo vocab_size; a longer sequence is cropped at a seeded
/// offset (a function of the draw, so every run crops the same way); a shorter one is skipped and
/// counted, and so is a corrupt one when skip_corrupt is set. A skipped draw is replaced by the
/// source's next draws (k+1, k+2, ...) in the same order. The replacement depends only on the
/// data, the seed and the draw, never on the rank or the world size, so global batches stay
/// identical across world sizes.
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "data_loader/manifest.h"
#include "data_loader/sampler.h"
#include "data_loader/shard_reader.h"
#include "openlm_cpp/core/config.h"

namespace openlm::data {

/// A draw is replaced by at most this many following draws before the loader gives up.
inline constexpr int64_t kMaxConsecutiveSkips = 10000;

struct DatasetOptions {
  std::vector<DataSourceConfig> sources;  ///< manifest paths with weights
  std::string base_dir;                   ///< relative manifest paths resolve against this
  int64_t sample_len = 0;                 ///< tokens per sample (model seq_len + 1)
  int64_t vocab_size = 0;                 ///< 0 = no range check / no modulo
  bool skip_corrupt = false;
  bool replacement = false;
  bool stop_at_epoch_end = false;
  uint64_t seed = 0;
  /// The run's tokenizer identity (Tokenizer::id()); "" = not checked. A shard recording another
  /// tokenizer is refused at construction, naming the shard, both identities and tokenizer_label.
  std::string tokenizer_id;
  std::string tokenizer_label = "the run's tokenizer";
};

class TokenDataset {
 public:
  /// Opens every manifest and shard (native shards are mapped and validated; tar shards are
  /// indexed on first use). Throws ConfigError/DataError naming the manifest/shard.
  explicit TokenDataset(const DatasetOptions& opt);

  const StreamPlanner& planner() const { return *planner_; }
  int64_t sample_len() const { return opt_.sample_len; }

  /// Writes the sample_len tokens of draw `d` to out[0, sample_len). Thread-safe. Throws DataError
  /// naming manifest, shard and member unless skip_corrupt handles it.
  void fetch(const Draw& d, int64_t* out, DecodeScratch& scratch, std::vector<int64_t>& tmp) const;

  int64_t skipped_short() const { return skipped_short_.load(); }
  int64_t skipped_corrupt() const { return skipped_corrupt_.load(); }
  size_t num_sources() const { return sources_.size(); }
  const std::string& source_path(size_t s) const { return sources_[s].manifest.path; }
  double source_weight(size_t s) const { return sources_[s].weight; }
  int64_t source_size(size_t s) const { return sources_[s].prefix.back(); }

 private:
  struct Source {
    Manifest manifest;
    double weight = 1;
    std::vector<std::unique_ptr<ShardReader>> shards;
    std::vector<int64_t> prefix;  ///< prefix[i] = sequences before shard i (manifest counts)
    std::unique_ptr<std::atomic<bool>[]> checked;  ///< shard count verified against the manifest
  };
  /// Reads one draw without fallback; returns false if short. Throws DataError if corrupt.
  bool try_fetch(const Draw& d, int64_t* out, DecodeScratch& scratch, std::vector<int64_t>& tmp) const;
  void check_count(const Source& src, size_t shard) const;

  DatasetOptions opt_;
  std::vector<Source> sources_;
  std::unique_ptr<StreamPlanner> planner_;
  mutable std::atomic<int64_t> skipped_short_{0}, skipped_corrupt_{0};
};

}  // namespace openlm::data
