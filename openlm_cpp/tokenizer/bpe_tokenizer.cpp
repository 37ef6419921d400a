// Hugging Face tokenizer.json byte-level BPE (GPT-2 / GPT-NeoX family), id-for-id equal to the
// `tokenizers` package: added tokens -> normalizer -> pre-tokenizer (Split / ByteLevel) -> BPE
// merges by rank -> ids; decode through the ByteLevel decoder. docs/TOKENIZERS.md lists what is
// supported; every other part of a tokenizer.json is refused by name.
#include <algorithm>
#include <cctype>
#include <stdexcept>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <queue>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include "openlm_cpp/core/error.h"
#include "openlm_cpp/core/log.h"
#include "openlm_cpp/tokenizer/bpe_regex.h"
#include "openlm_cpp/tokenizer/tokenizer.h"
#include "openlm_cpp/tokenizer/unicode_text.h"

namespace openlm {
namespace {

using json = nlohmann::json;
using unicode::NormalForm;

// ---------------------------------------------------------------------------------------------
// Errors: every refusal names the file, the JSON key and the value.

[[noreturn]] void refuse(const std::string& origin, const std::string& key, const json& value,
                         const std::string& why) {
  std::string v = value.dump();
  if (v.size() > 200) v = v.substr(0, 200) + "...";
  throw DataError(origin + ": unsupported tokenizer.json part " + key + " = " + v + ": " + why);
}
[[noreturn]] void invalid(const std::string& origin, const std::string& key, const std::string& why) {
  throw DataError(origin + ": invalid tokenizer.json: " + key + ": " + why);
}

/// Refuses keys of `obj` outside `known` (a key we do not know could change the ids).
void only_keys(const std::string& origin, const std::string& where, const json& obj,
               std::initializer_list<const char*> known) {
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    bool ok = false;
    for (const char* k : known) ok |= it.key() == k;
    if (!ok) refuse(origin, where + "." + it.key(), it.value(), "unknown key (not supported)");
  }
}

bool get_bool(const std::string& origin, const json& obj, const std::string& where, const char* key, bool dflt) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return dflt;
  if (!it->is_boolean()) invalid(origin, where + "." + key, "expected true or false, got " + it->dump());
  return it->get<bool>();
}

std::string type_of(const std::string& origin, const json& obj, const std::string& where) {
  if (!obj.is_object()) invalid(origin, where, "expected an object, got " + obj.dump().substr(0, 100));
  auto it = obj.find("type");
  if (it == obj.end() || !it->is_string()) invalid(origin, where + ".type", "missing or not a string");
  return it->get<std::string>();
}

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
const ByteLevelAlphabet& alphabet() {
  static const ByteLevelAlphabet a;
  return a;
}

// ---------------------------------------------------------------------------------------------
// Regular expressions (bpe_regex.h); an unsupported pattern is refused by its key.

using bpe::Regex;

