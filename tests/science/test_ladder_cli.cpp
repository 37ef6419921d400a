// `openlm ladder fit`, `openlm ladder --dry-run / --emit-slurm` and `openlm plot` through the
// binary, as a user runs them; a missing gnuplot is a clear error that still leaves ladder.json.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "cli_util.h"

namespace fs = std::filesystem;
using namespace openlm::science_test;

namespace {

const std::string kSrc = OPENLM_SOURCE_DIR;

/// A results CSV in an unusual column order with an extra column: L = 1.8 + A C^-0.3, noise 0.3%.
std::string write_results(const std::string& dir) {
  const double E = 1.8, alpha = 0.3, A = 2.0 * std::pow(1e15, alpha);
  std::ofstream f(dir + "/results.csv");
  f << "loss,notes,compute,name\n";
  for (int i = 0; i < 7; ++i) {
    const double c = 1e15 * std::pow(10.0, i * 0.5);
    f << (E + A * std::pow(c, -alpha)) * (1 + 0.003 * std::sin(1.3 * i)) << ",\"x, y\"," << c << ",s" << i << "\n";
  }
  f << ",unfinished run,1e19,s7\n";  // no loss yet: skipped
  return dir + "/results.csv";
}

}  // namespace

TEST(LadderCli, FitWritesJsonAndPng) {
  const std::string d = fresh_dir("fit");
  const auto r = sh(q(bin()) + " ladder fit " + q(write_results(d)) + " --out " + q(d + "/out"));
  ASSERT_EQ(r.rc, 0) << r.out;
  const auto j = nlohmann::json::parse(slurp(d + "/out/ladder.json"));
  EXPECT_NEAR(j["fit"]["E"].get<double>(), 1.8, 0.1);
  EXPECT_NEAR(j["fit"]["alpha"].get<double>(), 0.3, 0.05);
  EXPECT_GT(j["fit"]["A"].get<double>(), 0);
  EXPECT_EQ(j["fit"]["residuals"].size(), 7u);
  EXPECT_EQ(j["points"].size(), 7u);
  EXPECT_EQ(j["points"][0]["name"], "s0");
  EXPECT_LT(j["loglog"]["b"].get<double>(), 0);
  EXPECT_GT(j["prediction"]["compute"].get<double>(), 1e18);
  EXPECT_TRUE(is_png(d + "/out/ladder.png")) << r.out;
  EXPECT_FALSE(fs::exists(d + "/out/ladder.png.tmp"));
}

TEST(LadderCli, FitRefusesBadCsvNamingFileAndColumn) {
  const std::string d = fresh_dir("fitbad");
  std::ofstream(d + "/a.csv") << "flops,loss\n1,2\n2,1.9\n3,1.8\n";
  auto r = sh(q(bin()) + " ladder fit " + q(d + "/a.csv") + " --out " + q(d + "/o"));
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_TRUE(has(r.out, d + "/a.csv") && has(r.out, "'compute'")) << r.out;
  std::ofstream(d + "/b.csv") << "compute,loss\n1,2\n2,abc\n3,1.8\n";
  r = sh(q(bin()) + " ladder fit " + q(d + "/b.csv") + " --out " + q(d + "/o"));
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_TRUE(has(r.out, d + "/b.csv:3") && has(r.out, "'loss'")) << r.out;
  std::ofstream(d + "/c.csv") << "compute,loss\n1,2\n2,1.9\n";
  r = sh(q(bin()) + " ladder fit " + q(d + "/c.csv") + " --out " + q(d + "/o"));
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_TRUE(has(r.out, "at least 3")) << r.out;
  EXPECT_FALSE(fs::exists(d + "/o/ladder.json"));
}

TEST(LadderCli, MissingGnuplotIsAClearErrorAndJsonIsStillWritten) {
  const std::string d = fresh_dir("nognuplot");
  const auto r = sh("OPENLM_GNUPLOT=/nonexistent/gnuplot " + q(bin()) + " ladder fit " + q(write_results(d)) +
                    " --out " + q(d + "/out"));
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_TRUE(has(r.out, "gnuplot not found") && has(r.out, "gnuplot-nox")) << r.out;
  EXPECT_TRUE(nlohmann::json::parse(slurp(d + "/out/ladder.json")).contains("fit"));
  EXPECT_FALSE(fs::exists(d + "/out/ladder.png"));
}

TEST(LadderCli, DryRunPrintsDclmBudgets) {
  const auto r = sh(q(bin()) + " ladder " + q(kSrc + "/recipes/ladders/dclm.yaml") + " --dry-run");
  ASSERT_EQ(r.rc, 0) << r.out;
  for (const char* s : {"411616256", "8232325120", "28795904000", "143979520000", "55918643200", "137788211200",
                        "275576422400"})
    EXPECT_TRUE(has(r.out, s)) << s << "\n" << r.out;
}

