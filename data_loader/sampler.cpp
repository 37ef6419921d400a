#include "data_loader/sampler.h"

#include "openlm_cpp/core/error.h"

namespace openlm::data {

uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

KeyedPermutation::KeyedPermutation(uint64_t n, uint64_t key) : n_(n), key_(mix64(key)) {
  unsigned bits = 0;
  while (bits < 64 && (uint64_t(1) << bits) < n) ++bits;
  if (bits % 2) ++bits;
  if (bits < 2) bits = 2;
  half_bits_ = bits / 2;
  half_mask_ = (uint64_t(1) << half_bits_) - 1;
}

uint64_t KeyedPermutation::operator()(uint64_t i) const {
  if (n_ <= 1) return 0;
  uint64_t x = i;
  do {  // cycle walking: re-apply until the value lands inside [0, n)
    uint64_t l = x >> half_bits_, r = x & half_mask_;
    for (uint64_t round = 0; round < 6; ++round) {
      uint64_t f = mix64(r ^ (key_ + round * 0x632be59bd9b4e019ULL)) & half_mask_;
      uint64_t nl = r;
      r = l ^ f;
      l = nl;
    }
    x = (l << half_bits_) | r;
  } while (x >= n_);
  return x;
}

StreamPlanner::StreamPlanner(std::vector<int64_t> sizes, std::vector<double> weights, uint64_t seed,
                             bool replacement, bool stop_at_epoch_end)
    : sizes_(std::move(sizes)), seed_(seed), replacement_(replacement), stop_(stop_at_epoch_end) {
  if (sizes_.empty() || sizes_.size() != weights.size()) throw Error("StreamPlanner: bad sources");
  double total = 0;
  for (double w : weights) {
    if (!(w > 0)) throw Error("StreamPlanner: weights must be positive");
    total += w;
  }
  double c = 0;
  for (double w : weights) {
    c += w / total;
    cum_.push_back(c);
  }
  cum_.back() = 1.0;
}

int StreamPlanner::source_at(int64_t position) const {
  if (cum_.size() == 1) return 0;
  uint64_t h = mix64(mix64(seed_ ^ 0x5ca1ab1eULL) ^ static_cast<uint64_t>(position));
  double u = static_cast<double>(h >> 11) * (1.0 / 9007199254740992.0);  // [0, 1)
  for (size_t s = 0; s < cum_.size(); ++s)
    if (u < cum_[s]) return static_cast<int>(s);
  return static_cast<int>(cum_.size() - 1);
}

Draw StreamPlanner::draw(int s, int64_t k) const {
  Draw d;
  d.source = s;
  d.k = k;
  const int64_t n = sizes_[static_cast<size_t>(s)];
  d.epoch = k / n;
  uint64_t skey = mix64(seed_ * 0x9e3779b97f4a7c15ULL + static_cast<uint64_t>(s) + 1);
  if (replacement_) {
    d.item = static_cast<int64_t>(mix64(skey ^ mix64(static_cast<uint64_t>(k))) % static_cast<uint64_t>(n));
  } else {
    // seed + epoch re-keys the permutation each epoch (OpenLM reshuffles with seed + epoch)
    KeyedPermutation perm(static_cast<uint64_t>(n), skey + static_cast<uint64_t>(d.epoch));
    d.item = static_cast<int64_t>(perm(static_cast<uint64_t>(k % n)));
  }
  return d;
}

bool StreamPlanner::next(StreamState& st, Draw& d) const {
  int s = source_at(st.position);
  int64_t k = st.drawn[static_cast<size_t>(s)];
  if (stop_ && k >= sizes_[static_cast<size_t>(s)]) return false;
  d = draw(s, k);
  st.drawn[static_cast<size_t>(s)] = k + 1;
  ++st.position;
  return true;
}

StreamState StreamPlanner::start() const {
  StreamState st;
  st.drawn.assign(sizes_.size(), 0);
  return st;
}

uint64_t StreamPlanner::crop_offset(const Draw& d, uint64_t span) const {
  uint64_t h = mix64(mix64(seed_ ^ 0xc0ffeeULL) ^ mix64(static_cast<uint64_t>(d.source) << 48 ^
                                                         static_cast<uint64_t>(d.k)));
  return h % (span + 1);
}

}  // namespace openlm::data
