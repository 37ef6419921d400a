#include "data_loader/batch_source.h"

#include <ATen/ATen.h>
#include <ATen/Context.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <map>
#include <mutex>
#include <thread>

#include "data_loader/token_dataset.h"
#include "openlm_cpp/core/error.h"
#include "openlm_cpp/core/log.h"

namespace openlm::data {
namespace {

constexpr int kStateVersion = 1;

/// One micro-batch of this rank: the draws to decode and the stream states around its global batch.
struct Job {
  int64_t seq = 0;    ///< order of delivery
  int64_t batch = 0;  ///< global batch index g
  int64_t micro = 0;  ///< micro-batch index within g on this rank
  std::vector<Draw> draws;
  std::shared_ptr<const StreamState> before, after;
};

struct Result {
  at::Tensor tokens;
  std::exception_ptr error;
};

class ShardedBatchSource final : public BatchSource {
 public:
  using BatchSource::next;  // next(tokens, loss_mask): the interface's default (no mask)
  explicit ShardedBatchSource(const LoaderOptions& o) : opt_(o) {
    const auto& c = o.cfg;
    check_batch_layout(o);
    auto bad = [](const std::string& key, const std::string& what) { return ConfigError("", key, 0, what); };
    if (c.num_workers < 0 || c.num_workers > 256) throw bad("data.num_workers", "must be in [0, 256]");
    if (c.prefetch < 1) throw bad("data.prefetch", "must be at least 1");
    DatasetOptions d;
    d.sources = c.manifests;
    d.base_dir = o.base_dir;
    d.sample_len = o.seq_len + 1;
    d.vocab_size = o.vocab_size;
    d.skip_corrupt = c.skip_corrupt;
    d.replacement = c.replacement;
    d.stop_at_epoch_end = c.on_epoch_end == "stop";
    d.seed = o.seed;
    d.tokenizer_id = o.tokenizer_id;
    d.tokenizer_label = o.tokenizer_label;
    ds_ = std::make_unique<TokenDataset>(d);
    per_rank_ = o.global_batch_size / o.world_size;
    accum_ = per_rank_ / o.micro_batch_size;
    pin_ = at::hasCUDA();
    reset(ds_->planner().start(), 0, 0);
  }

  ~ShardedBatchSource() override { stop_workers(); }

