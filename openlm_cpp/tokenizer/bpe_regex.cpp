// The pre-tokenizer's regular expressions (bpe_regex.h): PCRE2 (UTF + UCP, JIT) with Oniguruma's
// find_iter semantics and Oniguruma's Unicode classes.
#include "openlm_cpp/tokenizer/bpe_regex.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace openlm::bpe {
namespace {

/// `tokenizers` compiles patterns with Oniguruma, whose Unicode tables (Unicode 16.0 in
/// tokenizers 0.23) are newer than PCRE2 10.42's (14.0), and whose \s is White_Space without
/// U+180E. onig_compatible() rewrites the escapes whose meaning would differ, so that PCRE2 (UTF +
/// UCP) matches what Oniguruma matches: \s/\S as Oniguruma's 25 code points; \p{L} and \p{N}
/// (and \P{L}, \P{N}) and \d, \D as PCRE2's property plus the code points Unicode 15 and 16 added to
/// them (measured against tokenizers 0.23.3; tests/tokenizer checks every code point). Escapes
/// whose semantics differ between the engines and are not rewritten (\w \b \h \p{other} ...)
/// are refused by name.
constexpr const char* kOnigSpace = R"(\t-\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000})";
constexpr const char* kOnigExtraL =
    R"(\x{1C89}-\x{1C8A}\x{A7CB}-\x{A7CD}\x{A7DA}-\x{A7DC}\x{105C0}-\x{105F3}\x{10D4A}-\x{10D65}\x{10D6F}-\x{10D85})"
    R"(\x{10EC2}-\x{10EC4}\x{1123F}-\x{11240}\x{11380}-\x{11389}\x{1138B}\x{1138E}\x{11390}-\x{113B5}\x{113B7})"
    R"(\x{113D1}\x{113D3}\x{11BC0}-\x{11BE0}\x{11F02}\x{11F04}-\x{11F10}\x{11F12}-\x{11F33}\x{1342F})"
    R"(\x{13441}-\x{13446}\x{13460}-\x{143FA}\x{16100}-\x{1611D}\x{16D40}-\x{16D6C}\x{18CFF}\x{1B132}\x{1B155})"
    R"(\x{1DF25}-\x{1DF2A}\x{1E030}-\x{1E06D}\x{1E4D0}-\x{1E4EB}\x{1E5D0}-\x{1E5ED}\x{1E5F0}\x{2B739})"
    R"(\x{2EBF0}-\x{2EE5D}\x{31350}-\x{323AF})";
constexpr const char* kOnigExtraN =
    R"(\x{10D40}-\x{10D49}\x{116D0}-\x{116E3}\x{11BF0}-\x{11BF9}\x{11F50}-\x{11F59}\x{16130}-\x{16139})"
    R"(\x{16D70}-\x{16D79}\x{1CCF0}-\x{1CCF9}\x{1D2C0}-\x{1D2D3}\x{1E4F0}-\x{1E4F9}\x{1E5F1}-\x{1E5FA})";

constexpr const char* kOnigExtraNd =
    R"(\x{10D40}-\x{10D49}\x{116D0}-\x{116E3}\x{11BF0}-\x{11BF9}\x{11F50}-\x{11F59}\x{16130}-\x{16139})"
    R"(\x{16D70}-\x{16D79}\x{1CCF0}-\x{1CCF9}\x{1E4F0}-\x{1E4F9}\x{1E5F1}-\x{1E5FA})";

}  // namespace

