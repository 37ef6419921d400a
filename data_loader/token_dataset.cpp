#include "data_loader/token_dataset.h"

#include <algorithm>

#include "openlm_cpp/core/error.h"
#include "openlm_cpp/core/log.h"

namespace openlm::data {

TokenDataset::TokenDataset(const DatasetOptions& opt) : opt_(opt) {
  if (opt.sources.empty()) throw ConfigError("", "data.manifests", 0, "no data manifests configured");
  if (opt.sample_len < 2) throw ConfigError("", "model.seq_len", 0, "seq_len must be at least 1");
  std::vector<int64_t> sizes;
  std::vector<double> weights;
  for (const auto& sc : opt.sources) {
    if (!(sc.weight > 0))
      throw ConfigError("", "data.manifests.weight", 0, "manifest '" + sc.path + "': weight must be > 0");
    std::string p = sc.path;
    if (!p.empty() && p[0] != '/' && !opt.base_dir.empty()) p = opt.base_dir + "/" + p;
    Source src;
    src.manifest = read_manifest(p);
    src.weight = sc.weight;
    src.prefix.push_back(0);
    for (const auto& e : src.manifest.entries) {
      auto r = open_shard(e, max_member_bytes(opt.sample_len));  // bounds gzip bombs per member
      int64_t fixed = r->fixed_length();
      if (fixed >= 0 && fixed < opt.sample_len)
        throw DataError("manifest '" + p + "': " + r->describe(0) + " stores sequences of " + std::to_string(fixed) +
                        " tokens but the model needs seq_len + 1 = " + std::to_string(opt.sample_len));
      const std::string made_with = r->tokenizer();
      if (!opt.tokenizer_id.empty() && !made_with.empty() && made_with != opt.tokenizer_id)
        throw DataError("manifest '" + p + "': shard '" + r->path() + "' was made with tokenizer '" + made_with +
                        "' but the run's " + opt.tokenizer_label + " is '" + opt.tokenizer_id +
                        "': its token ids mean other text. Train with the tokenizer the shards were made with, or "
                        "re-tokenize the data with this one (openlm prepare-data --tokenizer ...)");
      src.shards.push_back(std::move(r));
      src.prefix.push_back(src.prefix.back() + e.num_sequences);
    }
    if (src.prefix.back() == 0) throw DataError("manifest '" + p + "' lists no sequences");
    src.checked.reset(new std::atomic<bool>[src.shards.size()]);
    for (size_t i = 0; i < src.shards.size(); ++i) src.checked[i] = false;
    sizes.push_back(src.prefix.back());
    weights.push_back(sc.weight);
    sources_.push_back(std::move(src));
  }
  // native shards are validated now (cheap: the header is mapped); tar shards on first use
  for (auto& src : sources_)
    for (size_t i = 0; i < src.shards.size(); ++i)
      if (src.shards[i]->format() == ShardFormat::Native) check_count(src, i);
  planner_ = std::make_unique<StreamPlanner>(sizes, weights, opt.seed, opt.replacement, opt.stop_at_epoch_end);
}

void TokenDataset::check_count(const Source& src, size_t shard) const {
  if (src.checked[shard].load(std::memory_order_acquire)) return;
  int64_t actual = src.shards[shard]->size();
  int64_t claimed = src.manifest.entries[shard].num_sequences;
  if (actual != claimed) {
    std::string msg = "manifest '" + src.manifest.path + "' says shard '" + src.manifest.entries[shard].shard +
                      "' has " + std::to_string(claimed) + " sequences but " + src.shards[shard]->path() +
                      " holds " + std::to_string(actual);
    if (!opt_.skip_corrupt) throw DataError(msg);
    bool expected = false;
    if (src.checked[shard].compare_exchange_strong(expected, true))
      log::warn("{} (skip_corrupt: missing sequences are skipped)", msg);
    return;
  }
  src.checked[shard].store(true, std::memory_order_release);
}

bool TokenDataset::try_fetch(const Draw& d, int64_t* out, DecodeScratch& scratch, std::vector<int64_t>& tmp) const {
  const Source& src = sources_[static_cast<size_t>(d.source)];
  size_t shard = static_cast<size_t>(std::upper_bound(src.prefix.begin(), src.prefix.end(), d.item) -
                                     src.prefix.begin() - 1);
  int64_t idx = d.item - src.prefix[shard];
  ShardReader& r = *src.shards[shard];
  check_count(src, shard);
  const int64_t L = opt_.sample_len, V = opt_.vocab_size;
  int64_t fixed = r.fixed_length();
  if (fixed >= 0) {
    int64_t off = fixed > L ? static_cast<int64_t>(planner_->crop_offset(d, static_cast<uint64_t>(fixed - L))) : 0;
    r.read_fixed(idx, off, L, out);
    if (V > 0) {
      for (int64_t t = 0; t < L; ++t)
        if (out[t] >= V)
          throw DataError(r.describe(idx) + ": token " + std::to_string(off + t) + " has id " + std::to_string(out[t]) +
                          " >= vocab_size " + std::to_string(V));
    }
    return true;
  }
  r.read(idx, tmp, scratch);
  int64_t n = static_cast<int64_t>(tmp.size());
  if (n < L) return false;
  int64_t off = n > L ? static_cast<int64_t>(planner_->crop_offset(d, static_cast<uint64_t>(n - L))) : 0;
  for (int64_t t = 0; t < L; ++t) {
    int64_t v = tmp[static_cast<size_t>(off + t)];
    if (V > 0) {
      if (v < 0) v = ((v % V) + V) % V;  // Python's modulo, as OpenLM applies it
      if (v >= V)
        throw DataError(r.describe(idx) + ": token " + std::to_string(off + t) + " has id " + std::to_string(v) +
                        " >= vocab_size " + std::to_string(V));
    } else if (v < 0) {
      throw DataError(r.describe(idx) + ": negative token id " + std::to_string(v) + " and no vocab_size to wrap it");
    }
    out[t] = v;
  }
  return true;
}

void TokenDataset::fetch(const Draw& d, int64_t* out, DecodeScratch& scratch, std::vector<int64_t>& tmp) const {
  const Source& src = sources_[static_cast<size_t>(d.source)];
  // give up after this many consecutive unusable draws: the data is systematically bad
  const int64_t n = std::min<int64_t>(src.prefix.back(), kMaxConsecutiveSkips);
  for (int64_t t = 0; t < n; ++t) {
    Draw dd = t == 0 ? d : planner_->draw(d.source, d.k + t);
    try {
      if (try_fetch(dd, out, scratch, tmp)) return;
      int64_t c = ++skipped_short_;
      if (c <= 5 || (c & (c - 1)) == 0)
        log::info("source '{}': skipped a member shorter than {} tokens ({} so far)", src.manifest.path,
                  opt_.sample_len, c);
    } catch (const DataError& e) {
      if (!opt_.skip_corrupt) throw DataError("source '" + src.manifest.path + "': " + e.what());
      int64_t c = ++skipped_corrupt_;
      if (c <= 10 || (c & (c - 1)) == 0)
        log::warn("skip_corrupt: skipped record ({} so far): {}", c, e.what());
    }
  }
  throw DataError("source '" + src.manifest.path + "': no usable sequence of " + std::to_string(opt_.sample_len) +
                  " tokens in " + std::to_string(n) + " consecutive draws (all short or corrupt)");
}

}  // namespace openlm::data
