#include "openlm_cpp/science/gnuplot.h"

#include <fmt/format.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "openlm_cpp/core/error.h"

namespace fs = std::filesystem;

namespace openlm::science {
namespace {

std::string sh_quote(const std::string& s) {
  std::string r = "'";
  for (char c : s) r += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return r + "'";
}

/// Full precision for numbers gnuplot reads back (%.17g round-trips a double).
std::string num(double v) { return fmt::format("{:.17g}", v); }

/// Explicit y tics for a log axis spanning less than a decade, where gnuplot would label none:
/// about six evenly spaced round values (step 1, 2 or 5 x 10^k).
std::string log_axis_tics(double lo, double hi) {
  if (!(lo > 0) || hi / lo >= 10) return "";
  const double raw = (hi - lo) / 6, mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double step = raw / mag < 1.5 ? mag : raw / mag < 3.5 ? 2 * mag : raw / mag < 7.5 ? 5 * mag : 10 * mag;
  std::string t;
  for (double v = std::ceil(lo / step) * step; v <= hi; v += step)
    t += fmt::format("{}\"{:g}\" {:.12g}", t.empty() ? "" : ", ", v, v);
  return t.empty() ? "" : "set ytics (" + t + ")\n";
}

const char* kInstall =
    "install it (Debian/Ubuntu: apt-get install gnuplot-nox; scripts/setup.sh does) or point $OPENLM_GNUPLOT at it";

}  // namespace

std::string gp_quote(const std::string& s) {
  std::string r;
  for (char c : s) {
    if (c == '"' || c == '\\') r += '\\';
    r += (c == '\n' || c == '\r') ? ' ' : c;
  }
  return r;
}

std::string find_gnuplot() {
  const char* env = std::getenv("OPENLM_GNUPLOT");
  const std::string want = env && *env ? env : "gnuplot";
  const std::string how = env && *env ? "$OPENLM_GNUPLOT='" + want + "'" : "'gnuplot' on PATH";
  if (want.find('/') != std::string::npos) {
    if (::access(want.c_str(), X_OK) == 0) return want;
  } else if (const char* path = std::getenv("PATH")) {
    std::stringstream ss(path);
    std::string dir;
    while (std::getline(ss, dir, ':')) {
      const std::string p = (dir.empty() ? std::string(".") : dir) + "/" + want;
      if (::access(p.c_str(), X_OK) == 0 && !fs::is_directory(p)) return p;
    }
  }
  throw Error("gnuplot not found (looked for " + how + "): the plot needs it; " + kInstall);
}

void run_gnuplot(const std::string& script, const std::string& png_tmp, const std::string& png) {
  const std::string gnuplot = find_gnuplot();
  const std::string script_path = png_tmp + ".gp";
  {
    std::ofstream f(script_path);
    if (!(f << script)) throw_errno("cannot write gnuplot script", script_path);
  }
  std::error_code ec;
  fs::remove(png_tmp, ec);
  const std::string cmd = sh_quote(gnuplot) + " " + sh_quote(script_path) + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) throw_errno("cannot run gnuplot", gnuplot);
  std::string out;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int st = ::pclose(p);
  fs::remove(script_path, ec);
  const bool ok = st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
  if (!ok || !fs::exists(png_tmp) || fs::file_size(png_tmp) == 0) {
    fs::remove(png_tmp, ec);
    throw Error("gnuplot (" + gnuplot + ") failed to write " + png + (ok ? " (no output)" : "") +
                (out.empty() ? std::string() : ":\n" + out));
  }
  fs::rename(png_tmp, png, ec);
  if (ec) throw IoError("cannot rename '" + png_tmp + "' to '" + png + "': " + ec.message());
}

