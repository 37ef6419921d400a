// The scaling-law fits: exact and noisy recovery of known (E, A, alpha), the E >= 0 bound, the
// log-log line, the next-scale rule and refused inputs.
#include <gtest/gtest.h>

#include <cmath>

#include "openlm_cpp/core/error.h"
#include "openlm_cpp/science/scaling_fit.h"

using namespace openlm::science;

namespace {

/// Points of L = E + A C^-alpha at computes spread over 4 decades (the DCLM ladder's range),
/// times (1 + noise * sin(1.7 i + 0.3)): deterministic, zero-mean-ish, at most `noise` relative.
std::vector<Point> synthetic(double E, double A, double alpha, double noise, int n = 8, double c0 = 1e17) {
  std::vector<Point> pts;
  for (int i = 0; i < n; ++i) {
    const double c = c0 * std::pow(10.0, 4.0 * i / (n - 1));
    const double L = (E + A * std::pow(c, -alpha)) * (1 + noise * std::sin(1.7 * i + 0.3));
    pts.push_back({c, L});
  }
  return pts;
}

}  // namespace

TEST(ScalingFit, RecoversExactParameters) {
  // A such that the reducible part is 3 at the smallest compute and 0.1 at the largest.
  const double E = 1.7, alpha = 0.34, A = 3.0 * std::pow(1e17, alpha);
  const auto f = fit_power_law(synthetic(E, A, alpha, 0.0));
  EXPECT_NEAR(f.E, E, 1e-6);
  EXPECT_NEAR(f.alpha, alpha, 1e-6);
  EXPECT_NEAR(f.A / A, 1.0, 1e-5);
  EXPECT_LT(f.rmse, 1e-9);
  ASSERT_EQ(f.residuals.size(), 8u);
  for (double r : f.residuals) EXPECT_LT(std::fabs(r), 1e-9);
}

TEST(ScalingFit, RecoversParametersFromNoisyPoints) {
  const double E = 2.1, alpha = 0.28, A = 2.5 * std::pow(1e17, alpha);
  const auto pts = synthetic(E, A, alpha, 0.004, 10);
  const auto f = fit_power_law(pts);
  EXPECT_NEAR(f.E, E, 0.08);
  EXPECT_NEAR(f.alpha, alpha, 0.04);
  // A and alpha trade off; the curve itself must be right where it was measured and one step out.
  for (double c : {1e17, 1e19, 1e21, 1e22}) {
    const double truth = E + A * std::pow(c, -alpha);
    EXPECT_NEAR(f.predict(c) / truth, 1.0, 0.01) << "at C = " << c;
  }
  EXPECT_LT(f.rmse, 0.004);
  EXPECT_GT(f.rmse, 0.0);
}

TEST(ScalingFit, DeterministicAndIndependentOfComputeUnit) {
  const double E = 1.9, alpha = 0.3, A = 2.0 * std::pow(1e17, alpha);
  auto pts = synthetic(E, A, alpha, 0.003);
  const auto a = fit_power_law(pts), b = fit_power_law(pts);
  EXPECT_EQ(a.E, b.E);
  EXPECT_EQ(a.A, b.A);
  EXPECT_EQ(a.alpha, b.alpha);
  for (auto& p : pts) p.compute /= 1e15;  // PF instead of FLOPs: same E and alpha, A rescaled
  const auto c = fit_power_law(pts);
  EXPECT_NEAR(c.E, a.E, 1e-6);
  EXPECT_NEAR(c.alpha, a.alpha, 1e-6);
  EXPECT_NEAR(c.A * std::pow(1e15, c.alpha) / a.A, 1.0, 1e-4);
}

TEST(ScalingFit, IrreducibleLossNeverNegative) {
  // A pure power law (E = 0) with a little noise pulls an unconstrained E below zero.
  const auto f = fit_power_law(synthetic(0.0, 50.0, 0.1, 0.002));
  EXPECT_GE(f.E, 0.0);
  EXPECT_NEAR(f.alpha, 0.1, 0.02);
  // Rising loss cannot go through a falling power law: the fit degrades to a constant, still E >= 0.
  std::vector<Point> up{{1, 2.0}, {10, 2.1}, {100, 2.2}, {1000, 2.3}};
  const auto g = fit_power_law(up);
  EXPECT_GE(g.E, 0.0);
  EXPECT_GE(g.A, 0.0);
  EXPECT_TRUE(std::isfinite(g.rmse));
}

TEST(ScalingFit, LogLogLine) {
  std::vector<Point> pts;
  for (double c : {1e10, 1e11, 1e12, 1e13}) pts.push_back({c, std::exp(3.0 - 0.05 * std::log(c))});
  const auto f = fit_loglog(pts);
  EXPECT_NEAR(f.a, 3.0, 1e-9);
  EXPECT_NEAR(f.b, -0.05, 1e-12);
  EXPECT_LT(f.rmse, 1e-12);
  EXPECT_NEAR(f.predict(1e14), std::exp(3.0 - 0.05 * std::log(1e14)), 1e-9);
}

TEST(ScalingFit, NextScaleContinuesTheLaddersStep) {
  EXPECT_DOUBLE_EQ(next_scale_compute({{1e18, 3}, {4e18, 2.9}, {1e19, 2.8}}), 1e19 * 2.5);
  EXPECT_THROW(next_scale_compute({{1e18, 3}, {1e18, 2.9}}), openlm::Error);
}

TEST(ScalingFit, RefusesTooFewOrBadPoints) {
  EXPECT_THROW(fit_power_law({{1, 3}, {2, 2.5}}), openlm::Error);
  EXPECT_THROW(fit_power_law({{1, 3}, {1, 2.9}, {2, 2.5}}), openlm::Error);  // 2 distinct computes
  try {
    fit_power_law({{1, 3}, {2, -1}, {3, 2}});
    FAIL();
  } catch (const openlm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("row 2: loss"), std::string::npos) << e.what();
  }
  EXPECT_THROW(fit_loglog({{0, 3}, {2, 2}}), openlm::Error);
  EXPECT_THROW(fit_loglog({{NAN, 3}, {2, 2}}), openlm::Error);
}
