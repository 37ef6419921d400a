#pragma once
/// Where per-step metrics go: metrics.jsonl, the console, TensorBoard. Each sink is small and
/// behind one interface so the trainer only calls `log`.
#include <nlohmann/json.hpp>

#include <memory>
#include <string>
#include <vector>

namespace openlm {

class MetricsSink {
 public:
  virtual ~MetricsSink() = default;
  /// A training record has at least step, loss, lr, grad_norm, tokens_per_s; an evaluation record
  /// has "kind": "eval", step, source, loss, ppl (TensorBoard tags eval/<source>/<key>).
  virtual void log(const nlohmann::json& m) = 0;
};

/// Appends one JSON object per step to <run_dir>/metrics.jsonl. On resume, lines for steps after
/// `resume_step` are dropped first so that every step appears once.
std::unique_ptr<MetricsSink> make_jsonl_sink(const std::string& path, int64_t resume_step);
/// One console line every `every` steps (and at `last_step`).
std::unique_ptr<MetricsSink> make_console_sink(int64_t every, int64_t last_step);
/// Scalars into TensorBoard event files under `dir`.
std::unique_ptr<MetricsSink> make_tensorboard_sink(const std::string& dir);

class MetricsFanout : public MetricsSink {
 public:
  void add(std::unique_ptr<MetricsSink> s) { sinks_.push_back(std::move(s)); }
  void log(const nlohmann::json& m) override {
    for (auto& s : sinks_) s->log(m);
  }

 private:
  std::vector<std::unique_ptr<MetricsSink>> sinks_;
};

}  // namespace openlm
