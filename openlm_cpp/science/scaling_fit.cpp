#include "openlm_cpp/science/scaling_fit.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <set>

#include "openlm_cpp/core/error.h"

namespace openlm::science {
namespace {

/// ln of the mean-free reference compute: the fit works on c = C / exp(mean ln C), so that
/// c^-alpha stays near 1 whatever unit (FLOPs ~1e20, or "1, 2, 4") the computes come in.
double log_ref(const std::vector<Point>& pts) {
  double s = 0;
  for (auto& p : pts) s += std::log(p.compute);
  return s / static_cast<double>(pts.size());
}

struct Normalized {
  std::vector<double> lc, ll;  ///< ln c_i (normalised), ln L_i
};

/// Sum of squared log residuals of E + a c^-alpha (infinite when the model is not positive).
double sse(const Normalized& n, double E, double a, double alpha) {
  double s = 0;
  for (std::size_t i = 0; i < n.lc.size(); ++i) {
    const double m = E + a * std::exp(-alpha * n.lc[i]);
    if (!(m > 0) || !std::isfinite(m)) return INFINITY;
    const double r = n.ll[i] - std::log(m);
    s += r * r;
  }
  return s;
}

/// For a fixed alpha, the (E >= 0, a >= 0) minimising sum w_i (L_i - E - a x_i)^2 with w_i = 1/L_i^2
/// (a relative error: a linear stand-in for the log residual, only used to seed the search).
std::array<double, 2> best_linear(const Normalized& n, double alpha) {
  double sw = 0, swx = 0, swxx = 0, swl = 0, swxl = 0, slog_gap = 0;
  for (std::size_t i = 0; i < n.lc.size(); ++i) {
    const double L = std::exp(n.ll[i]), x = std::exp(-alpha * n.lc[i]), w = 1.0 / (L * L);
    sw += w, swx += w * x, swxx += w * x * x, swl += w * L, swxl += w * x * L;
    slog_gap += n.ll[i] + alpha * n.lc[i];  // ln L_i - ln x_i
  }
  const double det = sw * swxx - swx * swx;
  double E = det != 0 ? (swl * swxx - swx * swxl) / det : -1;
  double a = det != 0 ? (sw * swxl - swx * swl) / det : -1;
  if (E < 0) {  // the bound binds: a pure power law, whose best a in log space is a geometric mean
    E = 0;
    a = std::exp(slog_gap / static_cast<double>(n.lc.size()));
  }
  if (a < 0) {  // loss does not fall with compute at this alpha: a constant
    a = 0;
    E = swl / sw;
  }
  return {E, a};
}

/// Solves the 3x3 system M x = v by Gaussian elimination with partial pivoting; false if singular.
bool solve3(std::array<std::array<double, 3>, 3> M, std::array<double, 3> v, std::array<double, 3>& x) {
  for (int c = 0; c < 3; ++c) {
    int piv = c;
    for (int r = c + 1; r < 3; ++r)
      if (std::fabs(M[r][c]) > std::fabs(M[piv][c])) piv = r;
    if (!(std::fabs(M[piv][c]) > 1e-300)) return false;
    std::swap(M[c], M[piv]);
    std::swap(v[c], v[piv]);
    for (int r = c + 1; r < 3; ++r) {
      const double f = M[r][c] / M[c][c];
      for (int k = c; k < 3; ++k) M[r][k] -= f * M[c][k];
      v[r] -= f * v[c];
    }
  }
  for (int c = 2; c >= 0; --c) {
    double s = v[c];
    for (int k = c + 1; k < 3; ++k) s -= M[c][k] * x[k];
    x[c] = s / M[c][c];
  }
  return true;
}

constexpr double kAlphaMin = 1e-4, kAlphaMax = 5.0;

}  // namespace

double PowerLawFit::predict(double c) const { return E + std::exp(std::log(A) - alpha * std::log(c)); }
double LogLogFit::predict(double c) const { return std::exp(a + b * std::log(c)); }

void check_points(const std::vector<Point>& pts, std::size_t min_points, const std::string& what) {
  std::set<double> distinct;
  for (std::size_t i = 0; i < pts.size(); ++i) {
    if (!(std::isfinite(pts[i].compute) && pts[i].compute > 0))
      throw Error(what + ": row " + std::to_string(i + 1) + ": compute must be finite and > 0");
    if (!(std::isfinite(pts[i].loss) && pts[i].loss > 0))
      throw Error(what + ": row " + std::to_string(i + 1) + ": loss must be finite and > 0");
    distinct.insert(pts[i].compute);
  }
  if (distinct.size() < min_points)
    throw Error(what + ": the fit needs at least " + std::to_string(min_points) + " distinct compute values (got " +
                std::to_string(distinct.size()) + ")");
}

PowerLawFit fit_power_law(const std::vector<Point>& pts) {
  check_points(pts, 3, "power-law fit");
  const double lref = log_ref(pts);
  Normalized n;
  for (auto& p : pts) n.lc.push_back(std::log(p.compute) - lref), n.ll.push_back(std::log(p.loss));

  // 1. Grid over alpha (log-spaced): every alpha gets its best (E, a); keep the lowest log SSE.
  double bE = 0, ba = 0, balpha = 1, best = INFINITY;
  constexpr int kGrid = 600;
  for (int g = 0; g <= kGrid; ++g) {
    const double alpha = kAlphaMin * std::pow(kAlphaMax / kAlphaMin, g / static_cast<double>(kGrid));
    const auto [E, a] = best_linear(n, alpha);
    const double s = sse(n, E, a, alpha);
    if (s < best) best = s, bE = E, ba = a, balpha = alpha;
  }
  // 2. Levenberg-Marquardt on the log residuals from there, projecting onto E >= 0, a >= 0 and
  //    alpha in [kAlphaMin, kAlphaMax] after each step.
  std::array<double, 3> p{bE, ba, balpha};
  double lambda = 1e-3;
  int it = 0;
  for (; it < 500; ++it) {
    std::array<std::array<double, 3>, 3> JtJ{};
    std::array<double, 3> Jtr{};
    for (std::size_t i = 0; i < n.lc.size(); ++i) {
      const double x = std::exp(-p[2] * n.lc[i]), m = p[0] + p[1] * x;
      const double r = n.ll[i] - std::log(m);
      const std::array<double, 3> J{-1.0 / m, -x / m, p[1] * x * n.lc[i] / m};  // d r / d(E, a, alpha)
      for (int u = 0; u < 3; ++u) {
        Jtr[u] += J[u] * r;
        for (int v = 0; v < 3; ++v) JtJ[u][v] += J[u] * J[v];
      }
    }
    bool improved = false;
    while (lambda < 1e12 && !improved) {
      auto M = JtJ;
      for (int u = 0; u < 3; ++u) M[u][u] += lambda * std::max(JtJ[u][u], 1e-12);
      std::array<double, 3> step{};
      if (!solve3(M, {-Jtr[0], -Jtr[1], -Jtr[2]}, step)) {
        lambda *= 4;
        continue;
      }
      std::array<double, 3> q{std::max(0.0, p[0] + step[0]), std::max(0.0, p[1] + step[1]),
                              std::clamp(p[2] + step[2], kAlphaMin, kAlphaMax)};
      const double s = sse(n, q[0], q[1], q[2]);
      if (s < best) {
        const double gain = best - s;
        p = q, improved = true, lambda = std::max(lambda / 3, 1e-12);
        const bool converged = gain <= 1e-14 * std::max(best, 1e-300) || gain < 1e-30;
        best = s;
        if (converged) lambda = 1e12;  // ends the outer loop below
      } else {
        lambda *= 4;
      }
    }
    if (!improved || lambda >= 1e12) break;
  }
  PowerLawFit f;
  f.E = p[0];
  f.alpha = p[2];
  f.A = p[1] * std::exp(p[2] * lref);  // a c^-alpha = a (C / Cref)^-alpha = (a Cref^alpha) C^-alpha
  f.iterations = it;
  double s = 0;
  for (auto& q : pts) {
    const double m = p[0] + p[1] * std::exp(-p[2] * (std::log(q.compute) - lref));
    f.residuals.push_back(std::log(q.loss) - std::log(m));
    s += f.residuals.back() * f.residuals.back();
  }
  f.rmse = std::sqrt(s / static_cast<double>(pts.size()));
  return f;
}

LogLogFit fit_loglog(const std::vector<Point>& pts) {
  check_points(pts, 2, "log-log fit");
  const double k = static_cast<double>(pts.size());
  double sx = 0, sy = 0;
  for (auto& p : pts) sx += std::log(p.compute), sy += std::log(p.loss);
  const double mx = sx / k, my = sy / k;
  double sxx = 0, sxy = 0;
  for (auto& p : pts) {
    const double dx = std::log(p.compute) - mx;
    sxx += dx * dx, sxy += dx * (std::log(p.loss) - my);
  }
  LogLogFit f;
  f.b = sxy / sxx;
  f.a = my - f.b * mx;
  double s = 0;
  for (auto& p : pts) {
    f.residuals.push_back(std::log(p.loss) - (f.a + f.b * std::log(p.compute)));
    s += f.residuals.back() * f.residuals.back();
  }
  f.rmse = std::sqrt(s / k);
  return f;
}

double next_scale_compute(const std::vector<Point>& pts) {
  std::set<double> c;
  for (auto& p : pts) c.insert(p.compute);
  if (c.size() < 2) throw Error("next scale: needs at least 2 distinct compute values");
  auto last = std::prev(c.end());
  return *last * (*last / *std::prev(last));
}

}  // namespace openlm::science