  bool next(at::Tensor& tokens) override {
    if (workers_.empty()) return next_inline(tokens);
    std::unique_lock<std::mutex> lk(mu_);
    auto ready = [&] { return done_.count(consumed_) || (end_seq_ >= 0 && consumed_ >= end_seq_); };
    if (!ready()) {
      auto t0 = std::chrono::steady_clock::now();
      cv_done_.wait(lk, ready);
      wait_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    if (!done_.count(consumed_)) return false;
    Result r = std::move(done_[consumed_]);
    done_.erase(consumed_);
    Job meta = std::move(meta_[consumed_]);
    meta_.erase(consumed_);
    ++consumed_;
    delivered(meta);
    cv_work_.notify_all();
    lk.unlock();
    if (r.error) std::rethrow_exception(r.error);
    tokens = std::move(r.tokens);
    return true;
  }

  nlohmann::json state() const override {
    std::lock_guard<std::mutex> lk(mu_);
    nlohmann::json src = nlohmann::json::array();
    nlohmann::json epochs = nlohmann::json::array();
    for (size_t s = 0; s < ds_->num_sources(); ++s) {
      src.push_back({{"manifest", ds_->source_path(s)}, {"num_sequences", ds_->source_size(s)}});
      epochs.push_back(del_state_.drawn[s] / ds_->source_size(s));
    }
    return {{"version", kStateVersion},
            {"seed", opt_.seed},
            {"global_batch", del_batch_},
            {"global_batch_size", opt_.global_batch_size},
            {"position", del_state_.position},
            {"drawn", del_state_.drawn},
            {"epoch", epochs[0]},
            {"epochs", epochs},
            {"micro_done", del_micro_},
            {"layout", {{"world_size", opt_.world_size}, {"micro_batch_size", opt_.micro_batch_size}}},
            {"sources", src}};
  }

  void restore(const nlohmann::json& j) override {
    auto fail = [](const std::string& what) { return DataError("cannot restore data loader state: " + what); };
    try {
      if (j.at("version").get<int>() != kStateVersion) throw fail("unknown state version");
      if (j.at("seed").get<uint64_t>() != opt_.seed)
        throw fail("it was saved with seed " + std::to_string(j.at("seed").get<uint64_t>()) + ", this run has seed " +
                   std::to_string(opt_.seed));
      if (j.at("global_batch_size").get<int64_t>() != opt_.global_batch_size)
        throw fail("global_batch_size changed from " + j.at("global_batch_size").dump());
      const auto& src = j.at("sources");
      if (src.size() != ds_->num_sources()) throw fail("the number of data sources changed");
      for (size_t s = 0; s < src.size(); ++s)
        if (src[s].at("num_sequences").get<int64_t>() != ds_->source_size(s))
          throw fail("source " + std::to_string(s) + " ('" + ds_->source_path(s) + "') now has " +
                     std::to_string(ds_->source_size(s)) + " sequences, the state was saved with " +
                     src[s].at("num_sequences").dump());
      StreamState st;
      st.position = j.at("position").get<int64_t>();
      st.drawn = j.at("drawn").get<std::vector<int64_t>>();
      int64_t g = j.at("global_batch").get<int64_t>();
      int64_t micro_done = j.at("micro_done").get<int64_t>();
      if (st.drawn.size() != ds_->num_sources() || st.position != g * opt_.global_batch_size || g < 0)
        throw fail("inconsistent position");
      if (micro_done != 0) {
        const auto& lay = j.at("layout");
        if (lay.at("world_size").get<int>() != opt_.world_size ||
            lay.at("micro_batch_size").get<int64_t>() != opt_.micro_batch_size)
          throw fail("it was saved in the middle of a global batch; resume with the same world size and micro batch");
        if (micro_done >= accum_) throw fail("micro_done out of range");
      }
      stop_workers();
      reset(st, g, micro_done);
    } catch (const nlohmann::json::exception& e) {
      throw fail(std::string("malformed state: ") + e.what());
    }
  }

  double wait_seconds() const override {
    std::lock_guard<std::mutex> lk(mu_);
    return wait_s_;
  }

  nlohmann::json stats() const override {
    std::lock_guard<std::mutex> lk(mu_);
    nlohmann::json mix = nlohmann::json::array();
    double wsum = 0;
    for (size_t s = 0; s < ds_->num_sources(); ++s) wsum += ds_->source_weight(s);
    for (size_t s = 0; s < ds_->num_sources(); ++s) {
      double drawn = static_cast<double>(del_state_.drawn[s]);
      mix.push_back({{"manifest", ds_->source_path(s)},
                     {"target", ds_->source_weight(s) / wsum},
                     {"drawn", del_state_.drawn[s]},
                     {"achieved", del_state_.position ? drawn / static_cast<double>(del_state_.position) : 0.0}});
    }
    return {{"skipped_short", ds_->skipped_short()},
            {"skipped_corrupt", ds_->skipped_corrupt()},
            {"global_batches", del_batch_},
            {"sequences", del_state_.position},
            {"wait_seconds", wait_s_},
            {"mix", mix}};
  }

 private:
  /// Resets planning and delivery to the start of global batch g (skipping micro_done micro-batches
  /// of it) and starts the workers.
  void reset(const StreamState& st, int64_t g, int64_t micro_done) {
    plan_state_ = st;
    plan_batch_ = g;
    skip_micro_ = micro_done;
    del_state_ = st;
    del_batch_ = g;
    del_micro_ = micro_done;
    pending_.clear();
    done_.clear();
    meta_.clear();
    next_seq_ = consumed_ = 0;
    end_seq_ = -1;
    stop_ = false;
    int n = static_cast<int>(opt_.cfg.num_workers);
    for (int i = 0; i < n; ++i) workers_.emplace_back([this] { worker(); });
  }

  void stop_workers() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    cv_work_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  /// Plans global batch plan_batch_ into pending_ jobs (under mu_). Marks the end when the stream ends.
  void plan_batch() {
    auto before = std::make_shared<StreamState>(plan_state_);
    StreamState st = plan_state_;
    std::vector<Draw> mine;
    mine.reserve(static_cast<size_t>(per_rank_));
    const int64_t lo = opt_.rank * per_rank_, hi = lo + per_rank_;
    const auto& planner = ds_->planner();
    for (int64_t p = 0; p < opt_.global_batch_size; ++p) {
      Draw d;
      if (!planner.next(st, d)) {  // data ran out: the incomplete global batch is dropped
        end_seq_ = next_seq_;
        cv_done_.notify_all();
        return;
      }
      if (p >= lo && p < hi) mine.push_back(d);
    }
    auto after = std::make_shared<StreamState>(st);
    for (int64_t m = 0; m < accum_; ++m) {
      if (plan_batch_ == del_batch_ && m < skip_micro_) continue;
      Job j;
      j.seq = next_seq_++;
      j.batch = plan_batch_;
      j.micro = m;
      j.draws.assign(mine.begin() + m * opt_.micro_batch_size, mine.begin() + (m + 1) * opt_.micro_batch_size);
      j.before = before;
      j.after = after;
      pending_.push_back(std::move(j));
    }
    skip_micro_ = 0;
    plan_state_ = st;
    ++plan_batch_;
  }

  /// Takes the next job (under mu_); false when the stream has ended.
  bool take(Job& j) {
    if (pending_.empty() && end_seq_ < 0) plan_batch();
    if (pending_.empty()) return false;
    j = std::move(pending_.front());
    pending_.pop_front();
    return true;
  }

  Result build(const Job& j) {
    thread_local DecodeScratch scratch;
    thread_local std::vector<int64_t> tmp;
    Result r;
    try {
      const int64_t L = opt_.seq_len + 1;
      at::Tensor t = at::empty({opt_.micro_batch_size, L}, at::TensorOptions().dtype(at::kLong).pinned_memory(pin_));
      int64_t* p = t.data_ptr<int64_t>();
      for (size_t i = 0; i < j.draws.size(); ++i) ds_->fetch(j.draws[i], p + static_cast<int64_t>(i) * L, scratch, tmp);
      r.tokens = std::move(t);
    } catch (...) {
      r.error = std::current_exception();
    }
    return r;
  }

  void delivered(const Job& j) {
    if (j.micro + 1 == accum_) {
      del_state_ = *j.after;
      del_batch_ = j.batch + 1;
      del_micro_ = 0;
    } else {
      del_state_ = *j.before;
      del_batch_ = j.batch;
      del_micro_ = j.micro + 1;
    }
  }

  bool next_inline(at::Tensor& tokens) {
    Job j;
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (!take(j)) return false;
    }
    auto t0 = std::chrono::steady_clock::now();
    Result r = build(j);
    double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (r.error) std::rethrow_exception(r.error);
    std::lock_guard<std::mutex> lk(mu_);
    wait_s_ += dt;  // decoding inline blocks the caller just as waiting would
    delivered(j);
    tokens = std::move(r.tokens);
    return true;
  }

