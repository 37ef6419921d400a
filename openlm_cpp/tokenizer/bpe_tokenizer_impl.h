#pragma once
/// Internals of the byte-level BPE tokenizer (docs/TOKENIZERS.md), shared by its two halves:
/// bpe_tokenizer_json.cpp reads and validates a tokenizer.json into a BpeTokenizer, and
/// bpe_tokenizer.cpp encodes and decodes with it. Not an interface: use load_tokenizer().
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "openlm_cpp/tokenizer/bpe_regex.h"
#include "openlm_cpp/tokenizer/tokenizer.h"
#include "openlm_cpp/tokenizer/unicode_text.h"

namespace openlm::bpe_impl {

using json = nlohmann::json;
using unicode::NormalForm;
using bpe::Regex;

// ---------------------------------------------------------------------------------------------
// Byte-level alphabet (GPT-2's bytes_to_unicode): byte -> code point below U+0144.

struct ByteLevelAlphabet {
  char32_t byte_to_cp[256];
  int16_t cp_to_byte[0x144];
  ByteLevelAlphabet() {
    std::fill(std::begin(cp_to_byte), std::end(cp_to_byte), int16_t(-1));
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      bool self = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      byte_to_cp[b] = self ? char32_t(b) : char32_t(256 + n++);
      cp_to_byte[byte_to_cp[b]] = int16_t(b);
    }
  }
  /// The bytes a byte-level string stands for, or nullopt when a character is outside the alphabet.
  std::optional<std::string> to_bytes(std::string_view s) const {
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size();) {
      char32_t c = unicode::next_code_point(s, i);
      if (c >= 0x144 || cp_to_byte[c] < 0) return std::nullopt;
      out.push_back(static_cast<char>(cp_to_byte[c]));
    }
    return out;
  }
  std::string from_bytes(std::string_view bytes) const {
    std::string out;
    for (unsigned char b : bytes) unicode::append_utf8(out, byte_to_cp[b]);
    return out;
  }
};
inline const ByteLevelAlphabet& alphabet() {
  static const ByteLevelAlphabet a;
  return a;
}

// ---------------------------------------------------------------------------------------------
// Pre-tokenizer steps (Split, ByteLevel) on string pieces.

enum class Behavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

struct Step {
  bool byte_level = false;
  // Split
  std::shared_ptr<Regex> regex;
  Behavior behavior = Behavior::Isolated;
  bool invert = false;
  // ByteLevel
  bool add_prefix_space = false;
  bool use_regex = true;
};

// ---------------------------------------------------------------------------------------------
// Added tokens: leftmost-longest matching over a byte trie, with tokenizers' flags.

struct AddedToken {
  std::string content;
  bool single_word = false, lstrip = false, rstrip = false, normalized = true, special = false;
  bool operator==(const AddedToken& o) const {
    return content == o.content && single_word == o.single_word && lstrip == o.lstrip && rstrip == o.rstrip &&
           normalized == o.normalized && special == o.special;
  }
};

class AddedMatcher {
 public:
  void add(const std::string& pattern, int32_t id) {
    if (pattern.empty()) return;
    if (nodes_.empty()) nodes_.emplace_back();
    std::size_t n = 0;
    for (unsigned char c : pattern) {
      auto it = nodes_[n].next.find(c);
      if (it == nodes_[n].next.end()) {
        nodes_.emplace_back();
        it = nodes_[n].next.emplace(c, static_cast<int>(nodes_.size() - 1)).first;
      }
      n = static_cast<std::size_t>(it->second);
    }
    nodes_[n].id = id;
    first_[static_cast<unsigned char>(pattern[0])] = true;
  }
  bool empty() const { return nodes_.empty(); }
  /// Leftmost-longest, non-overlapping matches: f(start, end, id).
  template <class F>
  void find_iter(std::string_view s, F&& f) const {
    if (nodes_.empty()) return;
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    std::size_t i = 0;
    while (i < s.size()) {
      if (!first_[p[i]]) { ++i; continue; }
      std::size_t n = 0, best_end = 0;
      int32_t best = -1;
      for (std::size_t j = i; j < s.size(); ++j) {
        auto it = nodes_[n].next.find(p[j]);
        if (it == nodes_[n].next.end()) break;
        n = static_cast<std::size_t>(it->second);
        if (nodes_[n].id >= 0) { best = nodes_[n].id; best_end = j + 1; }
      }
      if (best < 0) { ++i; continue; }
      f(i, best_end, best);
      i = best_end;
    }
  }

