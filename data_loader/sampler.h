#pragma once
/// The global sample order. Everything here is a pure function of (seed, source, epoch, position),
/// so no permutation is stored, every rank computes the same order without talking to the others,
/// and the order does not depend on the world size. Torch-free.
///
/// Stream: position p of the global stream picks a source by a seeded hash of p weighted by the
/// mixing weights (one source: always source 0), then takes that source's next draw k. Draw k of a
/// source with N sequences is, without replacement, item perm_{seed,s,e}(k mod N) of epoch
/// e = k / N (a keyed Feistel permutation, re-keyed every epoch); with replacement it is a seeded
/// hash of (s, k) mod N. The only state is the position and each source's draw count.
#include <cstdint>
#include <string>
#include <vector>

namespace openlm::data {

/// splitmix64 finaliser: a fast, well-mixed 64-bit hash.
uint64_t mix64(uint64_t x);

/// A bijection of [0, n) keyed by `key`: a balanced Feistel network over the smallest even power
/// of two >= n, with cycle walking (expected < 4 rounds of walking).
class KeyedPermutation {
 public:
  KeyedPermutation(uint64_t n, uint64_t key);
  uint64_t operator()(uint64_t i) const;
  uint64_t size() const { return n_; }

 private:
  uint64_t n_, key_;
  unsigned half_bits_;
  uint64_t half_mask_;
};

/// Position in the global stream: exactly what a checkpoint must store.
struct StreamState {
  int64_t position = 0;             ///< sequences drawn so far over all sources
  std::vector<int64_t> drawn;       ///< per source: draws so far (k)
};

/// One sequence of the stream.
struct Draw {
  int source = 0;
  int64_t k = 0;       ///< the source's draw number
  int64_t epoch = 0;   ///< k / N
  int64_t item = 0;    ///< index in [0, N) of the source's concatenated shards
};

class StreamPlanner {
 public:
  /// sizes[s] = sequences in source s; weights need not sum to 1. `stop_at_epoch_end`: a source
  /// whose first epoch is used up ends the stream instead of reshuffling.
  StreamPlanner(std::vector<int64_t> sizes, std::vector<double> weights, uint64_t seed, bool replacement,
                bool stop_at_epoch_end);
  /// Source chosen at global position p.
  int source_at(int64_t position) const;
  /// The k-th draw of source s.
  Draw draw(int s, int64_t k) const;
  /// Advances `st` by one sequence; returns false (st unchanged) when the stream has ended.
  bool next(StreamState& st, Draw& d) const;
  /// Fresh state (all zero).
  StreamState start() const;
  size_t num_sources() const { return sizes_.size(); }
  int64_t source_size(int s) const { return sizes_[static_cast<size_t>(s)]; }
  /// Seeded offset in [0, span] used to crop a longer sequence (deterministic per draw).
  uint64_t crop_offset(const Draw& d, uint64_t span) const;

 private:
  std::vector<int64_t> sizes_;
  std::vector<double> cum_;  ///< cumulative normalised weights
  uint64_t seed_;
  bool replacement_, stop_;
};

}  // namespace openlm::data