void plot_ladder(const LadderPlot& p, const std::string& png) {
  const std::string tmp = png + ".tmp";
  double lo = INFINITY, hi = 0;
  for (auto& q : p.points) lo = std::min(lo, q.compute), hi = std::max(hi, q.compute);
  if (p.next_compute > 0) hi = std::max(hi, p.next_compute);
  // y: the losses and the prediction with a margin (gnuplot's own log range would span decades).
  double ylo = INFINITY, yhi = 0;
  for (auto& q : p.points) ylo = std::min(ylo, q.loss), yhi = std::max(yhi, q.loss);
  if (p.next_compute > 0) ylo = std::min(ylo, p.fit.predict(p.next_compute));
  std::ostringstream s;
  s << "set terminal pngcairo size 960,680 enhanced font \",11\"\n"
    << "set output \"" << gp_quote(tmp) << "\"\n"
    << "set logscale xy\nset grid xtics ytics mxtics mytics lc rgb \"#dddddd\"\n"
    << "set format x \"10^{%L}\"\n"
    << "set xlabel \"training compute C (FLOPs)\"\nset ylabel \"final validation loss\"\n"
    << "set title \"" << gp_quote(p.title) << "\" noenhanced\n"
    << "set key top right\nset samples 400\n"
    << "set xrange [" << num(lo / 1.6) << ":" << num(hi * 1.6) << "]\n"
    << "set yrange [" << num(ylo / 1.12) << ":" << num(yhi * 1.12) << "]\n"
    << log_axis_tics(ylo / 1.12, yhi * 1.12);
  s << "$points << EOD\n";
  for (std::size_t i = 0; i < p.points.size(); ++i) {
    const std::string label = i < p.labels.size() ? p.labels[i] : std::string();
    s << num(p.points[i].compute) << " " << num(p.points[i].loss) << " \"" << gp_quote(label) << "\"\n";
  }
  s << "EOD\n";
  s << "E = " << num(p.fit.E) << "\nlnA = " << (p.fit.A > 0 ? num(std::log(p.fit.A)) : std::string("-1e300"))
    << "\nalpha = " << num(p.fit.alpha) << "\na = " << num(p.loglog.a) << "\nb = " << num(p.loglog.b) << "\n"
    << "f(x) = E + exp(lnA - alpha * log(x))\ng(x) = exp(a + b * log(x))\n";
  if (p.next_compute > 0) s << "$pred << EOD\n" << num(p.next_compute) << " " << num(p.fit.predict(p.next_compute)) << "\nEOD\n";
  s << "plot $points using 1:2 with points pt 7 ps 1.6 lc rgb \"#1f77b4\" title \"runs\", \\\n"
    << "     $points using 1:2:3 with labels offset char 0,1.2 noenhanced notitle, \\\n"
    << "     f(x) with lines lw 2 lc rgb \"#d62728\" title \""
    << gp_quote(fmt::format("L = {:.4g} + {:.4g} C^{{-{:.4g}}}", p.fit.E, p.fit.A, p.fit.alpha)) << "\", \\\n"
    << "     g(x) with lines lw 1.5 dt 2 lc rgb \"#7f7f7f\" title \""
    << gp_quote(fmt::format("ln L = {:.4g} {:+.4g} ln C", p.loglog.a, p.loglog.b)) << "\"";
  if (p.next_compute > 0) {
    const double L = p.fit.predict(p.next_compute);
    s << ", \\\n     $pred using 1:2 with points pt 6 ps 2.4 lw 2 lc rgb \"#d62728\" title \""
      << gp_quote(fmt::format("next scale: C = {:.3g}, predicted L = {:.4f}", p.next_compute, L)) << "\"";
  }
  s << "\n";
  run_gnuplot(s.str(), tmp, png);
}

void plot_curves(const std::vector<Curve>& curves, const std::string& xlabel, const std::string& ylabel,
                 const std::string& title, bool log_x, bool log_y, const std::string& png) {
  const std::string tmp = png + ".tmp";
  std::ostringstream s;
  s << "set terminal pngcairo size 960,620 enhanced font \",11\"\n"
    << "set output \"" << gp_quote(tmp) << "\"\n"
    << "set grid lc rgb \"#dddddd\"\nset key top right noenhanced\n"
    << "set xlabel \"" << gp_quote(xlabel) << "\" noenhanced\nset ylabel \"" << gp_quote(ylabel) << "\" noenhanced\n"
    << "set title \"" << gp_quote(title) << "\" noenhanced\n";
  if (log_x) s << "set logscale x\n";
  if (log_y) s << "set logscale y\n";
  for (std::size_t i = 0; i < curves.size(); ++i) {
    s << "$c" << i << " << EOD\n";
    for (auto& [x, y] : curves[i].xy) s << num(x) << " " << num(y) << "\n";
    s << "EOD\n";
  }
  s << "plot ";
  for (std::size_t i = 0; i < curves.size(); ++i) {
    const bool few = curves[i].xy.size() < 20;  // a handful of eval points: mark each one
    s << (i ? ", \\\n     " : "") << "$c" << i << " using 1:2 with " << (few ? "linespoints pt 7" : "lines")
      << " lw 1.5 title \"" << gp_quote(curves[i].label) << "\"";
  }
  s << "\n";
  run_gnuplot(s.str(), tmp, png);
}

}  // namespace openlm::science