TEST(LadderCli, EmitSlurmWritesOneScriptAndRecipePerRun) {
  const std::string d = fresh_dir("slurm");
  const auto r = sh(q(bin()) + " ladder " + q(kSrc + "/recipes/ladders/dclm.yaml") + " --out " + q(d) + " --emit-slurm");
  ASSERT_EQ(r.rc, 0) << r.out;
  for (const char* run : {"79m_1x", "411m_1x", "7b_2x"}) {
    const std::string s = slurp(d + "/slurm/" + run + ".sbatch");
    EXPECT_TRUE(has(s, "#SBATCH --job-name=dclm-" + std::string(run))) << s;
    EXPECT_TRUE(has(s, "train " + d + "/runs/" + run + "/recipe.yaml")) << s;
    EXPECT_TRUE(has(slurp(d + "/slurm/submit_all.sh"), "sbatch " + d + "/slurm/" + run + ".sbatch"));
  }
  // The written recipe is a complete train recipe with the ladder's budget and resume.
  const std::string recipe = d + "/runs/411m_1x/recipe.yaml";
  EXPECT_TRUE(has(slurp(recipe), "\"train_num_tokens\": 8232325120")) << slurp(recipe);
  const auto mi = sh(q(bin()) + " model-info " + q(recipe));
  EXPECT_EQ(mi.rc, 0) << mi.out;
  EXPECT_TRUE(has(mi.out, "411665408")) << mi.out;  // our count: with the qk-norm gains
  EXPECT_FALSE(fs::exists(d + "/ladder.json"));    // nothing trained, nothing fitted
}

TEST(LadderCli, UsageErrors) {
  auto r = sh(q(bin()) + " ladder " + q(kSrc + "/recipes/ladders/micro.yaml"));
  EXPECT_EQ(r.rc, 2) << r.out;
  EXPECT_TRUE(has(r.out, "--out")) << r.out;
  r = sh(q(bin()) + " ladder fit");
  EXPECT_EQ(r.rc, 2) << r.out;
  r = sh(q(bin()) + " ladder /nonexistent.yaml --out /tmp/x");
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_TRUE(has(r.out, "/nonexistent.yaml") && has(r.out, "not found")) << r.out;
}

TEST(Plot, WritesPngsFromMetrics) {
  const std::string d = fresh_dir("plot");
  for (const char* run : {"a", "b"}) {
    fs::create_directories(d + "/" + run);
    std::ofstream f(d + "/" + run + "/metrics.jsonl");
    for (int s = 1; s <= 30; ++s)
      f << nlohmann::json{{"step", s}, {"loss", 8.0 / std::sqrt(s) + (run[0] == 'b')}, {"lr", 1e-3 * s / 30},
                          {"tokens", 512 * s}}.dump()
        << "\n";
    for (int s : {10, 20, 30})
      f << nlohmann::json{{"kind", "eval"}, {"step", s}, {"source", "heldout"}, {"loss", 7.0 / std::sqrt(s)},
                          {"ppl", 1.0}, {"tokens", 100}, {"sequences", 4}}.dump()
        << "\n";
  }
  for (const std::string args : {"--metric loss", "--metric lr --x tokens", "--metric eval --x tokens --log-y"}) {
    const std::string png = d + "/out/p" + std::to_string(args.size()) + ".png";
    const auto r = sh(q(bin()) + " plot " + q(d + "/a") + " " + q(d + "/b/metrics.jsonl") + " --out " + q(png) + " " + args);
    ASSERT_EQ(r.rc, 0) << args << "\n" << r.out;
    EXPECT_TRUE(is_png(png)) << args;
  }
}

TEST(Plot, Errors) {
  const std::string d = fresh_dir("plotbad");
  fs::create_directories(d + "/r");
  std::ofstream(d + "/r/metrics.jsonl") << "{\"step\": 1, \"loss\": 3.0, \"tokens\": 10}\n";
  auto r = sh(q(bin()) + " plot " + q(d + "/r") + " --out " + q(d + "/x.png") + " --metric eval");
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_TRUE(has(r.out, "no eval records")) << r.out;
  r = sh(q(bin()) + " plot " + q(d + "/nothere") + " --out " + q(d + "/x.png"));
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_TRUE(has(r.out, "nothere")) << r.out;
  r = sh(q(bin()) + " plot " + q(d + "/r") + " --out " + q(d + "/x.png") + " --metric grad");
  EXPECT_EQ(r.rc, 2) << r.out;
  r = sh("OPENLM_GNUPLOT=/nonexistent/gnuplot " + q(bin()) + " plot " + q(d + "/r") + " --out " + q(d + "/x.png"));
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_TRUE(has(r.out, "gnuplot not found")) << r.out;
  EXPECT_FALSE(fs::exists(d + "/x.png"));
}