 private:
  struct Node {
    std::map<unsigned char, int> next;
    int32_t id = -1;
  };
  std::vector<Node> nodes_;
  bool first_[256] = {};
};

// ---------------------------------------------------------------------------------------------
// Merge table: (left id, right id) -> (rank, merged id), open addressing.

class MergeTable {
 public:
  void build(const std::vector<std::tuple<int32_t, int32_t, uint32_t, int32_t>>& merges) {
    std::size_t cap = 16;
    while (cap < merges.size() * 2 + 16) cap <<= 1;
    keys_.assign(cap, kEmpty);
    vals_.assign(cap, 0);
    mask_ = cap - 1;
    for (auto& [a, b, rank, id] : merges) {
      uint64_t k = key(a, b);
      std::size_t h = hash(k);
      while (keys_[h] != kEmpty && keys_[h] != k) h = (h + 1) & mask_;
      keys_[h] = k;  // a later duplicate of a pair replaces the earlier one (as a HashMap collect)
      vals_[h] = (uint64_t(rank) << 32) | uint32_t(id);
    }
  }
  /// (rank << 32 | merged id), or kNone.
  uint64_t find(int32_t a, int32_t b) const {
    uint64_t k = key(a, b);
    std::size_t h = hash(k);
    while (true) {
      uint64_t kk = keys_[h];
      if (kk == k) return vals_[h];
      if (kk == kEmpty) return kNone;
      h = (h + 1) & mask_;
    }
  }
  static constexpr uint64_t kNone = ~uint64_t(0);

 private:
  static constexpr uint64_t kEmpty = ~uint64_t(0);
  static uint64_t key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }
  std::size_t hash(uint64_t k) const { return std::size_t((k * 0x9E3779B97F4A7C15ULL) >> 29) & mask_; }
  std::vector<uint64_t> keys_, vals_;
  std::size_t mask_ = 0;
};

class BpeTokenizer final : public Tokenizer {
 public:
  /// Parses and validates a tokenizer.json (bpe_tokenizer_json.cpp). Throws DataError naming `origin`.
  BpeTokenizer(const std::string& text, const std::string& origin, const std::string& path);

  std::string type() const override { return "bpe"; }

  std::vector<int32_t> encode(const std::string& input) const override {
    std::vector<int32_t> out;
    std::size_t ok = unicode::valid_utf8_prefix(input);
    if (ok == input.size()) {
      encode_valid(input, out);
    } else {
      encode_valid(unicode::replace_invalid_utf8(input), out);
    }
    return out;
  }

  std::string decode(const std::vector<int32_t>& ids) const override {
    std::string bytes;
    if (!decoder_byte_level_) {  // no decoder: tokenizers joins the tokens with spaces
      bool first = true;
      for (int32_t id : ids) {
        if (id < 0 || std::size_t(id) >= token_text_.size() || !has_token_[id]) continue;
        if (!first) bytes.push_back(' ');
        bytes += token_text_[id];
        first = false;
      }
      return bytes;
    }
    for (int32_t id : ids)
      if (id >= 0 && std::size_t(id) < decoded_.size() && has_token_[id]) bytes += decoded_[id];
    return unicode::replace_invalid_utf8(bytes);
  }

