#include "openlm_cpp/tokenizer/unicode_text.h"

#include <cstring>
#include <memory>

#include <unicode/bytestream.h>
#include <unicode/normalizer2.h>
#include <unicode/uniset.h>
#include <unicode/unistr.h>
#include <unicode/uchar.h>
#include <unicode/uversion.h>

#include "openlm_cpp/core/error.h"

namespace openlm::unicode {
namespace {

/// Length of the well-formed sequence at s[i] (Unicode Table 3-7), or -(length of the maximal
/// subpart of an ill-formed sequence) when it is not well formed.
inline long sequence_at(std::string_view s, std::size_t i) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  unsigned char c = p[i];
  if (c < 0x80) return 1;
  unsigned char lo = 0x80, hi = 0xBF;
  int len;
  if (c >= 0xC2 && c <= 0xDF) len = 2;
  else if (c == 0xE0) { len = 3; lo = 0xA0; }
  else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) len = 3;
  else if (c == 0xED) { len = 3; hi = 0x9F; }
  else if (c == 0xF0) { len = 4; lo = 0x90; }
  else if (c >= 0xF1 && c <= 0xF3) len = 4;
  else if (c == 0xF4) { len = 4; hi = 0x8F; }
  else return -1;  // 80..C1, F5..FF: never start a sequence
  for (int k = 1; k < len; ++k) {
    if (i + k >= n) return -k;
    unsigned char b = p[i + k];
    if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return -k;
  }
  return len;
}

/// `tokenizers` normalizes with the crate unicode-normalization-alignments, whose tables are
/// Unicode 9.0: code points assigned later are left alone (combining class 0, no decomposition).
/// ICU's FilteredNormalizer2 over [:age=9.0:] reproduces that (as ICU's own IDNA2003 does with
/// Unicode 3.2); tests/tokenizer compares it with tokenizers over every code point.
const icu::Normalizer2* filtered_normalizer(NormalForm form, UErrorCode& st) {
  struct Forms {
    std::unique_ptr<icu::UnicodeSet> set;
    std::unique_ptr<icu::FilteredNormalizer2> f[4];
    UErrorCode status = U_ZERO_ERROR;
    Forms() {
      set = std::make_unique<icu::UnicodeSet>(icu::UnicodeString(u"[:age=9.0:]"), status);
      if (U_FAILURE(status)) return;
      set->freeze();
      const icu::Normalizer2* base[4] = {icu::Normalizer2::getNFCInstance(status), icu::Normalizer2::getNFDInstance(status),
                                         icu::Normalizer2::getNFKCInstance(status), icu::Normalizer2::getNFKDInstance(status)};
      if (U_FAILURE(status)) return;
      for (int i = 0; i < 4; ++i) f[i] = std::make_unique<icu::FilteredNormalizer2>(*base[i], *set);
    }
  };
  static const Forms forms;
  if (U_FAILURE(forms.status)) {
    st = forms.status;
    return nullptr;
  }
  return forms.f[static_cast<int>(form)].get();
}

}  // namespace

std::size_t valid_utf8_prefix(std::string_view s) {
  std::size_t i = 0;
  const std::size_t n = s.size();
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  while (i < n) {
    // ASCII fast path, 8 bytes at a time.
    while (i + 8 <= n) {
      uint64_t w;
      std::memcpy(&w, p + i, 8);
      if (w & 0x8080808080808080ULL) break;
      i += 8;
    }
    if (i >= n) break;
    if (p[i] < 0x80) { ++i; continue; }
    long l = sequence_at(s, i);
    if (l < 0) return i;
    i += static_cast<std::size_t>(l);
  }
  return n;
}

std::string replace_invalid_utf8(std::string_view s, std::size_t* replaced) {
  std::size_t ok = valid_utf8_prefix(s), count = 0;
  if (ok == s.size()) {
    if (replaced) *replaced = 0;
    return std::string(s);
  }
  std::string out;
  out.reserve(s.size() + 16);
  out.append(s.data(), ok);
  std::size_t i = ok;
  while (i < s.size()) {
    long l = sequence_at(s, i);
    if (l > 0) {
      out.append(s.data() + i, static_cast<std::size_t>(l));
      i += static_cast<std::size_t>(l);
    } else {
      out.append("\xEF\xBF\xBD");
      ++count;
      i += static_cast<std::size_t>(-l);
    }
  }
  if (replaced) *replaced = count;
  return out;
}

char32_t last_code_point(std::string_view s) {
  std::size_t i = s.size() - 1;
  while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
  return next_code_point(s, i);
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

const char* normal_form_name(NormalForm f) {
  switch (f) {
    case NormalForm::NFC: return "NFC";
    case NormalForm::NFD: return "NFD";
    case NormalForm::NFKC: return "NFKC";
    case NormalForm::NFKD: return "NFKD";
  }
  return "?";
}

std::string normalize(std::string_view s, NormalForm form) {
  // Trivially normalized text: ASCII is invariant under every form; for NFC every code point
  // below U+0300 is NFC_Quick_Check=Yes with combining class 0 and none composes with what
  // precedes it, so text without a UTF-8 lead byte >= 0xCC is already NFC.
  const unsigned char limit = form == NormalForm::NFC ? 0xCC : 0x80;
  bool trivial = true;
  for (unsigned char c : s)
    if (c >= limit) { trivial = false; break; }
  if (trivial) return std::string(s);
  UErrorCode st = U_ZERO_ERROR;
  const icu::Normalizer2* n = filtered_normalizer(form, st);
  if (U_FAILURE(st) || !n) throw Error(std::string("ICU normalizer unavailable: ") + u_errorName(st));
  std::string out;
  out.reserve(s.size() + 8);
  icu::StringByteSink<std::string> sink(&out);
  n->normalizeUTF8(0, icu::StringPiece(s.data(), static_cast<int32_t>(s.size())), sink, nullptr, st);
  if (U_FAILURE(st)) throw Error(std::string("ICU normalization failed: ") + u_errorName(st));
  return out;
}

std::string unicode_version() { return U_UNICODE_VERSION; }

bool is_word_char(char32_t c) {
  UChar32 u = static_cast<UChar32>(c);
  if (u_hasBinaryProperty(u, UCHAR_ALPHABETIC) || u_hasBinaryProperty(u, UCHAR_JOIN_CONTROL)) return true;
  int8_t t = u_charType(u);
  return t == U_NON_SPACING_MARK || t == U_ENCLOSING_MARK || t == U_COMBINING_SPACING_MARK ||
         t == U_DECIMAL_DIGIT_NUMBER || t == U_CONNECTOR_PUNCTUATION;
}

bool is_white_space(char32_t c) { return u_hasBinaryProperty(static_cast<UChar32>(c), UCHAR_WHITE_SPACE); }

}  // namespace openlm::unicode
