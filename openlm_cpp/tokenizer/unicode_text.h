#pragma once
/// UTF-8 helpers of the tokenizers (no torch): the invalid-UTF-8 rule, Unicode normalization
/// (ICU) and the two character classes Hugging Face `tokenizers` uses for added-token flags.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace openlm::unicode {

/// Length of the longest valid UTF-8 prefix of `s` (s.size() when all of it is valid).
std::size_t valid_utf8_prefix(std::string_view s);

/// `s` with every ill-formed UTF-8 subsequence replaced by U+FFFD exactly as Python's
/// `bytes.decode("utf-8", errors="replace")` (and Rust's `String::from_utf8_lossy`) do: one
/// U+FFFD per maximal subpart of an ill-formed sequence (Unicode 15, section 3.9, U+FFFD
/// substitution of maximal subparts). `*replaced` (if given) receives the number of U+FFFD added.
std::string replace_invalid_utf8(std::string_view s, std::size_t* replaced = nullptr);

/// Decodes one code point at s[i] (s valid UTF-8); advances i.
inline char32_t next_code_point(std::string_view s, std::size_t& i) {
  unsigned char c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) { ++i; return c; }
  if (c < 0xE0) { char32_t r = ((c & 0x1F) << 6) | (s[i + 1] & 0x3F); i += 2; return r; }
  if (c < 0xF0) {
    char32_t r = ((c & 0x0F) << 12) | ((s[i + 1] & 0x3F) << 6) | (s[i + 2] & 0x3F);
    i += 3;
    return r;
  }
  char32_t r = ((c & 0x07) << 18) | ((s[i + 1] & 0x3F) << 12) | ((s[i + 2] & 0x3F) << 6) | (s[i + 3] & 0x3F);
  i += 4;
  return r;
}
/// The code point that ends at s[end) (s valid UTF-8, end > 0).
char32_t last_code_point(std::string_view s);
void append_utf8(std::string& out, char32_t cp);

enum class NormalForm { NFC, NFD, NFKC, NFKD };
const char* normal_form_name(NormalForm f);
/// `s` (valid UTF-8) in the given normalization form (ICU). Text that is trivially in the form
/// (ASCII; for NFC any text below U+0300) is returned without calling ICU.
std::string normalize(std::string_view s, NormalForm form);
/// The Unicode version of the normalization and property tables (ICU's).
std::string unicode_version();

/// Rust `regex`'s Unicode `\w` (UTS#18 word: Alphabetic, marks, decimal digits, connector
/// punctuation, Join_Control) and `\s` (White_Space), as `tokenizers` uses them for the
/// single_word / lstrip / rstrip flags of added tokens.
bool is_word_char(char32_t c);
bool is_white_space(char32_t c);

}  // namespace openlm::unicode
