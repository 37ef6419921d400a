#include "data_loader/seq_shuffle.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <queue>

#include "openlm_cpp/core/error.h"

namespace openlm::data {
namespace {

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;

// Run file record: key (u64), index (u64), then L tokens (u32), native byte order (the files
// never leave this process).
void write_all(std::FILE* f, const void* p, size_t n, const std::string& path) {
  if (std::fwrite(p, 1, n, f) != n) throw_errno("cannot write shuffle run", path);
}

}  // namespace

uint64_t shuffle_key(uint64_t seed, uint64_t index) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull ^ (index + 0xD1B54A32D192ED03ull);
  for (int r = 0; r < 2; ++r) {  // two splitmix64 finalizer rounds: every bit of seed and index mixes
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
  }
  return z;
}

SequenceShuffler::SequenceShuffler(int64_t seq_tokens, uint64_t seed, uint64_t budget_bytes, std::string tmp_dir)
    : L_(seq_tokens), seed_(seed), tmp_dir_(std::move(tmp_dir)) {
  const uint64_t per_seq = static_cast<uint64_t>(L_) * sizeof(uint32_t) + sizeof(Entry);
  capacity_ = static_cast<size_t>(std::max<uint64_t>(1, budget_bytes / per_seq));
}

SequenceShuffler::~SequenceShuffler() {
  for (auto& r : runs_) std::remove(r.c_str());
}

void SequenceShuffler::add(const uint32_t* tokens) {
  if (entries_.size() == capacity_) spill();
  size_t slot = entries_.size();
  if (buf_.size() < (slot + 1) * static_cast<size_t>(L_)) buf_.resize((slot + 1) * static_cast<size_t>(L_));
  std::memcpy(buf_.data() + slot * static_cast<size_t>(L_), tokens, static_cast<size_t>(L_) * sizeof(uint32_t));
  uint64_t g = static_cast<uint64_t>(count_++);
  entries_.push_back({shuffle_key(seed_, g), g, slot});
}

void SequenceShuffler::sort_buffer() {
  std::sort(entries_.begin(), entries_.end(),
            [](const Entry& a, const Entry& b) { return a.key != b.key ? a.key < b.key : a.index < b.index; });
}

void SequenceShuffler::spill() {
  sort_buffer();
  std::string path = tmp_dir_ + "/run_" + std::to_string(runs_.size()) + ".bin";
  FilePtr f(std::fopen(path.c_str(), "wb"));
  if (!f) throw_errno("cannot create shuffle run", path);
  runs_.push_back(path);
  ++runs_written_;
  for (const Entry& e : entries_) {
    write_all(f.get(), &e.key, sizeof e.key, path);
    write_all(f.get(), &e.index, sizeof e.index, path);
    write_all(f.get(), buf_.data() + e.slot * static_cast<size_t>(L_), static_cast<size_t>(L_) * sizeof(uint32_t), path);
  }
  if (std::fflush(f.get()) != 0) throw_errno("cannot write shuffle run", path);
  entries_.clear();
}

void SequenceShuffler::finish(const std::function<void(const uint32_t*)>& sink) {
  const size_t L = static_cast<size_t>(L_);
  if (runs_.empty()) {  // everything fits: the in-memory sort is the whole shuffle
    sort_buffer();
    for (const Entry& e : entries_) sink(buf_.data() + e.slot * L);
    entries_.clear();
    return;
  }
  if (!entries_.empty()) spill();
  buf_.clear();
  buf_.shrink_to_fit();
  // k-way merge: one current record per run, a min-heap on (key, index). Each run file reads
  // through a stdio buffer sized so that all of them together stay near the budget.
  struct Head {
    uint64_t key, index;
    size_t run;
  };
  auto later = [](const Head& a, const Head& b) { return a.key != b.key ? a.key > b.key : a.index > b.index; };
  std::priority_queue<Head, std::vector<Head>, decltype(later)> heap(later);
  std::vector<FilePtr> files;
  std::vector<std::vector<uint32_t>> cur(runs_.size(), std::vector<uint32_t>(L));
  const size_t rec = 16 + L * sizeof(uint32_t);
  const size_t vbuf = std::max<size_t>(rec, std::min<size_t>(size_t(4) << 20, capacity_ * rec / runs_.size()));
  auto read_rec = [&](size_t r) -> bool {
    uint64_t kv[2];
    size_t got = std::fread(kv, 1, sizeof kv, files[r].get());
    if (got == 0 && std::feof(files[r].get())) return false;
    if (got != sizeof kv || std::fread(cur[r].data(), sizeof(uint32_t), L, files[r].get()) != L)
      throw DataError("shuffle run '" + runs_[r] + "' is truncated (was the temporary directory changed?)");
    heap.push({kv[0], kv[1], r});
    return true;
  };
  for (size_t r = 0; r < runs_.size(); ++r) {
    files.emplace_back(std::fopen(runs_[r].c_str(), "rb"));
    if (!files.back()) throw_errno("cannot open shuffle run", runs_[r]);
    std::setvbuf(files.back().get(), nullptr, _IOFBF, vbuf);
    read_rec(r);
  }
  while (!heap.empty()) {
    Head h = heap.top();
    heap.pop();
    sink(cur[h.run].data());
    read_rec(h.run);
  }
  files.clear();
  for (auto& r : runs_) std::remove(r.c_str());
  runs_.clear();
}

}  // namespace openlm::data
