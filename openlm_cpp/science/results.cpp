#include "openlm_cpp/science/results.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "openlm_cpp/core/error.h"
#include "openlm_cpp/science/gnuplot.h"

namespace fs = std::filesystem;

namespace openlm::science {
namespace {

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r\n"), e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

/// One CSV record: commas separate fields; a field in double quotes may hold commas and "" quotes.
std::vector<std::string> split_csv(const std::string& line) {
  std::vector<std::string> out;
  std::string cur;
  bool quoted = false;
  for (std::size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') cur += '"', ++i;
      else if (c == '"') quoted = false;
      else cur += c;
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      out.push_back(trim(cur));
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(trim(cur));
  return out;
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

double parse_number(const std::string& v, const std::string& where, const std::string& col) {
  std::size_t pos = 0;
  double d = 0;
  try {
    d = std::stod(v, &pos);
  } catch (const std::exception&) {
    pos = 0;
  }
  if (v.empty() || pos != v.size() || !std::isfinite(d))
    throw Error(where + ": column '" + col + "': '" + v + "' is not a number");
  return d;
}

}  // namespace

std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw_errno("cannot open", path);
  std::vector<std::string> lines;
  for (std::string l; std::getline(f, l);) lines.push_back(l);
  std::vector<nlohmann::json> out;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (trim(lines[i]).empty()) continue;
    try {
      out.push_back(nlohmann::json::parse(lines[i]));
    } catch (const nlohmann::json::exception& e) {
      if (i + 1 == lines.size()) break;  // torn last line of a killed run
      throw DataError(path + ":" + std::to_string(i + 1) + ": not a JSON object: " + e.what());
    }
  }
  return out;
}

std::optional<EvalRecord> last_eval(const std::string& run_dir, const std::string& source) {
  const std::string path = (fs::path(run_dir) / "metrics.jsonl").string();
  if (!fs::exists(path)) return std::nullopt;
  std::optional<EvalRecord> r;
  for (auto& j : read_jsonl(path)) {
    if (!j.is_object() || j.value("kind", "") != "eval" || j.value("source", "") != source) continue;
    if (!j.contains("step") || !j["step"].is_number() || !j.contains("loss") || !j["loss"].is_number()) continue;
    r = EvalRecord{j["step"].get<int64_t>(), j["loss"].get<double>()};
  }
  return r;
}

Results read_results_csv(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw_errno("cannot open", path);
  std::string line;
  int lineno = 0;
  std::vector<std::string> header;
  while (header.empty() && std::getline(f, line)) {
    ++lineno;
    if (!trim(line).empty()) header = split_csv(line);
  }
  int ic = -1, il = -1, in = -1;
  for (std::size_t i = 0; i < header.size(); ++i) {
    const std::string h = lower(header[i]);
    if (h == "compute") ic = static_cast<int>(i);
    if (h == "loss") il = static_cast<int>(i);
    if (h == "name") in = static_cast<int>(i);
  }
  if (ic < 0 || il < 0)
    throw Error(path + (lineno ? ":" + std::to_string(lineno) : std::string()) +
                ": the header row must name the columns 'compute' and 'loss' (any order; other columns are ignored)");
  Results r;
  while (std::getline(f, line)) {
    ++lineno;
    if (trim(line).empty()) continue;
    const auto cells = split_csv(line);
    const std::string where = path + ":" + std::to_string(lineno);
    const auto cell = [&](int i) { return i < static_cast<int>(cells.size()) ? cells[static_cast<std::size_t>(i)] : std::string(); };
    if (cell(il).empty()) continue;  // a run without a result yet
    Point p{parse_number(cell(ic), where, "compute"), parse_number(cell(il), where, "loss")};
    if (!(p.compute > 0)) throw Error(where + ": column 'compute': must be > 0");
    if (!(p.loss > 0)) throw Error(where + ": column 'loss': must be > 0");
    r.points.push_back(p);
    r.labels.push_back(in >= 0 ? cell(in) : std::string());
  }
  return r;
}

FitReport fit_results(const Results& r) {
  FitReport f;
  f.fit = fit_power_law(r.points);
  f.loglog = fit_loglog(r.points);
  f.next_compute = next_scale_compute(r.points);
  return f;
}

nlohmann::json fit_json(const Results& r, const FitReport& f) {
  nlohmann::json points = nlohmann::json::array();
  for (std::size_t i = 0; i < r.points.size(); ++i) {
    const auto& p = r.points[i];
    points.push_back({{"name", r.labels[i]}, {"compute", p.compute}, {"loss", p.loss},
                      {"fit_loss", f.fit.predict(p.compute)}, {"residual", f.fit.residuals[i]},
                      {"loglog_loss", f.loglog.predict(p.compute)}, {"loglog_residual", f.loglog.residuals[i]}});
  }
  return {
      {"points", points},
      {"fit",
       {{"form", "L(C) = E + A * C^(-alpha)"}, {"E", f.fit.E}, {"A", f.fit.A}, {"alpha", f.fit.alpha},
        {"residuals", f.fit.residuals}, {"rmse", f.fit.rmse},
        {"residual", "ln L - ln Lhat (log space)"},
        {"method", "grid over alpha in [1e-4, 5] with the best E >= 0, A >= 0 for each, then Levenberg-Marquardt "
                   "on the log residuals (E >= 0 kept by projection)"},
        {"iterations", f.fit.iterations}}},
      {"loglog",
       {{"form", "ln L = a + b ln C"}, {"a", f.loglog.a}, {"b", f.loglog.b}, {"residuals", f.loglog.residuals},
        {"rmse", f.loglog.rmse}}},
      {"prediction",
       {{"rule", "next compute = largest compute x (largest / second largest)"},
        {"compute", f.next_compute},
        {"loss", f.fit.predict(f.next_compute)},
        {"loglog_loss", f.loglog.predict(f.next_compute)}}},
  };
}

void write_text_file(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::trunc);
    if (!(f << text) || !(f.flush())) throw_errno("cannot write", tmp);
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) throw IoError("cannot rename '" + tmp + "' to '" + path + "': " + ec.message());
}

void write_json_file(const std::string& path, const nlohmann::json& j) { write_text_file(path, j.dump(2) + "\n"); }

void write_ladder_png(const std::string& dir, const Results& r, const FitReport& f, const std::string& title) {
  LadderPlot p;
  p.points = r.points;
  p.labels = r.labels;
  p.fit = f.fit;
  p.loglog = f.loglog;
  p.next_compute = f.next_compute;
  p.title = title;
  plot_ladder(p, (fs::path(dir) / "ladder.png").string());
}

}  // namespace openlm::science
