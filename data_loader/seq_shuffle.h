#pragma once
/// The global shuffle of `openlm prepare-data`: sequence g (in input order) gets the key
/// shuffle_key(seed, g) and sequences are emitted in increasing (key, g) order. That order is a
/// function of the seed and the sequence count only, so it is the same however the sequences were
/// produced. Up to a memory budget the sequences are sorted in memory; beyond it, sorted runs are
/// spilled to temporary files and k-way merged: the same total order, hence byte-identical output.
/// Torch-free.
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace openlm::data {

/// A 64-bit seeded hash of a sequence index (splitmix64 finalizer over seed and index).
uint64_t shuffle_key(uint64_t seed, uint64_t index);

class SequenceShuffler {
 public:
  /// `seq_tokens` tokens per sequence; `budget_bytes` bounds the buffered sequences (at least one
  /// sequence is always buffered); run files go to `tmp_dir` (created by the caller) and are
  /// deleted after the merge.
  SequenceShuffler(int64_t seq_tokens, uint64_t seed, uint64_t budget_bytes, std::string tmp_dir);
  ~SequenceShuffler();
  SequenceShuffler(const SequenceShuffler&) = delete;
  SequenceShuffler& operator=(const SequenceShuffler&) = delete;

  /// Adds the next sequence (index = number added so far). Spills a run when the buffer is full.
  void add(const uint32_t* tokens);
  /// Calls sink(tokens) for every sequence in shuffled order, then removes the run files.
  void finish(const std::function<void(const uint32_t*)>& sink);

  int64_t count() const { return count_; }
  /// Run files written (0: everything was shuffled in memory).
  int64_t runs() const { return runs_written_; }

 private:
  struct Entry {
    uint64_t key, index;
    size_t slot;  // sequence position in buf_
  };
  void sort_buffer();
  void spill();

  int64_t L_;
  uint64_t seed_;
  size_t capacity_;  // sequences held in memory
  std::string tmp_dir_;
  std::vector<uint32_t> buf_;
  std::vector<Entry> entries_;
  std::vector<std::string> runs_;
  int64_t count_ = 0, runs_written_ = 0;
};

}  // namespace openlm::data