std::shared_ptr<Regex> compile_regex(const std::string& pattern, bool literal, const std::string& origin,
                                     const std::string& key) {
  try {
    return std::make_shared<Regex>(pattern, literal);
  } catch (const std::invalid_argument& e) {
    refuse(origin, key, pattern, e.what());
  }
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

constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

/// NormalizedString::split: the (offsets, is_match) list of a pattern, then the behaviour.
void split_piece(std::string_view s, const Regex& re, Behavior behavior, bool invert,
                 std::vector<std::string_view>& out) {
  struct M { std::size_t a, b; bool m; };
  thread_local std::vector<M> ms;
  ms.clear();
  std::size_t prev = 0;
  re.find_iter(s, [&](std::size_t a, std::size_t b) {
    if (prev != a) ms.push_back({prev, a, false});
    ms.push_back({a, b, true});
    prev = b;
  });
  if (prev != s.size()) ms.push_back({prev, s.size(), false});
  if (invert)
    for (auto& m : ms) m.m = !m.m;
  auto emit = [&](std::size_t a, std::size_t b) {
    if (b > a) out.push_back(s.substr(a, b - a));
  };
  switch (behavior) {
    case Behavior::Isolated:
      for (auto& m : ms) emit(m.a, m.b);
      break;
    case Behavior::Removed:
      for (auto& m : ms)
        if (!m.m) emit(m.a, m.b);
      break;
    case Behavior::Contiguous:
    case Behavior::MergedWithPrevious: {
      thread_local std::vector<std::pair<std::size_t, std::size_t>> acc;
      acc.clear();
      bool prev_match = false;
      for (auto& m : ms) {
        bool merge = behavior == Behavior::Contiguous ? m.m == prev_match : (m.m && !prev_match);
        if (merge && !acc.empty()) acc.back().second = m.b;
        else acc.push_back({m.a, m.b});
        prev_match = m.m;
      }
      for (auto& [a, b] : acc) emit(a, b);
      break;
    }
    case Behavior::MergedWithNext: {
      thread_local std::vector<std::pair<std::size_t, std::size_t>> acc;
      acc.clear();
      bool prev_match = false;
      for (auto it = ms.rbegin(); it != ms.rend(); ++it) {
        if (it->m && !prev_match && !acc.empty()) acc.back().first = it->a;
        else acc.push_back({it->a, it->b});
        prev_match = it->m;
      }
      for (auto it = acc.rbegin(); it != acc.rend(); ++it) emit(it->first, it->second);
      break;
    }
  }
}

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

inline uint64_t hash_bytes(std::string_view s) {
  uint64_t h = 0x243F6A8885A308D3ULL ^ (s.size() * 0x9E3779B97F4A7C15ULL);
  std::size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, s.data() + i, 8);
    h = (h ^ w) * 0xBF58476D1CE4E5B9ULL;
    h ^= h >> 31;
  }
  uint64_t w = 0;
  std::memcpy(&w, s.data() + i, s.size() - i);
  h = (h ^ w) * 0x94D049BB133111EBULL;
  h ^= h >> 29;
  return h;
}

/// Per-thread, per-tokenizer word cache: a direct-mapped table of byte pieces -> ids.
struct WordCache {
  static constexpr std::size_t kSlots = 1 << 15;
  struct Slot {
    uint64_t hash = 0;
    std::string key;
    std::vector<int32_t> ids;
  };
  std::vector<Slot> slots{kSlots};
};
std::atomic<uint64_t> g_serial{1};

WordCache& word_cache(uint64_t serial) {
  thread_local std::vector<std::pair<uint64_t, std::unique_ptr<WordCache>>> caches;
  for (auto& [s, c] : caches)
    if (s == serial) return *c;
  if (caches.size() >= 4) caches.erase(caches.begin());
  caches.emplace_back(serial, std::make_unique<WordCache>());
  return *caches.back().second;
}

// ---------------------------------------------------------------------------------------------

uint64_t fnv1a(std::string_view s) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
  return h;
}

