#pragma once
/// Reading what runs wrote (metrics.jsonl) and what users give (results CSV), fitting, and
/// writing the ladder's outputs: ladder.csv, ladder.json, ladder.png (docs/LADDERS.md).
#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

#include "openlm_cpp/science/scaling_fit.h"

namespace openlm::science {

/// The JSON objects of a metrics.jsonl, in order. A line that does not parse is a DataError
/// naming FILE:LINE, except a torn last line (a run killed mid-write), which is skipped.
std::vector<nlohmann::json> read_jsonl(const std::string& path);

struct EvalRecord {
  int64_t step = 0;
  double loss = 0;
};
/// The last `{"kind": "eval", "source": SOURCE, ...}` record of RUN_DIR/metrics.jsonl; nullopt
/// when the file or such a record does not exist.
std::optional<EvalRecord> last_eval(const std::string& run_dir, const std::string& source);

/// (compute, loss) rows of a CSV with a header row naming at least `compute` and `loss` (any order,
/// other columns ignored; a `name` column labels the points). Rows with an empty loss are skipped
/// (runs not finished); anything else unparsable is an Error naming FILE:LINE and the column.
struct Results {
  std::vector<Point> points;
  std::vector<std::string> labels;
};
Results read_results_csv(const std::string& path);

/// Both fits and the prediction at the next scale, as ladder.json's "fit", "loglog" and
/// "prediction" objects (residuals listed per point, in input order, with the labels).
struct FitReport {
  PowerLawFit fit;
  LogLogFit loglog;
  double next_compute = 0;
};
FitReport fit_results(const Results& r);
nlohmann::json fit_json(const Results& r, const FitReport& f);

/// Writes `j` to PATH atomically (temporary file + rename), pretty-printed.
void write_json_file(const std::string& path, const nlohmann::json& j);
/// Writes `text` to PATH atomically.
void write_text_file(const std::string& path, const std::string& text);

/// ladder.png in `dir` from the results and their fit (gnuplot; throws when it is missing).
void write_ladder_png(const std::string& dir, const Results& r, const FitReport& f, const std::string& title);

}  // namespace openlm::science