  int64_t vocab_size() const override { return static_cast<int64_t>(token_text_.size()); }
  int32_t eos_id() const override { return eos_; }
  int32_t bos_id() const override { return bos_; }
  std::vector<std::pair<std::string, int32_t>> special_tokens() const override {
    std::vector<std::pair<std::string, int32_t>> out;
    for (auto& [id, t] : added_by_id_)
      if (t.special) out.emplace_back(t.content, id);
    std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.second < b.second; });
    return out;
  }
  bool is_special(int32_t id) const override {
    auto it = added_by_id_.find(id);
    return it != added_by_id_.end() && it->second.special;
  }
  std::optional<int32_t> token_to_id(const std::string& token) const override {
    if (auto it = added_ids_.find(token); it != added_ids_.end()) return it->second;
    if (auto it = vocab_.find(token); it != vocab_.end()) return it->second;
    return std::nullopt;
  }
  std::string id() const override { return id_; }
  std::vector<std::string> files() const override {
    std::vector<std::string> out;
    if (path_.empty()) return out;
    out.push_back(path_);
    auto cfg = std::filesystem::path(path_).parent_path() / "tokenizer_config.json";
    if (std::filesystem::exists(cfg)) out.push_back(cfg.string());
    return out;
  }

 private:
  // --- loading (bpe_tokenizer_json.cpp) --------------------------------------------------------

  void load_model(const json& m);
  void load_normalizer(const json& n, const std::string& where);
  void load_pre_tokenizer(const json& p, const std::string& where, bool top);
  void load_post_processor(const json& p);
  void load_decoder(const json& d);
  void load_added_tokens(const json& a);
  void finish();
  void load_tokenizer_config();

  std::string normalize_text(std::string_view s) const {
    std::string cur(s);
    for (auto f : normalizers_) cur = unicode::normalize(cur, f);
    return cur;
  }

  // --- encoding (bpe_tokenizer.cpp) ------------------------------------------------------------

  void encode_valid(std::string_view text, std::vector<int32_t>& out) const;
  /// AddedVocabulary::find_matches: matches with the single_word / lstrip / rstrip flags; text
  /// between matches goes to `rest`.
  template <class Rest>
  void split_added(std::string_view s, const AddedMatcher& m, std::vector<int32_t>& out, Rest&& rest) const;
  void pre_tokenize_and_bpe(std::string_view seg, std::vector<int32_t>& out) const;
  /// BPE of one pre-token (its bytes), through the word cache.
  void bpe(std::string_view w, std::vector<int32_t>& out) const;
  /// BPE::merge_word + Word::merge_all: initial symbols (unk / byte_fallback as tokenizers), then
  /// the lowest-rank pair first, the leftmost among equal ranks.
  void merge_word(std::string_view w, std::vector<int32_t>& out) const;
  void merge_small(std::vector<int32_t>& sym) const;
  /// Word::merge_all for long words: a priority queue of (rank, position) over a linked list.
  void merge_queue(std::vector<int32_t>& sym) const;

  std::string origin_, path_, id_;
  uint64_t serial_;
  // model
  std::unordered_map<std::string, int32_t> vocab_;
  std::unordered_map<std::string, int32_t> vocab_bytes_;  // ignore_merges only
  int64_t model_vocab_len_ = 0;
  int32_t vocab_max_id_ = -1;
  MergeTable merges_;
  int32_t byte_id_[256];
  std::optional<std::string> unk_token_;
  int32_t unk_id_ = -1;
  bool fuse_unk_ = false, byte_fallback_ = false, ignore_merges_ = false;
  // pipeline
  std::vector<NormalForm> normalizers_;
  std::vector<Step> steps_;
  bool decoder_byte_level_ = false;
  // added tokens
  std::unordered_map<std::string, int32_t> added_ids_;
  std::map<int32_t, AddedToken> added_by_id_;
  std::unordered_map<int32_t, std::string> added_normalized_text_;
  AddedMatcher raw_matcher_, normalized_matcher_;
  // decoding
  std::vector<std::string> token_text_, decoded_;
  std::vector<uint8_t> has_token_;
  int32_t eos_ = -1, bos_ = -1;
};

}  // namespace openlm::bpe_impl
