#pragma once
// Running the `openlm` binary from the science tests (header-only, torch-free).
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace openlm::science_test {

/// The binary under test: $OPENLM_TEST_BIN when set (e.g. a build without the feature, to show a
/// test fails without it), else this build's openlm.
inline std::string bin() {
  const char* e = std::getenv("OPENLM_TEST_BIN");
  return e && *e ? e : OPENLM_CLI;
}

inline std::string q(const std::string& s) {
  std::string r = "'";
  for (char c : s) r += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return r + "'";
}

struct Result {
  int rc = -1;
  std::string out;  ///< stdout + stderr
};

/// Runs a /bin/sh command line (OMP_NUM_THREADS=1 unless set) under `timeout`.
inline Result sh(const std::string& cmd, int timeout_s = 120) {
  const std::string full = "OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} timeout -s KILL " + std::to_string(timeout_s) +
                           " sh -c " + q(cmd) + " 2>&1";
  Result r;
  FILE* p = ::popen(full.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int st = ::pclose(p);
  r.rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

inline std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline bool has(const std::string& s, const std::string& what) { return s.find(what) != std::string::npos; }

/// A PNG: its 8-byte signature and more than a header's worth of bytes.
inline bool is_png(const std::string& path) {
  const std::string b = slurp(path);
  return b.size() > 1000 && b.compare(0, 8, "\x89PNG\r\n\x1a\n") == 0;
}

inline std::string fresh_dir(const std::string& name) {
  const auto d = std::filesystem::temp_directory_path() / ("openlm_science_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d.string();
}

}  // namespace openlm::science_test