  void worker() {
    std::unique_lock<std::mutex> lk(mu_);
    while (true) {
      cv_work_.wait(lk, [&] {
        if (stop_) return true;
        bool more = !pending_.empty() || end_seq_ < 0;
        int64_t seq = pending_.empty() ? next_seq_ : pending_.front().seq;
        return more && seq < consumed_ + opt_.cfg.prefetch;
      });
      if (stop_) return;
      Job j;
      if (!take(j)) continue;
      lk.unlock();
      Result r = build(j);
      lk.lock();
      if (stop_) return;
      int64_t seq = j.seq;
      meta_[seq] = Job{seq, j.batch, j.micro, {}, j.before, j.after};
      done_[seq] = std::move(r);
      cv_done_.notify_all();
    }
  }

  LoaderOptions opt_;
  std::unique_ptr<TokenDataset> ds_;
  int64_t per_rank_ = 0, accum_ = 0;
  bool pin_ = false;

  mutable std::mutex mu_;
  std::condition_variable cv_work_, cv_done_;
  std::vector<std::thread> workers_;
  bool stop_ = false;
  // planning
  StreamState plan_state_;
  int64_t plan_batch_ = 0, skip_micro_ = 0;
  std::deque<Job> pending_;
  int64_t next_seq_ = 0, end_seq_ = -1;
  // results and delivery
  std::map<int64_t, Result> done_;
  std::map<int64_t, Job> meta_;
  int64_t consumed_ = 0;
  StreamState del_state_;
  int64_t del_batch_ = 0, del_micro_ = 0;
  double wait_s_ = 0;
};

}  // namespace

void check_batch_layout(const LoaderOptions& o) {
  auto bad = [](const std::string& key, const std::string& what) { return ConfigError("", key, 0, what); };
  if (o.seq_len <= 0) throw bad("model.seq_len", "seq_len must be positive");
  if (o.world_size <= 0 || o.rank < 0 || o.rank >= o.world_size)
    throw bad("parallel", "rank " + std::to_string(o.rank) + " outside world size " + std::to_string(o.world_size));
  if (o.global_batch_size <= 0 || o.micro_batch_size <= 0)
    throw bad("batch", "global_batch_size and micro_batch_size must be positive");
  if (o.global_batch_size % (o.micro_batch_size * o.world_size) != 0)
    throw bad("batch.global_batch_size",
              "global_batch_size " + std::to_string(o.global_batch_size) + " is not a multiple of micro_batch_size " +
                  std::to_string(o.micro_batch_size) + " x world_size " + std::to_string(o.world_size));
  if (o.cfg.on_epoch_end != "next_epoch" && o.cfg.on_epoch_end != "stop")
    throw bad("data.on_epoch_end", "must be next_epoch or stop, got '" + o.cfg.on_epoch_end + "'");
}

std::unique_ptr<BatchSource> make_batch_source(const LoaderOptions& opt) {
  return std::make_unique<ShardedBatchSource>(opt);
}

}  // namespace openlm::data
