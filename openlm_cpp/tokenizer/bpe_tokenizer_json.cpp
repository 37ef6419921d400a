// tokenizer.json -> BpeTokenizer: parsing and validation of every part (model, normalizer,
// pre-tokenizer, post-processor, decoder, added tokens) and tokenizer_config.json's eos/bos.
// Anything outside docs/TOKENIZERS.md's table is refused by its JSON key and value.
#include <atomic>
#include <filesystem>
#include <fstream>
#include <limits>
#include <stdexcept>

#include "openlm_cpp/core/error.h"
#include "openlm_cpp/core/log.h"
#include "openlm_cpp/tokenizer/bpe_tokenizer_impl.h"

namespace openlm::bpe_impl {
namespace {

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
// Regular expressions (bpe_regex.h); an unsupported pattern is refused by its key.

std::shared_ptr<Regex> compile_regex(const std::string& pattern, bool literal, const std::string& origin,
                                     const std::string& key) {
  try {
    return std::make_shared<Regex>(pattern, literal);
  } catch (const std::invalid_argument& e) {
    refuse(origin, key, pattern, e.what());
  }
}

constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

/// Distinguishes tokenizer instances in the per-thread word caches (bpe_tokenizer.cpp).
std::atomic<uint64_t> g_serial{1};

uint64_t fnv1a(std::string_view s) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
  return h;
}

std::string hex(uint64_t h) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

}  // namespace

BpeTokenizer::BpeTokenizer(const std::string& text, const std::string& origin, const std::string& path)
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

void BpeTokenizer::load_model(const json& m) {
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

void BpeTokenizer::load_normalizer(const json& n, const std::string& where) {
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

void BpeTokenizer::load_pre_tokenizer(const json& p, const std::string& where, bool top) {
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

void BpeTokenizer::load_post_processor(const json& p) {
  if (p.is_null()) return;
  std::string t = type_of(origin_, p, "post_processor");
  if (t != "ByteLevel")
    refuse(origin_, "post_processor.type", t,
           "only null or ByteLevel (which adds no ids) is supported; a template would add ids to encode()");
  only_keys(origin_, "post_processor", p, {"type", "add_prefix_space", "trim_offsets", "use_regex"});
}

void BpeTokenizer::load_decoder(const json& d) {
  if (d.is_null()) {
    decoder_byte_level_ = false;
    return;
  }
  std::string t = type_of(origin_, d, "decoder");
  if (t != "ByteLevel") refuse(origin_, "decoder.type", t, "only the ByteLevel decoder (or null) is supported");
  only_keys(origin_, "decoder", d, {"type", "add_prefix_space", "trim_offsets", "use_regex"});
  decoder_byte_level_ = true;
}

void BpeTokenizer::load_added_tokens(const json& a) {
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

void BpeTokenizer::finish() {
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

void BpeTokenizer::load_tokenizer_config() {
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

}  // namespace openlm::bpe_impl

namespace openlm {

std::unique_ptr<Tokenizer> load_bpe_tokenizer_json(const std::string& json_text, const std::string& origin,
                                                   const std::string& path) {
  return std::make_unique<bpe_impl::BpeTokenizer>(json_text, origin, path);
}

}  // namespace openlm