class BpeTokenizer final : public Tokenizer {
 public:
  BpeTokenizer(const std::string& text, const std::string& origin, const std::string& path)
      : origin_(origin), path_(path), serial_(g_serial.fetch_add(1)) {
    json j;
    try {
      j = json::parse(text);
    } catch (const std::exception& e) {
      throw DataError(origin + ": not valid JSON: " + e.what());
    }
    if (!j.is_object()) throw DataError(origin + ": not a tokenizer.json (the top level is not an object)");
    only_keys(origin, "tokenizer.json", j,
              {"version", "truncation", "padding", "added_tokens", "normalizer", "pre_tokenizer", "post_processor",
               "decoder", "model"});
    if (j.contains("version") && !(j["version"].is_string() && j["version"] == "1.0"))
      refuse(origin, "version", j["version"], "only version \"1.0\" is known");
    for (const char* k : {"truncation", "padding"})
      if (j.contains(k) && !j[k].is_null())
        refuse(origin, k, j[k], "must be null (encode() neither truncates nor pads)");
    if (!j.contains("model")) invalid(origin, "model", "missing");
    load_model(j["model"]);
    if (j.contains("normalizer")) load_normalizer(j["normalizer"], "normalizer");
    if (!j.contains("pre_tokenizer") || j["pre_tokenizer"].is_null())
      refuse(origin, "pre_tokenizer", nullptr, "a byte-level BPE needs a ByteLevel pre-tokenizer");
    load_pre_tokenizer(j["pre_tokenizer"], "pre_tokenizer", true);
    if (steps_.empty() || !steps_.back().byte_level)
      refuse(origin, "pre_tokenizer", j["pre_tokenizer"],
             "only byte-level BPE is supported: the pre-tokenizer must end with a ByteLevel step");
    if (j.contains("post_processor")) load_post_processor(j["post_processor"]);
    if (j.contains("decoder")) load_decoder(j["decoder"]);
    if (j.contains("added_tokens")) load_added_tokens(j["added_tokens"]);
    finish();
    id_ = "bpe:" + hex(fnv1a(text));
    load_tokenizer_config();
  }

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
  static std::string hex(uint64_t h) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
    return buf;
  }

  // --- loading -------------------------------------------------------------------------------

  void load_model(const json& m) {
    std::string t = type_of(origin_, m, "model");
    if (t != "BPE") refuse(origin_, "model.type", t, "only BPE models are supported");
    only_keys(origin_, "model", m,
              {"type", "dropout", "unk_token", "continuing_subword_prefix", "end_of_word_suffix", "fuse_unk",
               "byte_fallback", "ignore_merges", "vocab", "merges"});
    if (m.contains("dropout") && !m["dropout"].is_null() && !(m["dropout"].is_number() && m["dropout"] == 0))
      refuse(origin_, "model.dropout", m["dropout"], "BPE dropout is random; only null or 0 is supported");
    for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"})
      if (m.contains(k) && !m[k].is_null() && !(m[k].is_string() && m[k].get<std::string>().empty()))
        refuse(origin_, std::string("model.") + k, m[k], "only null is supported (byte-level BPE has none)");
    fuse_unk_ = get_bool(origin_, m, "model", "fuse_unk", false);
    byte_fallback_ = get_bool(origin_, m, "model", "byte_fallback", false);
    ignore_merges_ = get_bool(origin_, m, "model", "ignore_merges", false);
    if (m.contains("unk_token") && !m["unk_token"].is_null()) {
      if (!m["unk_token"].is_string()) invalid(origin_, "model.unk_token", "expected a string or null");
      unk_token_ = m["unk_token"].get<std::string>();
    }
    if (!m.contains("vocab") || !m["vocab"].is_object()) invalid(origin_, "model.vocab", "missing or not an object");
    if (!m.contains("merges") || !m["merges"].is_array()) invalid(origin_, "model.merges", "missing or not an array");
    int32_t max_id = -1;
    for (auto it = m["vocab"].begin(); it != m["vocab"].end(); ++it) {
      if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 ||
          it.value().get<int64_t>() > std::numeric_limits<int32_t>::max())
        invalid(origin_, "model.vocab." + it.key(), "id must be a non-negative integer, got " + it.value().dump());
      int32_t id = it.value().get<int32_t>();
      vocab_[it.key()] = id;
      max_id = std::max(max_id, id);
    }
    if (max_id >= (1 << 26))  // ids index tables: refuse absurd ones rather than allocate for them
      invalid(origin_, "model.vocab", "ids up to " + std::to_string(max_id) + " (at most 67108863 are supported)");
    model_vocab_len_ = static_cast<int64_t>(vocab_.size());
    vocab_max_id_ = max_id;
    // Merges: "a b" strings (the legacy form; "#version" lines skipped) or [a, b] pairs.
    std::vector<std::tuple<int32_t, int32_t, uint32_t, int32_t>> merges;
    uint32_t rank = 0;
    std::size_t i = 0;
    for (const auto& e : m["merges"]) {
      std::string a, b;
      std::string where = "model.merges[" + std::to_string(i++) + "]";
      if (e.is_string()) {
        std::string s = e.get<std::string>();
        if (s.rfind("#version", 0) == 0) continue;
        auto sp = s.find(' ');
        if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
          invalid(origin_, where, "a merge string must be two tokens separated by one space, got " + e.dump());
        a = s.substr(0, sp);
        b = s.substr(sp + 1);
      } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
        a = e[0].get<std::string>();
        b = e[1].get<std::string>();
      } else {
        invalid(origin_, where, "expected \"a b\" or [\"a\", \"b\"], got " + e.dump());
      }
      auto ia = vocab_.find(a), ib = vocab_.find(b), im = vocab_.find(a + b);
      if (ia == vocab_.end()) invalid(origin_, where, "token '" + a + "' is not in model.vocab");
      if (ib == vocab_.end()) invalid(origin_, where, "token '" + b + "' is not in model.vocab");
      if (im == vocab_.end()) invalid(origin_, where, "merged token '" + a + b + "' is not in model.vocab");
      merges.emplace_back(ia->second, ib->second, rank++, im->second);
    }
    merges_.build(merges);
    if (unk_token_) {
      auto it = vocab_.find(*unk_token_);
      unk_id_ = it == vocab_.end() ? -1 : it->second;
    }
    // Byte-level pieces: the bytes each vocabulary token stands for.
    const auto& abc = alphabet();
    for (int b = 0; b < 256; ++b) {
      std::string ch;
      unicode::append_utf8(ch, abc.byte_to_cp[b]);
      auto it = vocab_.find(ch);
      byte_id_[b] = it == vocab_.end() ? -1 : it->second;
    }
    if (ignore_merges_)
      for (auto& [tok, id] : vocab_)
        if (auto bytes = abc.to_bytes(tok)) vocab_bytes_.emplace(*bytes, id);
  }

  void load_normalizer(const json& n, const std::string& where) {
    if (n.is_null()) return;
    std::string t = type_of(origin_, n, where);
    if (t == "Sequence") {
      only_keys(origin_, where, n, {"type", "normalizers"});
      if (!n.contains("normalizers") || !n["normalizers"].is_array())
        invalid(origin_, where + ".normalizers", "missing or not an array");
      std::size_t i = 0;
      for (const auto& x : n["normalizers"]) load_normalizer(x, where + ".normalizers[" + std::to_string(i++) + "]");
      return;
    }
    static const std::map<std::string, NormalForm> forms = {
        {"NFC", NormalForm::NFC}, {"NFD", NormalForm::NFD}, {"NFKC", NormalForm::NFKC}, {"NFKD", NormalForm::NFKD}};
    auto it = forms.find(t);
    if (it == forms.end())
      refuse(origin_, where + ".type", t, "supported normalizers: NFC, NFD, NFKC, NFKD, Sequence of these, null");
    only_keys(origin_, where, n, {"type"});
    normalizers_.push_back(it->second);
  }

  void load_pre_tokenizer(const json& p, const std::string& where, bool top) {
    std::string t = type_of(origin_, p, where);
    if (t == "Sequence" && top) {
      only_keys(origin_, where, p, {"type", "pretokenizers"});
      if (!p.contains("pretokenizers") || !p["pretokenizers"].is_array())
        invalid(origin_, where + ".pretokenizers", "missing or not an array");
      std::size_t i = 0;
      for (const auto& x : p["pretokenizers"]) {
        std::string w = where + ".pretokenizers[" + std::to_string(i++) + "]";
        if (!steps_.empty() && steps_.back().byte_level)
          refuse(origin_, w, x, "nothing may follow the ByteLevel step of the pre-tokenizer");
        load_pre_tokenizer(x, w, false);
      }
      return;
    }
    Step s;
    if (t == "ByteLevel") {
      only_keys(origin_, where, p, {"type", "add_prefix_space", "trim_offsets", "use_regex"});
      s.byte_level = true;
      s.add_prefix_space = get_bool(origin_, p, where, "add_prefix_space", true);
      s.use_regex = get_bool(origin_, p, where, "use_regex", true);
      get_bool(origin_, p, where, "trim_offsets", true);  // offsets only
      if (s.use_regex) s.regex = compile_regex(kGpt2Pattern, false, origin_, where);
    } else if (t == "Split") {
      only_keys(origin_, where, p, {"type", "pattern", "behavior", "invert"});
      if (!p.contains("pattern") || !p["pattern"].is_object() || p["pattern"].size() != 1)
        invalid(origin_, where + ".pattern", "expected {\"Regex\": ...} or {\"String\": ...}");
      const auto& pat = p["pattern"];
      bool literal = pat.contains("String");
      if (!literal && !pat.contains("Regex")) refuse(origin_, where + ".pattern", pat, "expected Regex or String");
      const auto& pv = literal ? pat["String"] : pat["Regex"];
      if (!pv.is_string()) invalid(origin_, where + ".pattern", "the pattern must be a string");
      s.regex = compile_regex(pv.get<std::string>(), literal, origin_,
                                        where + ".pattern." + (literal ? "String" : "Regex"));
      static const std::map<std::string, Behavior> behaviors = {{"Removed", Behavior::Removed},
                                                                {"Isolated", Behavior::Isolated},
                                                                {"MergedWithPrevious", Behavior::MergedWithPrevious},
                                                                {"MergedWithNext", Behavior::MergedWithNext},
                                                                {"Contiguous", Behavior::Contiguous}};
      if (!p.contains("behavior") || !p["behavior"].is_string() || !behaviors.count(p["behavior"].get<std::string>()))
        refuse(origin_, where + ".behavior", p.value("behavior", json()), "unknown split behavior");
      s.behavior = behaviors.at(p["behavior"].get<std::string>());
      s.invert = get_bool(origin_, p, where, "invert", false);
    } else {
      refuse(origin_, where + ".type", t,
             "supported pre-tokenizers: ByteLevel, Split, and a Sequence of Split steps ending with ByteLevel");
    }
    steps_.push_back(std::move(s));
  }

  void load_post_processor(const json& p) {
    if (p.is_null()) return;
    std::string t = type_of(origin_, p, "post_processor");
    if (t != "ByteLevel")
      refuse(origin_, "post_processor.type", t,
             "only null or ByteLevel (which adds no ids) is supported; a template would add ids to encode()");
    only_keys(origin_, "post_processor", p, {"type", "add_prefix_space", "trim_offsets", "use_regex"});
  }

  void load_decoder(const json& d) {
    if (d.is_null()) {
      decoder_byte_level_ = false;
      return;
    }
    std::string t = type_of(origin_, d, "decoder");
    if (t != "ByteLevel") refuse(origin_, "decoder.type", t, "only the ByteLevel decoder (or null) is supported");
    only_keys(origin_, "decoder", d, {"type", "add_prefix_space", "trim_offsets", "use_regex"});
    decoder_byte_level_ = true;
  }

  void load_added_tokens(const json& a) {
    if (a.is_null()) return;
    if (!a.is_array()) invalid(origin_, "added_tokens", "expected an array");
    // tokenizers' AddedVocabulary::add_tokens: tokens in file order; an id is the token's id in the
    // model vocabulary, or the next id from the model vocabulary's size on.
    int32_t next_id = static_cast<int32_t>(model_vocab_len_);
    std::size_t i = 0;
    for (const auto& e : a) {
      std::string where = "added_tokens[" + std::to_string(i++) + "]";
      if (!e.is_object() || !e.contains("content") || !e["content"].is_string())
        invalid(origin_, where, "expected an object with a string content");
      only_keys(origin_, where, e, {"id", "content", "single_word", "lstrip", "rstrip", "normalized", "special"});
      AddedToken t;
      t.content = e["content"].get<std::string>();
      t.single_word = get_bool(origin_, e, where, "single_word", false);
      t.lstrip = get_bool(origin_, e, where, "lstrip", false);
      t.rstrip = get_bool(origin_, e, where, "rstrip", false);
      t.special = get_bool(origin_, e, where, "special", false);
      t.normalized = get_bool(origin_, e, where, "normalized", !t.special);
      if (t.content.empty()) continue;
      if (auto it = added_ids_.find(t.content); it != added_ids_.end() && added_by_id_[it->second] == t) continue;
      int32_t id;
      if (auto it = added_ids_.find(t.content); it != added_ids_.end()) id = it->second;
      else if (auto v = vocab_.find(t.content); v != vocab_.end()) id = v->second;
      else id = next_id++;
      if (id >= (1 << 26)) invalid(origin_, where, "id " + std::to_string(id) + " too large");
      if (e.contains("id") && e["id"].is_number_integer() && e["id"].get<int64_t>() != id)
        log::warn("{}: added token '{}' has id {} in the file but tokenizers gives it id {}; using {}", origin_,
                  t.content, e["id"].get<int64_t>(), id, id);
      added_ids_[t.content] = id;
      added_by_id_[id] = t;
    }
  }

  std::string normalize_text(std::string_view s) const {
    std::string cur(s);
    for (auto f : normalizers_) cur = unicode::normalize(cur, f);
    return cur;
  }

  void finish() {
    // Matchers: non-normalized tokens on the raw text, normalized ones (in their normalized form)
    // on the normalized text.
    for (auto& [id, t] : added_by_id_) {
      if (t.normalized) {
        std::string n = normalizers_.empty() ? t.content : normalize_text(t.content);
        if (n != t.content) added_normalized_text_[id] = n;
        normalized_matcher_.add(n, id);
      } else {
        raw_matcher_.add(t.content, id);
      }
    }
    // id -> token text and decoded bytes.
    int64_t size = vocab_max_id_ + 1;
    for (auto& [id, t] : added_by_id_) size = std::max<int64_t>(size, int64_t(id) + 1);
    token_text_.assign(static_cast<std::size_t>(size), std::string());
    has_token_.assign(static_cast<std::size_t>(size), 0);
    for (auto& [tok, id] : vocab_) {
      token_text_[id] = tok;
      has_token_[id] = 1;
    }
    for (auto& [id, t] : added_by_id_) {
      auto n = added_normalized_text_.find(id);
      token_text_[id] = n == added_normalized_text_.end() ? t.content : n->second;
      has_token_[id] = 1;
    }
    decoded_.resize(token_text_.size());
    for (std::size_t id = 0; id < token_text_.size(); ++id) {
      if (!has_token_[id]) continue;
      auto bytes = alphabet().to_bytes(token_text_[id]);
      decoded_[id] = bytes ? *bytes : token_text_[id];
    }
  }

  void load_tokenizer_config() {
    // eos/bos: tokenizer_config.json beside the file, else well-known special tokens.
    auto name_of = [](const json& v) -> std::optional<std::string> {
      if (v.is_string()) return v.get<std::string>();
      if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
      return std::nullopt;
    };
    std::optional<std::string> eos, bos;
    if (!path_.empty()) {
      auto cfg = std::filesystem::path(path_).parent_path() / "tokenizer_config.json";
      std::ifstream f(cfg);
      if (f) {
        try {
          json c = json::parse(f);
          if (c.contains("eos_token")) eos = name_of(c["eos_token"]);
          if (c.contains("bos_token")) bos = name_of(c["bos_token"]);
        } catch (const std::exception& e) {
          log::warn("{}: ignoring unreadable {} ({})", origin_, cfg.string(), e.what());
        }
      }
    }
    auto pick = [&](const std::optional<std::string>& named, std::initializer_list<const char*> known) -> int32_t {
      if (named)
        if (auto id = token_to_id(*named)) return *id;
      for (const char* k : known)
        if (auto it = added_ids_.find(k); it != added_ids_.end() && added_by_id_[it->second].special) return it->second;
      return -1;
    };
    eos_ = pick(eos, {"<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>"});
    bos_ = pick(bos, {"<s>", "<|begin_of_text|>", "<bos>"});
  }

  // --- encoding ------------------------------------------------------------------------------

  void encode_valid(std::string_view text, std::vector<int32_t>& out) const {
    if (text.empty()) return;
    // 1. Non-normalized added tokens on the raw text; 2. normalize the rest; 3. normalized added
    // tokens on the normalized text; 4. pre-tokenize and BPE what is left.
    split_added(text, raw_matcher_, out, [&](std::string_view seg) {
      if (normalizers_.empty()) {
        split_added(seg, normalized_matcher_, out, [&](std::string_view s) { pre_tokenize_and_bpe(s, out); });
      } else {
        std::string norm = normalize_text(seg);
        split_added(norm, normalized_matcher_, out, [&](std::string_view s) { pre_tokenize_and_bpe(s, out); });
      }
    });
  }

  /// AddedVocabulary::find_matches: matches with the single_word / lstrip / rstrip flags; text
  /// between matches goes to `rest`.
  template <class Rest>
  void split_added(std::string_view s, const AddedMatcher& m, std::vector<int32_t>& out, Rest&& rest) const {
    if (s.empty()) return;
    if (m.empty()) {
      rest(s);
      return;
    }
    std::size_t start_offset = 0;
    m.find_iter(s, [&](std::size_t start, std::size_t stop, int32_t id) {
      const AddedToken& t = added_by_id_.at(id);
      if (t.single_word) {
        bool start_space = start == 0 || !unicode::is_word_char(unicode::last_code_point(s.substr(0, start)));
        bool stop_space = true;
        if (stop != s.size()) {
          std::size_t i = stop;
          stop_space = !unicode::is_word_char(unicode::next_code_point(s, i));
        }
        if (!stop_space || !start_space) return;
      }
      if (t.lstrip) {
        std::size_t ns = start;
        while (ns > 0) {
          std::size_t j = ns - 1;
          while (j > 0 && (static_cast<unsigned char>(s[j]) & 0xC0) == 0x80) --j;
          std::size_t k = j;
          if (!unicode::is_white_space(unicode::next_code_point(s, k))) break;
          ns = j;
        }
        start = std::max(ns, start_offset);
      }
      if (t.rstrip) {
        std::size_t k = stop;
        while (k < s.size()) {
          std::size_t k2 = k;
          if (!unicode::is_white_space(unicode::next_code_point(s, k2))) break;
          k = k2;
        }
        stop = k;
      }
      if (start_offset < start) rest(s.substr(start_offset, start - start_offset));
      out.push_back(id);
      start_offset = stop;
    });
    if (start_offset < s.size()) rest(s.substr(start_offset));
  }

  void pre_tokenize_and_bpe(std::string_view seg, std::vector<int32_t>& out) const {
    if (seg.empty()) return;
    // Fast path: one ByteLevel step (GPT-2 / GPT-NeoX): regex matches go straight to BPE.
    if (steps_.size() == 1) {
      const Step& st = steps_[0];
      std::string prefixed;
      if (st.add_prefix_space && seg[0] != ' ') {
        prefixed.reserve(seg.size() + 1);
        prefixed.push_back(' ');
        prefixed.append(seg);
        seg = prefixed;
      }
      if (!st.use_regex) return bpe(seg, out);
      std::size_t prev = 0;
      st.regex->find_iter(seg, [&](std::size_t a, std::size_t b) {
        if (prev != a) bpe(seg.substr(prev, a - prev), out);
        if (b > a) bpe(seg.substr(a, b - a), out);
        prev = b;
      });
      if (prev != seg.size()) bpe(seg.substr(prev), out);
      return;
    }
    std::vector<std::string_view> pieces{seg}, next;
    std::vector<std::unique_ptr<std::string>> storage;
    for (const Step& st : steps_) {
      next.clear();
      for (auto p : pieces) {
        if (st.byte_level) {
          if (st.add_prefix_space && p[0] != ' ') {
            storage.push_back(std::make_unique<std::string>(" " + std::string(p)));
            p = *storage.back();
          }
          if (st.use_regex) split_piece(p, *st.regex, Behavior::Isolated, false, next);
          else next.push_back(p);
        } else {
          split_piece(p, *st.regex, st.behavior, st.invert, next);
        }
      }
      pieces.swap(next);
    }
    for (auto p : pieces) bpe(p, out);
  }

  /// BPE of one pre-token (its bytes), through the word cache.
  void bpe(std::string_view w, std::vector<int32_t>& out) const {
    if (w.empty()) return;
    if (w.size() == 1 && byte_id_[static_cast<unsigned char>(w[0])] >= 0 && !ignore_merges_) {
      out.push_back(byte_id_[static_cast<unsigned char>(w[0])]);
      return;
    }
    if (w.size() >= 256) return merge_word(w, out);
    WordCache& cache = word_cache(serial_);
    uint64_t h = hash_bytes(w);
    auto& slot = cache.slots[h & (WordCache::kSlots - 1)];
    if (slot.hash == h && slot.key == w) {
      out.insert(out.end(), slot.ids.begin(), slot.ids.end());
      return;
    }
    std::size_t before = out.size();
    merge_word(w, out);
    slot.hash = h;
    slot.key.assign(w.data(), w.size());
    slot.ids.assign(out.begin() + static_cast<std::ptrdiff_t>(before), out.end());
  }

  /// BPE::merge_word + Word::merge_all: initial symbols (unk / byte_fallback as tokenizers), then
  /// the lowest-rank pair first, the leftmost among equal ranks.
  void merge_word(std::string_view w, std::vector<int32_t>& out) const {
    if (ignore_merges_) {
      if (auto it = vocab_bytes_.find(std::string(w)); it != vocab_bytes_.end()) {
        out.push_back(it->second);
        return;
      }
    }
    thread_local std::vector<int32_t> sym;
    sym.clear();
    int32_t unk_pending = -1;  // fused unk run
    for (unsigned char b : w) {
      int32_t id = byte_id_[b];
      if (id >= 0) {
        if (unk_pending >= 0) { sym.push_back(unk_pending); unk_pending = -1; }
        sym.push_back(id);
        continue;
      }
      if (byte_fallback_) {
        // The byte-level character's UTF-8 bytes, as <0xXX> tokens (all of them, or none).
        std::string ch;
        unicode::append_utf8(ch, alphabet().byte_to_cp[b]);
        std::vector<int32_t> fb;
        for (unsigned char x : ch) {
          char name[8];
          std::snprintf(name, sizeof name, "<0x%02X>", x);
          auto it = vocab_.find(name);
          if (it == vocab_.end()) { fb.clear(); break; }
          fb.push_back(it->second);
        }
        if (!fb.empty()) {
          // tokenizers adds these without flushing a pending unk first.
          sym.insert(sym.end(), fb.begin(), fb.end());
          continue;
        }
      }
      if (unk_token_) {
        if (unk_id_ < 0)
          throw DataError(origin_ + ": model.unk_token '" + *unk_token_ + "' is not in model.vocab");
        if (unk_pending >= 0 && !fuse_unk_) sym.push_back(unk_pending);
        unk_pending = unk_id_;
      }
      // no unk_token: the character is dropped, as tokenizers does
    }
    if (unk_pending >= 0) sym.push_back(unk_pending);
    if (sym.size() > 1) {
      if (sym.size() <= 48) merge_small(sym);
      else merge_queue(sym);
    }
    out.insert(out.end(), sym.begin(), sym.end());
  }

  void merge_small(std::vector<int32_t>& sym) const {
    thread_local std::vector<uint64_t> pr;  // per adjacent pair: rank << 32 | merged id, or kNone
    std::size_t n = sym.size();
    pr.resize(n);
    for (std::size_t i = 0; i + 1 < n; ++i) pr[i] = merges_.find(sym[i], sym[i + 1]);
    while (n > 1) {
      std::size_t best = n;
      uint64_t bv = MergeTable::kNone;
      for (std::size_t i = 0; i + 1 < n; ++i) {
        uint64_t v = pr[i];
        if (v == MergeTable::kNone) continue;
        if (best == n || (v >> 32) < (bv >> 32)) {  // strict: the leftmost of equal ranks
          bv = v;
          best = i;
        }
      }
      if (best == n) break;
      sym[best] = static_cast<int32_t>(uint32_t(bv));
      sym.erase(sym.begin() + static_cast<std::ptrdiff_t>(best) + 1);
      std::copy(pr.begin() + static_cast<std::ptrdiff_t>(best) + 1, pr.begin() + static_cast<std::ptrdiff_t>(n),
                pr.begin() + static_cast<std::ptrdiff_t>(best));
      --n;
      if (best > 0) pr[best - 1] = merges_.find(sym[best - 1], sym[best]);
      if (best + 1 < n) pr[best] = merges_.find(sym[best], sym[best + 1]);
    }
  }

  /// Word::merge_all for long words: a priority queue of (rank, position) over a linked list.
  void merge_queue(std::vector<int32_t>& sym) const {
    struct S { int32_t c; int32_t prev, next; bool alive; };
    std::vector<S> s(sym.size());
    for (std::size_t i = 0; i < sym.size(); ++i)
      s[i] = {sym[i], int32_t(i) - 1, i + 1 < sym.size() ? int32_t(i + 1) : -1, true};
    struct M { uint32_t rank; int32_t pos; int32_t new_id; };
    auto cmp = [](const M& a, const M& b) { return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos; };
    std::priority_queue<M, std::vector<M>, decltype(cmp)> q(cmp);
    for (std::size_t i = 0; i + 1 < sym.size(); ++i) {
      uint64_t v = merges_.find(sym[i], sym[i + 1]);
      if (v != MergeTable::kNone) q.push({uint32_t(v >> 32), int32_t(i), int32_t(uint32_t(v))});
    }
    while (!q.empty()) {
      M top = q.top();
      q.pop();
      S& cur = s[top.pos];
      if (!cur.alive || cur.next < 0) continue;
      S& right = s[cur.next];
      uint64_t v = merges_.find(cur.c, right.c);
      if (v == MergeTable::kNone || int32_t(uint32_t(v)) != top.new_id) continue;
      cur.c = top.new_id;
      right.alive = false;
      int32_t rn = right.next;
      cur.next = rn;
      if (rn >= 0) s[rn].prev = top.pos;
      if (cur.prev >= 0) {
        uint64_t pv = merges_.find(s[cur.prev].c, cur.c);
        if (pv != MergeTable::kNone) q.push({uint32_t(pv >> 32), cur.prev, int32_t(uint32_t(pv))});
      }
      if (rn >= 0) {
        uint64_t nv = merges_.find(cur.c, s[rn].c);
        if (nv != MergeTable::kNone) q.push({uint32_t(nv >> 32), top.pos, int32_t(uint32_t(nv))});
      }
    }
    sym.clear();
    for (auto& x : s)
      if (x.alive) sym.push_back(x.c);
  }

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

}  // namespace

std::unique_ptr<Tokenizer> load_bpe_tokenizer_json(const std::string& json_text, const std::string& origin,
                                                   const std::string& path) {
  return std::make_unique<BpeTokenizer>(json_text, origin, path);
}

}  // namespace openlm
