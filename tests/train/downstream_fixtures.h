#pragma once
// Shared by the downstream-evaluation tests (test_downstream_eval.cpp, test_downstream_scores.cpp):
// a tiny run trained on a letter cycle, two tokenizers, and helpers to drive `openlm eval`.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "train_fixtures.h"

namespace openlm::testing::downstream {

using nlohmann::json;

inline const std::string& bin() {
  static const std::string b = openlm_bin();
  return b;
}
constexpr int64_t kSeqLen = 24;

/// A byte-level BPE tokenizer.json without merges whose id of every byte is the byte's value: text
/// "abc" is ids 97 98 99, and " a" is two tokens (no prefix space needed).
std::string write_bytes_tokenizer(const std::string& path);
/// Sequences of kSeqLen + 1 letters cycling a..z (ids 97..122) from random starts.
std::string write_letter_shards(const std::string& dir, int64_t n);

struct Base {
  std::string root, run, bytes_tok, neox_tok;
};
/// One tiny run (d 32, 2 layers, seq 24, vocab 320: the byte tokenizer's 256 ids and the NeoX test
/// tokenizer's 297 fit) trained on the letter cycle, shared by every test of a binary.
const Base& base();

void write_jsonl(const std::string& path, const std::vector<json>& recs);
std::vector<json> read_jsonl(const std::string& path);
/// The last line of `out` parsed as JSON (null when it is not).
json last_json(const std::string& out);
/// `openlm eval SOURCE ARGS` (stdout alone into `out` when given).
Result eval(const std::string& source, const std::string& args, std::string* out = nullptr);
/// n letters cycling from 'a' + start.
std::string letters(int64_t start, int64_t n);

}  // namespace openlm::testing::downstream
