#pragma once
/// Tokenizer interface (no torch). Implementations: SentencePiece (tokenizer.model).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace openlm {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::vector<int32_t> encode(const std::string& text) const = 0;
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
  virtual int64_t vocab_size() const = 0;
  /// End-of-text id appended between documents (-1 if the model has none).
  virtual int32_t eos_id() const = 0;
  virtual int32_t bos_id() const = 0;
  /// Stable identity written into data shards (file name + content hash).
  virtual std::string id() const = 0;
  /// Files that make up this tokenizer (for HF export): paths on disk.
  virtual std::vector<std::string> files() const = 0;
};

/// Loads a tokenizer: type "sentencepiece" reads a .model file. Throws ConfigError/DataError.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& type, const std::string& path);

/// Trains a SentencePiece unigram/BPE model on a text file (one sentence per line).
/// Writes <model_prefix>.model and <model_prefix>.vocab.
void train_sentencepiece(const std::string& input, const std::string& model_prefix,
                         int64_t vocab_size, const std::string& model_type = "bpe");

}  // namespace openlm
