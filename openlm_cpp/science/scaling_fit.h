#pragma once
/// Scaling-law fits of final loss against training compute (torch-free):
///   saturating power law  L(C) = E + A * C^(-alpha)   (E >= 0, A > 0)
///   plain log-log line    ln L = a + b * ln C
/// Both minimise squared residuals in log space, r_i = ln L_i - ln Lhat(C_i) (a relative error,
/// so a run at loss 2 and one at loss 6 weigh the same). docs/LADDERS.md describes the method.
#include <cstddef>
#include <string>
#include <vector>

namespace openlm::science {

struct Point {
  double compute = 0;  ///< training FLOPs (any positive unit works; the fit is scale-free)
  double loss = 0;
};

struct PowerLawFit {
  double E = 0, A = 0, alpha = 0;
  std::vector<double> residuals;  ///< ln L_i - ln(E + A C_i^-alpha), in input order
  double rmse = 0;                ///< sqrt(mean residual^2), log space
  int iterations = 0;             ///< Levenberg-Marquardt iterations after the grid start
  double predict(double c) const;
};

struct LogLogFit {
  double a = 0, b = 0;            ///< ln L = a + b ln C (b < 0 when loss falls with compute)
  std::vector<double> residuals;  ///< ln L_i - (a + b ln C_i)
  double rmse = 0;
  double predict(double c) const;
};

/// Throws openlm::Error when fewer than `min_points` distinct compute values, or a compute or loss
/// that is not finite and > 0 (the message names the row, 1-based in input order).
void check_points(const std::vector<Point>& pts, std::size_t min_points, const std::string& what);

/// Needs >= 3 distinct compute values (3 parameters). Deterministic: a grid over alpha with the
/// best (E >= 0, A > 0) for each, then Levenberg-Marquardt from the best grid point with E kept
/// >= 0 (projected), alpha in (0, 5].
PowerLawFit fit_power_law(const std::vector<Point>& pts);
/// Ordinary least squares on (ln C, ln L); needs >= 2 distinct compute values.
LogLogFit fit_loglog(const std::vector<Point>& pts);

/// The compute of "the next scale": the largest compute times the ratio of the two largest
/// distinct computes (the ladder's own step, continued once).
double next_scale_compute(const std::vector<Point>& pts);

}  // namespace openlm::science
