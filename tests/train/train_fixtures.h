#pragma once
// Shared fixtures: a tiny recipe and synthetic native shards with a learnable pattern.
#include <nlohmann/json.hpp>

#include <map>
#include <string>
#include <vector>

#include "openlm_cpp/core/config.h"

namespace openlm::testing {

/// Writes `n` sequences of seq_len+1 tokens where each token is the previous + 1 (mod vocab),
/// starting at a pseudo-random offset, as native shards + manifest.jsonl in `dir`.
std::string write_counting_shards(const std::string& dir, int64_t n, int64_t seq_len, int64_t vocab, int shards = 2);

/// A fresh temporary directory under the system temp dir.
std::string temp_dir(const std::string& name);

/// A tiny train recipe on the given manifest (model d=32, 2 layers, seq 16, vocab 64).
TrainConfig tiny_recipe(const std::string& manifest, const std::string& run_dir, int64_t steps);

/// The lines of <run_dir>/metrics.jsonl, parsed.
std::vector<nlohmann::json> read_metrics(const std::string& run_dir);

// ---- Driving the `openlm` binary the way a user does (the CLI tests) ----------------------------

/// The binary under test: $OPENLM_TEST_BIN when set (e.g. an unfixed build, to show that a test
/// fails without its fix), else this build's bin/openlm.
std::string openlm_bin();
/// `s` in single quotes for /bin/sh.
std::string q(const std::string& s);
/// A file's bytes ("" when it does not exist).
std::string slurp(const std::string& path);
bool has(const std::string& s, const std::string& what);

struct Result {
  int rc = -1;      ///< exit status, 128 + signal when killed
  std::string out;  ///< stdout + stderr
};
/// Runs `script` with /bin/sh (OMP_NUM_THREADS=1) under `timeout` so that a hang fails instead of
/// blocking; `stdout_only`, when given, receives stdout alone.
Result sh(const std::string& script, int timeout_s = 120, std::string* stdout_only = nullptr);

/// Every entry under `root` -> its bytes (files), "->target" (symlinks) or "<dir>".
std::map<std::string, std::string> snapshot(const std::string& root);

}  // namespace openlm::testing
