#pragma once
// Helpers shared by the data loader tests: temporary directories and synthetic shard sets.
#include <cstdint>
#include <string>
#include <vector>

namespace openlm::data::test {

/// A fresh empty directory under <build>/test_tmp (kept for inspection after a failure).
std::string temp_dir(const std::string& tag);

/// Token t of global sequence g (same rule as make_openlm_shards.py).
inline int64_t token_of(int64_t g, int64_t t) { return t == 0 ? g : (g * 31 + t) % 997; }

/// Writes `shards` shards of `per_shard` sequences of `len` tokens (token_of(start + i, t)) as
/// native (.olmtok) or OpenLM tar (.json.gz) shards plus manifest.jsonl into dir. Returns the
/// manifest path.
std::string write_synthetic(const std::string& dir, bool native, int shards, int per_shard, int len,
                            int64_t start = 0);

/// Runs the Python shard writer (make_openlm_shards.py) with extra arguments; returns the manifest.
std::string python_shards(const std::string& dir, const std::string& args);

/// Runs a shell command; returns its exit status and captures stdout+stderr into out.
int run(const std::string& cmd, std::string* out = nullptr);

std::string read_file(const std::string& path);
/// Every sequence of a manifest's shards, in order; throws when a shard holds another number of
/// sequences than its manifest line says.
std::vector<std::vector<int64_t>> read_all_sequences(const std::string& manifest);
void write_file(const std::string& path, const std::string& bytes);

}  // namespace openlm::data::test
