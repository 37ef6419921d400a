#pragma once
/// The embedded default corpus: English text from Debian's fortunes packages, gathered on first
/// use (no third-party text lives in the repository), a SentencePiece tokenizer trained on it, and
/// native token shards for a given seq_len. Every step is idempotent and written atomically, so a
/// rerun reuses what exists.
#include <cstdint>
#include <string>

namespace openlm {

struct DefaultCorpus {
  std::string dir;        ///< $OPENLM_DATA_DIR, else <source tree>/assets/generated/default_corpus
  std::string text;       ///< corpus.txt: documents separated by blank lines
  std::string tokenizer;  ///< tokenizer_<vocab>.model
  std::string manifest;   ///< seq<seq_len>_v<vocab>_train/manifest.jsonl: every document but the held-out ones
  std::string heldout;    ///< seq<seq_len>_v<vocab>_heldout/manifest.jsonl: every 50th document (never trained on)
};

/// Every kHeldoutEvery-th document of corpus.txt (the 50th, 100th, ...) is held out for validation
/// (recipe `eval.val_data: [default_corpus:heldout]`); the training shards hold the others.
inline constexpr int64_t kHeldoutEvery = 50;

/// Builds whatever is missing. `fortune_dir` defaults to /usr/share/games/fortunes.
DefaultCorpus ensure_default_corpus(int64_t seq_len, int64_t vocab_size, const std::string& fortune_dir = "");

/// Turns fortune files (entries separated by lines holding only "%") into documents separated by
/// blank lines; returns the number of documents. Exposed for tests.
int64_t fortunes_to_documents(const std::string& fortune_dir, const std::string& out_path);

}  // namespace openlm
