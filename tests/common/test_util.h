#pragma once
// Small helpers shared by test files (header-only, no torch).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace openlm::test_util {

/// A fresh directory <tmp>/openlm_<prefix>_<name>_<pid>.
inline std::string fresh_dir(const std::string& prefix, const std::string& name) {
  auto d = std::filesystem::temp_directory_path() / ("openlm_" + prefix + "_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d.string();
}

/// Runs `cmd` through the shell; returns its stdout and stores its exit status (pclose's) in `rc`.
inline std::string run_command(const std::string& cmd, int& rc) {
  FILE* p = ::popen(cmd.c_str(), "r");
  EXPECT_NE(p, nullptr) << cmd;
  std::string out;
  char buf[4096];
  size_t n;
  while (p && (n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  rc = p ? ::pclose(p) : -1;
  return out;
}

/// Writes `script` to <dir>/<file> and runs it with Debian's /usr/bin/python3 (which has torch), or
/// with $OPENLM_REFERENCE_PYTHON when set (the peer tests run the same scripts on the project's
/// .venv torch 2.x: tests/peers); returns stdout+stderr and fails the test on a non-zero exit.
inline std::string run_python(const std::string& dir, const std::string& script, const std::string& args,
                              const std::string& file = "script.py") {
  const std::string py = dir + "/" + file;
  std::ofstream(py) << script;
  const char* env = std::getenv("OPENLM_REFERENCE_PYTHON");
  const std::string python = env && *env ? env : "/usr/bin/python3";
  int rc = 0;
  const std::string out = run_command(python + " " + py + " " + args + " 2>&1", rc);
  EXPECT_EQ(rc, 0) << "python failed:\n" << out;
  return out;
}

}  // namespace openlm::test_util
