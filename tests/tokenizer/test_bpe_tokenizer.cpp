// Byte-level BPE (tokenizer.json): known ids of a hand-written GPT-NeoX-layout tokenizer (computed
// once with the `tokenizers` package 0.23.3), decode(encode(x)) == x, the invalid-UTF-8 rule, and
// refusal of unsupported tokenizer.json parts by name. The id-for-id comparison with `tokenizers`
// on many inputs is test_bpe_vs_tokenizers.py (ctest tokenizer_peer_tokenizers).
#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>

#include "openlm_cpp/core/error.h"
#include "openlm_cpp/tokenizer/tokenizer.h"
#include "openlm_cpp/tokenizer/unicode_text.h"

namespace {

const std::string kAsset = std::string(OPENLM_SOURCE_DIR) + "/tests/tokenizer/data/neox_tiny_tokenizer.json";

std::string read_asset() {
  std::ifstream f(kAsset, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

using Ids = std::vector<int32_t>;

TEST(BpeTokenizer, KnownIdsOfTheNeoxLayoutAsset) {
  // Expected ids: tokenizers.Tokenizer.from_file(asset).encode(text).ids (tokenizers 0.23.3).
  const std::vector<std::pair<std::string, Ids>> cases = {
      {"Hello world", {281, 267}},
      {"the world and the sing", {118, 259, 267, 271, 260, 269, 293}},
      {"It's 123 12345", {75, 118, 272, 34, 276, 34, 276, 54, 55}},
      {"caf\xC3\xA9 cafe\xCC\x81", {285, 34, 285}},  // NFC: e + U+0301 -> U+00E9
      {"a  b   c", {99, 296, 100, 296, 34, 101}},     // "  " is a normalized added token
      {"\n\n\n x", {277, 12, 34, 122}},
      {"\xE4\xBD\xA0\xE5\xA5\xBD \xF0\x9F\x98\x80!", {287, 289, 34, 292, 35}},
      {"<|endoftext|>Hello<|endoftext|>", {0, 281, 0}},
      {" <|padding|>", {34, 1}},
      {"tab\there", {118, 99, 100, 11, 259, 116, 103}},
      {"", {}},
      {"x<|endoftext", {122, 62, 126, 103, 112, 102, 113, 104, 118, 103, 122, 118}},
      {"abc\xEF\xBF\xBD\xEF\xBF\xBD", {99, 100, 101, 241, 193, 191, 241, 193, 191}},
      {"  leading", {296, 110, 103, 99, 102, 293}},
  };
  for (const std::string type : {"bpe", "auto", "sentencepiece"}) {  // a .json path is a tokenizer.json
    auto tok = openlm::load_tokenizer(type, kAsset);
    EXPECT_EQ(tok->type(), "bpe");
    for (auto& [text, ids] : cases) EXPECT_EQ(tok->encode(text), ids) << "text: '" << text << "' type " << type;
  }
}

TEST(BpeTokenizer, SpecialTokensVocabAndIdentity) {
  auto tok = openlm::load_tokenizer("bpe", kAsset);
  EXPECT_EQ(tok->vocab_size(), 297);
  EXPECT_EQ(tok->eos_id(), 0);  // <|endoftext|> (no tokenizer_config.json beside the asset)
  EXPECT_EQ(tok->bos_id(), -1);
  EXPECT_TRUE(tok->is_special(0));
  EXPECT_TRUE(tok->is_special(1));
  EXPECT_FALSE(tok->is_special(296));
  EXPECT_EQ(tok->token_to_id("<|padding|>"), 1);
  EXPECT_EQ(tok->token_to_id("Hello"), 281);
  EXPECT_FALSE(tok->token_to_id("nope").has_value());
  auto sp = tok->special_tokens();
  ASSERT_EQ(sp.size(), 2u);
  EXPECT_EQ(sp[0], (std::pair<std::string, int32_t>{"<|endoftext|>", 0}));
  EXPECT_EQ(tok->id().rfind("bpe:", 0), 0u);
  EXPECT_EQ(tok->id(), openlm::load_tokenizer("bpe", kAsset)->id());
  std::string other = read_asset();
  other.push_back('\n');
  EXPECT_NE(openlm::load_bpe_tokenizer_json(other, "x")->id(), tok->id());
  ASSERT_EQ(tok->files().size(), 1u);
  EXPECT_EQ(tok->files()[0], kAsset);
}

TEST(BpeTokenizer, DecodeOfEncodeIsTheText) {
  auto tok = openlm::load_tokenizer("bpe", kAsset);
  const std::vector<std::string> texts = {
      "Hello world", "It's 12345 and\tthat's\n\n  it  ", "<|endoftext|>a<|padding|>b<|endoftext|>",
      "\xE4\xBD\xA0\xE5\xA5\xBD\xF0\x9F\x98\x80\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD", "caf\xC3\xA9", " ", "\r\n\x0B\x0C",
      std::string(3000, 'x'), "\xEF\xBF\xBD", std::string("nul\0byte", 8), "\xD9\x85\xD8\xB1\xD8\xAD\xD8\xA8\xD8\xA7"};
  for (auto& t : texts) EXPECT_EQ(tok->decode(tok->encode(t)), t) << t;
  // Not NFC: the round trip gives the NFC form.
  EXPECT_EQ(tok->decode(tok->encode("cafe\xCC\x81")), "caf\xC3\xA9");
  // Ids beyond the vocabulary (a padded model vocab) are skipped.
  EXPECT_EQ(tok->decode({281, 5000, -1, 267}), "Hello world");
  // A lone byte token that is not UTF-8 decodes to U+FFFD (as tokenizers' from_utf8_lossy).
  EXPECT_EQ(tok->decode({241}), "\xEF\xBF\xBD");
}

TEST(BpeTokenizer, BatchEncodeOnThreadsEqualsSerial) {
  auto tok = openlm::load_tokenizer("bpe", kAsset);
  std::vector<std::string> texts;
  for (int i = 0; i < 500; ++i) texts.push_back("Hello world " + std::to_string(i * 7919) + " the sing  x\n");
  auto serial = openlm::encode_batch(*tok, texts, 1);
  auto threaded = openlm::encode_batch(*tok, texts, 2);
  EXPECT_EQ(serial, threaded);
  for (std::size_t i = 0; i < texts.size(); ++i) ASSERT_EQ(serial[i], tok->encode(texts[i]));
}

TEST(Utf8, InvalidSequencesAreReplacedAsPython) {
  // Expected: bytes.decode("utf-8", "replace") of CPython 3.11.
  const std::string R = "\xEF\xBF\xBD";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"abc\xFF", "abc" + R},
      {"\xE2\x82", R},
      {"\xE2\x82 end", R + " end"},
      {"\xED\xA0\x80", R + R + R},  // a surrogate: E D is followed by A0 (not 80..9F)
      {"\xF4\x90\x80\x80", R + R + R + R},
      {"\xC0\xAF", R + R},
      {"caf\xE9 au lait", "caf" + R + " au lait"},
      {"\xF0\x9F\x98", R},
      {"\xF0\x9F\x98 x", R + " x"},
      {"a\x80" "b\xBF\xFE", "a" + R + "b" + R + R},
      {"\xE0\x80\x80", R + R + R},
      {"\xEF\xBF", R},
      {"ok \xF5\x80 \xC2", "ok " + R + R + " " + R},
      {"valid \xC3\xA9\xF0\x9F\x98\x80", "valid \xC3\xA9\xF0\x9F\x98\x80"},
  };
  auto tok = openlm::load_tokenizer("bpe", kAsset);
  for (auto& [in, want] : cases) {
    EXPECT_EQ(openlm::unicode::replace_invalid_utf8(in), want);
    EXPECT_EQ(tok->encode(in), tok->encode(want));
  }
  std::size_t n = 0;
  openlm::unicode::replace_invalid_utf8("\xED\xA0\x80x\xFF", &n);
  EXPECT_EQ(n, 4u);
}

/// Loads the asset with one JSON edit; returns the error message ("" when it loads).
std::string load_edited(const std::function<void(nlohmann::json&)>& edit) {
  auto j = nlohmann::json::parse(read_asset());
  edit(j);
  try {
    openlm::load_bpe_tokenizer_json(j.dump(), "edited.json");
  } catch (const openlm::DataError& e) {
    return e.what();
  }
  return "";
}

TEST(BpeTokenizer, UnsupportedPartsAreRefusedByName) {
  using J = nlohmann::json;
  struct Case {
    std::function<void(J&)> edit;
    std::vector<std::string> must_name;
  };
  const std::vector<Case> cases = {
      {[](J& j) { j["normalizer"] = {{"type", "Lowercase"}}; }, {"normalizer.type", "Lowercase"}},
      {[](J& j) { j["normalizer"] = {{"type", "Sequence"}, {"normalizers", {{{"type", "NFC"}}, {{"type", "Strip"}, {"left", true}}}}}; },
       {"normalizer.normalizers[1].type", "Strip"}},
      {[](J& j) { j["model"]["type"] = "WordPiece"; }, {"model.type", "WordPiece"}},
      {[](J& j) { j["pre_tokenizer"] = {{"type", "Whitespace"}}; }, {"pre_tokenizer.type", "Whitespace"}},
      {[](J& j) { j["pre_tokenizer"] = nullptr; }, {"pre_tokenizer", "ByteLevel"}},
      {[](J& j) {
         j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "\\s+"}}}, {"behavior", "Isolated"}, {"invert", false}};
       },
       {"pre_tokenizer", "must end with a ByteLevel step"}},
      {[](J& j) {
         j["pre_tokenizer"] = {{"type", "Sequence"},
                               {"pretokenizers",
                                {{{"type", "Split"}, {"pattern", {{"Regex", "\\w+"}}}, {"behavior", "Isolated"}, {"invert", false}},
                                 {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}};
       },
       {"pre_tokenizer.pretokenizers[0].pattern.Regex", "\\\\w+", "\\w"}},
      {[](J& j) {
         j["pre_tokenizer"] = {{"type", "Sequence"},
                               {"pretokenizers",
                                {{{"type", "Split"}, {"pattern", {{"Regex", "\\pL+"}}}, {"behavior", "Isolated"}, {"invert", false}},
                                 {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}};
       },
       {"pre_tokenizer.pretokenizers[0].pattern.Regex", "\\pL"}},
      {[](J& j) {
         j["pre_tokenizer"] = {{"type", "Sequence"},
                               {"pretokenizers",
                                {{{"type", "Split"}, {"pattern", {{"Regex", "x"}}}, {"behavior", "Sideways"}, {"invert", false}},
                                 {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}};
       },
       {"pre_tokenizer.pretokenizers[0].behavior", "Sideways"}},
      {[](J& j) {
         j["pre_tokenizer"] = {{"type", "Sequence"},
                               {"pretokenizers", {{{"type", "ByteLevel"}}, {{"type", "Digits"}, {"individual_digits", true}}}}};
       },
       {"pre_tokenizer.pretokenizers[1]", "nothing may follow the ByteLevel step"}},
      {[](J& j) { j["pre_tokenizer"]["use_regexp"] = true; }, {"pre_tokenizer.use_regexp", "unknown key"}},
      {[](J& j) { j["decoder"] = {{"type", "WordPiece"}, {"prefix", "##"}}; }, {"decoder.type", "WordPiece"}},
      {[](J& j) {
         j["post_processor"] = {{"type", "TemplateProcessing"}, {"single", J::array()}, {"pair", J::array()}};
       },
       {"post_processor.type", "TemplateProcessing"}},
      {[](J& j) { j["truncation"] = {{"max_length", 512}}; }, {"truncation", "max_length"}},
      {[](J& j) { j["padding"] = {{"strategy", "BatchLongest"}}; }, {"padding", "BatchLongest"}},
      {[](J& j) { j["model"]["dropout"] = 0.1; }, {"model.dropout", "0.1"}},
      {[](J& j) { j["model"]["continuing_subword_prefix"] = "##"; }, {"model.continuing_subword_prefix", "##"}},
      {[](J& j) { j["model"]["end_of_word_suffix"] = "</w>"; }, {"model.end_of_word_suffix", "</w>"}},
      {[](J& j) { j["model"]["frobnicate"] = true; }, {"model.frobnicate", "unknown key"}},
      {[](J& j) { j["extra_top_level"] = 1; }, {"extra_top_level", "unknown key"}},
      {[](J& j) { j["version"] = "2.0"; }, {"version", "2.0"}},
      {[](J& j) { j["added_tokens"][0]["content_type"] = "x"; }, {"added_tokens[0].content_type"}},
      {[](J& j) { j["model"]["merges"].push_back("Ġ zzz"); }, {"model.merges[", "zzz", "not in model.vocab"}},
      {[](J& j) { j["model"]["merges"].push_back("a b c"); }, {"model.merges[", "two tokens"}},
  };
  for (std::size_t i = 0; i < cases.size(); ++i) {
    std::string msg = load_edited(cases[i].edit);
    ASSERT_FALSE(msg.empty()) << "case " << i << " loaded";
    EXPECT_NE(msg.find("edited.json"), std::string::npos) << msg;
    for (auto& part : cases[i].must_name) EXPECT_NE(msg.find(part), std::string::npos) << "case " << i << ": " << msg;
  }
  // Supported variations load: pair merges, NFKC, no normalizer, Split + ByteLevel without regex.
  EXPECT_EQ(load_edited([](J& j) {
              J pairs = J::array();
              for (auto& m : j["model"]["merges"]) {
                std::string s = m.get<std::string>();
                auto sp = s.find(' ');
                pairs.push_back({s.substr(0, sp), s.substr(sp + 1)});
              }
              j["model"]["merges"] = pairs;
            }),
            "");
  EXPECT_EQ(load_edited([](J& j) { j["normalizer"] = {{"type", "NFKC"}}; }), "");
  EXPECT_EQ(load_edited([](J& j) { j["normalizer"] = nullptr; }), "");
  EXPECT_EQ(load_edited([](J& j) {
              j["pre_tokenizer"] = {{"type", "Sequence"},
                                    {"pretokenizers",
                                     {{{"type", "Split"}, {"pattern", {{"Regex", "(?i:'s|'t)|\\p{L}+|\\p{N}{1,3}|\\s+(?!\\S)|\\s+"}}},
                                       {"behavior", "Isolated"}, {"invert", false}},
                                      {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}};
            }),
            "");
}

TEST(BpeTokenizer, PairMergesGiveTheSameIds) {
  auto j = nlohmann::json::parse(read_asset());
  nlohmann::json pairs = nlohmann::json::array();
  for (auto& m : j["model"]["merges"]) {
    std::string s = m.get<std::string>();
    auto sp = s.find(' ');
    pairs.push_back({s.substr(0, sp), s.substr(sp + 1)});
  }
  j["model"]["merges"] = pairs;
  auto a = openlm::load_tokenizer("bpe", kAsset);
  auto b = openlm::load_bpe_tokenizer_json(j.dump(), "pairs");
  for (std::string t : {"Hello world and the sing", "12345 caf\xC3\xA9", "  x  "}) EXPECT_EQ(a->encode(t), b->encode(t));
}

TEST(BpeTokenizer, MissingFileAndBadJsonAreClearErrors) {
  try {
    openlm::load_tokenizer("bpe", "/nonexistent/tokenizer.json");
    FAIL();
  } catch (const openlm::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/tokenizer.json"), std::string::npos);
  }
  EXPECT_THROW(openlm::load_bpe_tokenizer_json("{not json", "bad.json"), openlm::DataError);
  EXPECT_THROW(openlm::load_tokenizer("wordpiece", kAsset), openlm::ConfigError);
  EXPECT_EQ(openlm::detect_tokenizer_type(kAsset), "bpe");
  EXPECT_EQ(openlm::detect_tokenizer_type("x.model"), "sentencepiece");
}

}  // namespace
