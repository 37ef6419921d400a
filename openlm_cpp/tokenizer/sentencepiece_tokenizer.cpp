#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <fstream>
#include <sstream>

#include "openlm_cpp/core/error.h"
#include "openlm_cpp/tokenizer/tokenizer.h"

namespace openlm {
namespace {

class SentencePieceTokenizer final : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(const std::string& path) : path_(path) {
    auto st = sp_.Load(path);
    if (!st.ok()) throw DataError("cannot load SentencePiece model '" + path + "': " + st.ToString());
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    std::string bytes = ss.str();
    uint64_t h = 1469598103934665603ULL;  // FNV-1a of the model bytes: a content identity
    for (unsigned char c : bytes) h = (h ^ c) * 1099511628211ULL;
    char buf[32];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
    id_ = "sentencepiece:" + std::string(buf);
  }
  std::vector<int32_t> encode(const std::string& text) const override {
    std::vector<int> ids;
    auto st = sp_.Encode(text, &ids);
    if (!st.ok()) throw DataError("SentencePiece encode failed: " + st.ToString());
    return {ids.begin(), ids.end()};
  }
  std::string decode(const std::vector<int32_t>& ids) const override {
    std::vector<int> v(ids.begin(), ids.end());
    for (int& i : v)
      if (i < 0 || i >= sp_.GetPieceSize()) i = sp_.unk_id();
    std::string out;
    auto st = sp_.Decode(v, &out);
    if (!st.ok()) throw DataError("SentencePiece decode failed: " + st.ToString());
    return out;
  }
  int64_t vocab_size() const override { return sp_.GetPieceSize(); }
  int32_t eos_id() const override { return sp_.eos_id(); }
  int32_t bos_id() const override { return sp_.bos_id(); }
  std::string id() const override { return id_; }
  std::vector<std::string> files() const override { return {path_}; }

 private:
  std::string path_, id_;
  sentencepiece::SentencePieceProcessor sp_;
};

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& type, const std::string& path) {
  if (type == "sentencepiece") return std::make_unique<SentencePieceTokenizer>(path);
  throw ConfigError("", "tokenizer.type", 0,
                    "unknown tokenizer type '" + type + "' (expected: sentencepiece)");
}

void train_sentencepiece(const std::string& input, const std::string& model_prefix,
                         int64_t vocab_size, const std::string& model_type) {
  std::ostringstream args;
  // eos id 0 mirrors GPT-NeoX's end-of-text id; no bos; unk/pad after it.
  args << "--input=" << input << " --model_prefix=" << model_prefix << " --vocab_size=" << vocab_size
       << " --model_type=" << model_type << " --character_coverage=1.0"
       << " --eos_id=0 --unk_id=1 --bos_id=-1 --pad_id=-1 --num_threads=2"
       << " --input_sentence_size=2000000 --shuffle_input_sentence=true --minloglevel=2"
       << " --byte_fallback=true";
  auto st = sentencepiece::SentencePieceTrainer::Train(args.str());
  if (!st.ok()) throw DataError("SentencePiece training on '" + input + "' failed: " + st.ToString());
}

}  // namespace openlm
