#include "openlm_cpp/train/metrics.h"

#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "openlm_cpp/checkpoint/atomic_file.h"
#include "openlm_cpp/core/error.h"
#include "openlm_cpp/core/log.h"
#include "openlm_cpp/train/tb_writer.h"

namespace openlm {
namespace {

class JsonlSink : public MetricsSink {
 public:
  JsonlSink(const std::string& path, int64_t resume_step) : path_(path) {
    if (resume_step >= 0 && std::filesystem::exists(path)) {
      // Keep lines up to the checkpoint's step; rewrite atomically.
      std::ifstream in(path);
      std::string line, kept;
      while (std::getline(in, line)) {
        if (line.empty()) continue;
        try {
          if (nlohmann::json::parse(line).value("step", int64_t{0}) > resume_step) continue;
        } catch (const nlohmann::json::exception&) {
          continue;  // a torn last line from a crash
        }
        kept += line + "\n";
      }
      openlm::fs::write_file_atomic(path, kept);
    }
    out_.open(path, std::ios::app);
    if (!out_) throw_errno("cannot open metrics file", path);
  }
  void log(const nlohmann::json& m) override {
    out_ << m.dump() << "\n";
    out_.flush();
    if (!out_) throw_errno("cannot write metrics file", path_);
  }

 private:
  std::string path_;
  std::ofstream out_;
};

std::string eta_text(double s) {
  if (!(s >= 0) || s > 1e8) return "-";
  int64_t t = static_cast<int64_t>(s);
  return t >= 3600 ? fmt::format("{}h{:02d}m", t / 3600, (t % 3600) / 60) : fmt::format("{}m{:02d}s", t / 60, t % 60);
}

class ConsoleSink : public MetricsSink {
 public:
  ConsoleSink(int64_t every, int64_t last) : every_(every), last_(last) {}
  void log(const nlohmann::json& m) override {
    int64_t step = m.at("step");
    if (m.value("kind", "") == "eval") {  // every evaluation is shown
      log::info("eval {:>6}/{} | {} | loss {:.4f} | ppl {:.2f} | {} tokens", step, last_, m.at("source").get<std::string>(),
                m.at("loss").get<double>(), m.at("ppl").get<double>(), m.value("tokens", int64_t{0}));
      return;
    }
    if (step % every_ != 0 && step != last_ && step != 1) return;
    std::string mfu = m.contains("mfu") ? fmt::format(" mfu {:.1f}%", 100.0 * m["mfu"].get<double>()) : "";
    log::info("step {:>6}/{} | loss {:.4f} | lr {:.3e} | grad {:.3f} | {:.0f} tok/s{} | eta {}", step, last_,
              m.at("loss").get<double>(), m.at("lr").get<double>(), m.value("grad_norm", 0.0),
              m.at("tokens_per_s").get<double>(), mfu, eta_text(m.value("eta_s", -1.0)));
  }

 private:
  int64_t every_, last_;
};

class TensorBoardSink : public MetricsSink {
 public:
  explicit TensorBoardSink(const std::string& dir) : w_(dir) {}
  void log(const nlohmann::json& m) override {
    std::vector<std::pair<std::string, double>> vals;
    // Evaluation records: eval/<source>/<key> (loss, ppl, tokens, sequences); training: train/<key>.
    const bool eval = m.value("kind", "") == "eval";
    const std::string prefix = eval ? "eval/" + m.at("source").get<std::string>() + "/" : "train/";
    for (auto& [k, v] : m.items())
      if (k != "step" && v.is_number()) vals.emplace_back(prefix + k, v.get<double>());
    w_.add_scalars(vals, m.at("step").get<int64_t>());
  }

 private:
  tb::TbWriter w_;
};

}  // namespace

std::unique_ptr<MetricsSink> make_jsonl_sink(const std::string& path, int64_t resume_step) {
  return std::make_unique<JsonlSink>(path, resume_step);
}
std::unique_ptr<MetricsSink> make_console_sink(int64_t every, int64_t last) {
  return std::make_unique<ConsoleSink>(every, last);
}
std::unique_ptr<MetricsSink> make_tensorboard_sink(const std::string& dir) {
  return std::make_unique<TensorBoardSink>(dir);
}

}  // namespace openlm
