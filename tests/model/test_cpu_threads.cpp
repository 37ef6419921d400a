// The OpenMP wait policy every LibTorch executable of ours chooses before its libraries start
// (openlm_cpp/core/runtime/omp_wait_policy.cpp): idle OpenMP workers sleep (spin count 0) when the
// process also carries OpenBLAS's own pthreads pool, and a user's explicit choice is kept. The
// checks run this test binary again in a child with a controlled environment and read what libgomp
// itself reports (OMP_DISPLAY_ENV=VERBOSE prints its GOMP_SPINCOUNT at start-up).
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "../common/test_util.h"

namespace {

bool pthreads_openblas() {
  auto f = reinterpret_cast<int (*)()>(dlsym(RTLD_DEFAULT, "openblas_get_parallel"));
  return f != nullptr && f() == 1;
}

/// Output of this binary's Probe test run in a child whose environment has none of the wait-policy
/// variables except `extra` (e.g. "OMP_WAIT_POLICY=ACTIVE").
std::string probe(const std::string& extra) {
  if (!std::filesystem::exists("/proc/self/exe")) return "no /proc";
  const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  const std::string cmd =
      "env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT -u OPENLM_SET_OMP_WAIT_POLICY -u OPENLM_KEEP_OMP_WAIT_POLICY "
      "OMP_DISPLAY_ENV=VERBOSE " + extra + " " + self + " --gtest_filter=CpuThreads.Probe 2>&1";
  int rc = 0;
  const std::string out = openlm::test_util::run_command(cmd, rc);
  EXPECT_EQ(rc, 0) << out;
  return out;
}

const char* env_or_dash(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "-";
}

}  // namespace

// Prints what the process sees; the tests below read it from a child.
TEST(CpuThreads, Probe) {
  std::printf("probe policy=%s set=%s pid=%d\n", env_or_dash("OMP_WAIT_POLICY"), env_or_dash("OPENLM_SET_OMP_WAIT_POLICY"),
              static_cast<int>(::getpid()));
}

TEST(CpuThreads, IdleOpenMpWorkersSleepOnlyWhenOpenBlasKeepsItsOwnThreads) {
  if (!std::filesystem::exists("/proc/self/exe")) GTEST_SKIP() << "no /proc: the program cannot execute itself again";
  const std::string out = probe("");
  if (pthreads_openblas()) {
    EXPECT_NE(out.find("probe policy=PASSIVE set=1"), std::string::npos) << out;
    EXPECT_NE(out.find("GOMP_SPINCOUNT = '0'"), std::string::npos) << "libgomp did not get the policy:\n" << out;
  } else {  // one thread pool (MKL or an OpenMP BLAS): nothing is changed
    EXPECT_NE(out.find("probe policy=- set=-"), std::string::npos) << out;
  }
}

TEST(CpuThreads, AUsersChoiceIsKept) {
  if (!std::filesystem::exists("/proc/self/exe")) GTEST_SKIP() << "no /proc";
  std::string out = probe("OMP_WAIT_POLICY=ACTIVE");
  EXPECT_NE(out.find("probe policy=ACTIVE set=-"), std::string::npos) << out;
  out = probe("GOMP_SPINCOUNT=1234");
  EXPECT_NE(out.find("probe policy=- set=-"), std::string::npos) << out;
  EXPECT_NE(out.find("GOMP_SPINCOUNT = '1234'"), std::string::npos) << out;
  out = probe("OPENLM_KEEP_OMP_WAIT_POLICY=1");
  EXPECT_NE(out.find("probe policy=- set=-"), std::string::npos) << out;
  EXPECT_EQ(out.find("GOMP_SPINCOUNT = '0'"), std::string::npos) << out;
}
