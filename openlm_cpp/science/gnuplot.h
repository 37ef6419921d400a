#pragma once
/// Pictures through gnuplot (Debian: gnuplot-nox), which is run as a program: each plot writes its
/// data and a script next to the PNG's temporary name, runs `gnuplot SCRIPT` and renames the PNG
/// into place, so a failed plot never leaves a half-written picture.
#include <string>
#include <vector>

#include "openlm_cpp/science/scaling_fit.h"

namespace openlm::science {

/// The gnuplot program: $OPENLM_GNUPLOT when set (a path or a name looked up on PATH), else
/// `gnuplot` on PATH. Throws openlm::Error naming what was looked for and how to install it.
std::string find_gnuplot();

/// Writes `script` to a temporary file and runs it with gnuplot; the script must write `png_tmp`
/// (its `set output`), which then replaces `png`. Throws openlm::Error with gnuplot's output on
/// failure or when no non-empty PNG came out.
void run_gnuplot(const std::string& script, const std::string& png_tmp, const std::string& png);

/// Text safe inside a gnuplot double-quoted string.
std::string gp_quote(const std::string& s);

struct LadderPlot {
  std::vector<Point> points;
  std::vector<std::string> labels;  ///< one per point ("" for none)
  PowerLawFit fit;
  LogLogFit loglog;
  double next_compute = 0;          ///< the prediction's compute (0: none drawn)
  std::string title;
};
/// Loss against compute on log axes: the points, the power-law fit, the log-log line and the
/// predicted loss at the next scale (fit and line drawn out to it).
void plot_ladder(const LadderPlot& p, const std::string& png);

struct Curve {
  std::string label;
  std::vector<std::pair<double, double>> xy;
};
/// Line plot of several curves (e.g. loss against step for several runs).
void plot_curves(const std::vector<Curve>& curves, const std::string& xlabel, const std::string& ylabel,
                 const std::string& title, bool log_x, bool log_y, const std::string& png);

}  // namespace openlm::science
