#pragma once
/// Validation during training (recipe `eval:`, OpenLM's --val-data): the mean next-token loss of
/// fixed held-out sequences, computed the same way as `openlm eval` and identical for any world
/// size and sharding strategy.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "openlm_cpp/core/config.h"

namespace openlm {

class Transformer;
namespace parallel {
class Communicator;
}
namespace data {
struct Manifest;
}

/// The sequences of a token file: whitespace-separated ids, one sequence (>= 2 ids) per line. An
/// empty line, a single id or a word that is not an integer is a DataError naming FILE:LINE.
std::vector<std::vector<int64_t>> read_token_file(const std::string& path);

/// Streams the first `max_sequences` (0 = all) sequences of a manifest's shards, in manifest
/// order, to fn(ids, label) (label: the shard and member, for messages); returns how many. A
/// shard whose sequence count differs from the manifest's, or a manifest without sequences, is a
/// DataError naming it.
int64_t for_each_manifest_sequence(const data::Manifest& manifest, int64_t max_sequences,
                                   const std::function<void(const std::vector<int64_t>&, const std::string&)>& fn);
/// The same, collected (manifest read from `path`).
std::vector<std::vector<int64_t>> read_manifest_sequences(const std::string& path, int64_t max_sequences = 0);

struct ValidationResult {
  std::string source;
  double loss = 0;      ///< summed next-token cross entropy / scored tokens
  double ppl = 0;       ///< exp(loss)
  int64_t tokens = 0;   ///< scored targets (length - 1 per sequence)
  int64_t sequences = 0;
};

class Validator {
 public:
  /// Reads every source now (a bad source fails the run before step 1): manifests and token files
  /// take their first eval.max_sequences sequences; "default_corpus:heldout" is `heldout_manifest`.
  /// Every sequence must hold 2 .. seq_len + 1 ids below vocab_size (DataError naming the source
  /// and the sequence otherwise; `openlm eval` windows longer ones).
  Validator(const EvalConfig& cfg, const std::string& heldout_manifest, int64_t seq_len, int64_t vocab_size,
            int64_t batch_size);

  bool empty() const { return sources_.empty(); }

  /// Collective over `comm` (null: one process). Batches of up to batch_size consecutive
  /// equal-length sequences are dealt round-robin to the ranks; every rank runs the same number of
  /// forward passes (sharded weights are gathered in lock step); per-batch sums are combined in
  /// batch order, so every world size gives bit-identical results. Computes in fp32 (bf16 weights
  /// are used as they are), without gradients; restores the model's training mode and compute dtype.
  std::vector<ValidationResult> run(Transformer& model, parallel::Communicator* comm) const;

 private:
  struct Source {
    std::string name;
    std::vector<std::vector<int64_t>> sequences;
    std::vector<std::pair<std::size_t, std::size_t>> batches;  ///< [begin, end) into sequences
  };
  std::vector<Source> sources_;
};

}  // namespace openlm