std::string onig_compatible(const std::string& p) {
  std::string out;
  bool in_class = false;
  auto bad = [&](const std::string& esc, const std::string& why) {
    throw std::invalid_argument("the escape " + esc + " " + why);
  };
  for (std::size_t i = 0; i < p.size(); ++i) {
    char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      char d = p[i + 1];
      ++i;
      if (d == 's' || d == 'S') {
        if (d == 's') out += in_class ? std::string(kOnigSpace) : "[" + std::string(kOnigSpace) + "]";
        else if (!in_class) out += "[^" + std::string(kOnigSpace) + "]";
        else bad("\\S", "inside a character class is not supported");
        continue;
      }
      if (d == 'd' || d == 'D') {  // \p{Nd}
        std::string set = std::string("\\d") + kOnigExtraNd;
        if (d == 'd') out += in_class ? set : "[" + set + "]";
        else if (!in_class) out += "[^" + set + "]";
        else bad("\\D", "inside a character class is not supported");
        continue;
      }
      if (d == 'p' || d == 'P') {
        std::string name;
        if (i + 1 < p.size() && p[i + 1] == '{') {
          std::size_t e = p.find('}', i + 2);
          if (e == std::string::npos) bad("\\" + std::string(1, d), "has no closing brace");
          name = p.substr(i + 2, e - i - 2);
          i = e;
        } else {
          bad("\\" + std::string(1, d) + (i + 1 < p.size() ? p.substr(i + 1, 1) : std::string()),
              "is not supported (write \\p{L} or \\p{N})");
        }
        if (name != "L" && name != "N")
          bad("\\" + std::string(1, d) + "{" + name + "}", "is not supported (only \\p{L} and \\p{N}, whose "
              "Unicode tables are matched to Oniguruma's)");
        std::string set = "\\p{" + name + "}" + (name == "L" ? kOnigExtraL : kOnigExtraN);
        if (d == 'p') out += in_class ? set : "[" + set + "]";
        else if (!in_class) out += "[^" + set + "]";
        else bad("\\P{" + name + "}", "inside a character class is not supported");
        continue;
      }
      if (d == 'u') {  // Oniguruma's \uHHHH
        if (i + 4 >= p.size() || !std::all_of(p.begin() + static_cast<std::ptrdiff_t>(i) + 1,
                                              p.begin() + static_cast<std::ptrdiff_t>(i) + 5,
                                              [](char h) { return std::isxdigit(static_cast<unsigned char>(h)); }))
          bad("\\u", "needs four hex digits");
        out += "\\x{" + p.substr(i + 1, 4) + "}";
        i += 4;
        continue;
      }
      if (d == 'v') { out += "\\x{0B}"; continue; }  // Oniguruma: vertical tab; PCRE2: a class
      if (std::isalnum(static_cast<unsigned char>(d)) && !std::strchr("tnrfae0xc", d))
        bad("\\" + std::string(1, d), "is not supported (its Unicode meaning differs between Oniguruma and PCRE2)");
      out += c;
      out += d;
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out += c;
      // A ']' (or '^]') right after '[' is a literal member.
      if (i + 1 < p.size() && p[i + 1] == '^') { out += '^'; ++i; }
      if (i + 1 < p.size() && p[i + 1] == ']') { out += ']'; ++i; }
      continue;
    }
    if (in_class && c == '[') {
      if (i + 1 < p.size() && p[i + 1] == ':') bad("[:class:]", "(POSIX classes) is not supported");
      throw std::invalid_argument("nested character classes are not supported");
    }
    if (in_class && c == ']') in_class = false;
    out += c;
  }
  return out;
}

MatchState::MatchState() {
  md = pcre2_match_data_create(1, nullptr);
  mctx = pcre2_match_context_create(nullptr);
  stack = pcre2_jit_stack_create(64 * 1024, 64 * 1024 * 1024, nullptr);
  if (stack) pcre2_jit_stack_assign(mctx, nullptr, stack);
  pcre2_set_heap_limit(mctx, 1u << 30);  // KiB: the interpreter fallback may use a lot
}
MatchState::~MatchState() {
  pcre2_match_data_free(md);
  pcre2_match_context_free(mctx);
  if (stack) pcre2_jit_stack_free(stack);
}
MatchState& MatchState::local() {
  thread_local MatchState st;
  return st;
}

Regex::Regex(const std::string& pattern, bool literal) {
  int err = 0;
  PCRE2_SIZE off = 0;
  std::string p;
  p = literal ? pattern : onig_compatible(pattern);
  uint32_t opts = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
  code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(p.data()), p.size(), opts, &err, &off, nullptr);
  if (!code_) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    throw std::invalid_argument("the pattern does not compile with PCRE2 at offset " + std::to_string(off) + ": " +
                                reinterpret_cast<char*>(msg));
  }
  jit_ = pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE) == 0;
}

Regex::~Regex() { pcre2_code_free(code_); }

}  // namespace openlm::bpe
