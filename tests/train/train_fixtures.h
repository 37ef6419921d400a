#pragma once
// Shared fixtures: a tiny recipe and synthetic native shards with a learnable pattern.
#include <nlohmann/json.hpp>

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

}  // namespace openlm::testing
