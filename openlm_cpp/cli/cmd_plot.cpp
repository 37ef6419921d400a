// `openlm plot RUN [RUN...] --out FILE.png [--x step|tokens] [--metric loss|lr|eval] [--log-y]`
// Curves of one or several runs from RUN/metrics.jsonl, drawn by gnuplot (docs/LADDERS.md, "Pictures").
#include <filesystem>
#include <map>

#include "openlm_cpp/cli/command.h"
#include "openlm_cpp/core/log.h"
#include "openlm_cpp/science/gnuplot.h"
#include "openlm_cpp/science/results.h"

namespace fs = std::filesystem;

namespace {

struct Args {
  std::vector<std::string> runs;
  std::string out, x = "step", metric = "loss", title;
  bool log_y = false;
};

/// Training records carry no "kind"; eval records are {"kind": "eval", "source": ..., ...}.
bool is_train(const nlohmann::json& j) { return j.is_object() && !j.contains("kind") && j.contains("step"); }

std::vector<openlm::science::Curve> curves_of(const std::string& run, const Args& a) {
  const fs::path p = fs::is_directory(run) ? fs::path(run) / "metrics.jsonl" : fs::path(run);
  if (!fs::exists(p)) throw openlm::Error("plot: " + p.string() + ": no such file (RUN is a run directory or its metrics.jsonl)");
  const std::string label = (fs::is_directory(run) ? fs::path(run) : p.parent_path()).lexically_normal().filename().string();
  const auto recs = openlm::science::read_jsonl(p.string());
  std::map<int64_t, double> tokens_at;  // step -> training tokens so far (for --x tokens)
  for (auto& j : recs)
    if (is_train(j) && j.contains("tokens") && j["tokens"].is_number()) tokens_at[j["step"].get<int64_t>()] = j["tokens"].get<double>();
  // source -> (step -> value); a resumed run may repeat steps: the last record wins.
  std::map<std::string, std::map<int64_t, double>> series;
  for (auto& j : recs) {
    if (a.metric == "eval") {
      if (!j.is_object() || j.value("kind", "") != "eval" || !j.contains("step") || !j.contains("loss")) continue;
      series[j.value("source", "eval")][j["step"].get<int64_t>()] = j["loss"].get<double>();
    } else if (is_train(j) && j.contains(a.metric) && j[a.metric].is_number()) {
      series[""][j["step"].get<int64_t>()] = j[a.metric].get<double>();
    }
  }
  if (series.empty())
    throw openlm::Error("plot: " + p.string() + " has no " +
                        (a.metric == "eval" ? std::string("eval records (the run has no eval.val_data)") : "'" + a.metric + "' values"));
  std::vector<openlm::science::Curve> out;
  for (auto& [source, pts] : series) {
    openlm::science::Curve c;
    c.label = series.size() > 1 || a.metric == "eval" ? label + " " + source : label;
    for (auto& [step, v] : pts) {
      if (a.x == "step") {
        c.xy.emplace_back(static_cast<double>(step), v);
      } else if (auto it = tokens_at.find(step); it != tokens_at.end()) {
        c.xy.emplace_back(it->second, v);
      }
    }
    if (c.xy.empty()) throw openlm::Error("plot: " + p.string() + ": no training record gives the tokens at the steps of '" + c.label + "'");
    out.push_back(std::move(c));
  }
  return out;
}

openlm::cli::Registrar reg("plot", [](CLI::App& root) {
  auto a = std::make_shared<Args>();
  auto* sub = root.add_subcommand("plot", "Draw the loss, learning-rate or eval curves of runs (RUN/metrics.jsonl) into a PNG (gnuplot)");
  sub->add_option("runs", a->runs, "run directories (or their metrics.jsonl files)")->required();
  sub->add_option("--out", a->out, "the PNG to write")->required();
  sub->add_option("--x", a->x, "x axis: step or tokens")->check(CLI::IsMember({"step", "tokens"}))->capture_default_str();
  sub->add_option("--metric", a->metric, "loss, lr (training records) or eval (validation loss per source)")
      ->check(CLI::IsMember({"loss", "lr", "eval"}))
      ->capture_default_str();
  sub->add_option("--title", a->title, "picture title (default: the metric)");
  sub->add_flag("--log-y", a->log_y, "logarithmic y axis");
  sub->callback([a] {
    std::vector<openlm::science::Curve> curves;
    for (auto& r : a->runs)
      for (auto& c : curves_of(r, *a)) curves.push_back(std::move(c));
    const std::string ylabel = a->metric == "eval" ? "validation loss" : a->metric == "lr" ? "learning rate" : "training loss";
    const fs::path out = fs::absolute(a->out);
    if (out.has_parent_path()) fs::create_directories(out.parent_path());
    openlm::science::plot_curves(curves, a->x == "step" ? "step" : "tokens", ylabel, a->title.empty() ? ylabel : a->title,
                                 false, a->log_y, out.string());
    openlm::log::info("plot: wrote {}", out.string());
  });
});

}  // namespace
