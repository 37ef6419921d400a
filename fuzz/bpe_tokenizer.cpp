// Fuzzes the byte-level BPE tokenizer: any bytes must encode (invalid UTF-8 replaced) to ids inside
// the vocabulary, decode to valid UTF-8, and round-trip exactly when the input is ASCII without
// added-token text (the asset's NFC normalizer leaves ASCII alone).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "openlm_cpp/tokenizer/tokenizer.h"
#include "openlm_cpp/tokenizer/unicode_text.h"

namespace {
std::string asset() {
  std::ifstream f(std::string(OPENLM_SOURCE_DIR) + "/tests/tokenizer/data/neox_tiny_tokenizer.json");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}
const openlm::Tokenizer& neox() {
  static auto t = openlm::load_bpe_tokenizer_json(asset(), "neox_tiny_tokenizer.json");
  return *t;
}
const openlm::Tokenizer& split() {
  static auto t = [] {
    auto j = nlohmann::json::parse(asset());
    j["pre_tokenizer"] = {
        {"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"},
           {"pattern", {{"Regex", "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}}},
           {"behavior", "Isolated"},
           {"invert", false}},
          {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", false}}}}};
    j["added_tokens"].push_back({{"id", 400}, {"content", "[M]"}, {"single_word", true}, {"lstrip", true},
                                 {"rstrip", true}, {"normalized", false}, {"special", true}});
    return openlm::load_bpe_tokenizer_json(j.dump(), "split variant");
  }();
  return *t;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string in(reinterpret_cast<const char*>(data), size);
  for (const openlm::Tokenizer* t : {&neox(), &split()}) {
    auto ids = t->encode(in);
    for (int32_t id : ids)
      if (id < 0 || id >= t->vocab_size()) std::abort();
    std::string back = t->decode(ids);
    if (openlm::unicode::valid_utf8_prefix(back) != back.size()) std::abort();
    bool ascii = true;
    for (unsigned char c : in) ascii &= c < 0x80;
    if (t == &neox() && ascii && in.find("<|") == std::string::npos && back != in) std::abort();
  }
  return 0;
}
