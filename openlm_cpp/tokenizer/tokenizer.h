#pragma once
/// Tokenizer interface (no torch). Implementations: SentencePiece (tokenizer.model, through the
/// spm plugin) and Hugging Face `tokenizer.json` byte-level BPE (GPT-2 / GPT-NeoX family,
/// bpe_tokenizer.cpp). docs/TOKENIZERS.md describes both, what is refused and the UTF-8 rule.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace openlm {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  /// "sentencepiece" or "bpe".
  virtual std::string type() const = 0;
  /// Token ids of a text. Invalid UTF-8 is first replaced as Python's
  /// bytes.decode("utf-8", errors="replace") does (docs/TOKENIZERS.md).
  virtual std::vector<int32_t> encode(const std::string& text) const = 0;
  /// Text of token ids; special tokens are kept (filter with is_special() to drop them). Ids the
  /// tokenizer does not know (a padded model vocabulary) are skipped.
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
  /// Ids the model's embedding must cover: the largest id + 1.
  virtual int64_t vocab_size() const = 0;
  /// End-of-text id appended between documents (-1 if the model has none).
  virtual int32_t eos_id() const = 0;
  virtual int32_t bos_id() const = 0;
  /// Special (control) tokens: content and id.
  virtual std::vector<std::pair<std::string, int32_t>> special_tokens() const = 0;
  virtual bool is_special(int32_t id) const = 0;
  /// Id of a token given by its text (a vocabulary piece or an added/special token).
  virtual std::optional<int32_t> token_to_id(const std::string& token) const = 0;
  /// Stable identity written into data shards: "<type>:<FNV-1a 64 of the file bytes>".
  virtual std::string id() const = 0;
  /// Files that make up this tokenizer (for HF export): paths on disk.
  virtual std::vector<std::string> files() const = 0;
};

/// "sentencepiece" or "bpe" for a tokenizer path: a .json file (or a directory holding a
/// tokenizer.json) is "bpe"; a directory holding only tokenizer.model and anything else is
/// "sentencepiece".
std::string detect_tokenizer_type(const std::string& path);

/// Loads a tokenizer. `type`: "sentencepiece" (a .model file), "bpe" (a tokenizer.json) or
/// "auto"/"" (detect_tokenizer_type). A path ending in .json is read as "bpe" whatever the type
/// says when the type is the recipe default "sentencepiece" (auto-detection); "bpe" with a
/// non-JSON file is an error. A directory path means its tokenizer.json or tokenizer.model.
/// Throws ConfigError/DataError.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& type, const std::string& path);

/// Byte-level BPE from the text of a tokenizer.json (`origin` names it in messages; `path` is
/// what files() reports, may be empty). Unsupported parts throw DataError naming the JSON key
/// and value.
std::unique_ptr<Tokenizer> load_bpe_tokenizer_json(const std::string& json_text, const std::string& origin,
                                                   const std::string& path = "");

/// encode() of many texts on `threads` threads (1 = the calling thread only).
std::vector<std::vector<int32_t>> encode_batch(const Tokenizer& tok, const std::vector<std::string>& texts,
                                               int threads);

/// Trains a SentencePiece unigram/BPE model on a text file (one sentence per line).
/// Writes <model_prefix>.model and <model_prefix>.vocab.
void train_sentencepiece(const std::string& input, const std::string& model_prefix,
                         int64_t vocab_size, const std::string& model_type = "bpe");

}  // namespace openlm
