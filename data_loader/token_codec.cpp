#include "data_loader/token_codec.h"

#include <libdeflate.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>

#include "openlm_cpp/core/error.h"

namespace openlm::data {
namespace {

bool ends_with(const std::string& s, const char* suf) {
  size_t k = std::char_traits<char>::length(suf);
  return s.size() >= k && s.compare(s.size() - k, k, suf) == 0;
}

struct Decompressor {
  libdeflate_decompressor* d = libdeflate_alloc_decompressor();
  ~Decompressor() { libdeflate_free_decompressor(d); }
};

inline bool is_ws(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

/// Scans an optionally signed decimal integer at s[i]; advances i. Returns false if none or overflow.
/// Up to 19 digits cannot overflow uint64, so the digit loop needs no overflow test.
inline bool scan_int(const char* s, size_t n, size_t& i, int64_t& v) {
  bool neg = false;
  if (i < n && s[i] == '-') {
    neg = true;
    ++i;
  }
  const size_t start = i, lim = std::min(n, start + 19);
  uint64_t acc = 0;
  while (i < lim) {
    unsigned d = static_cast<unsigned>(static_cast<unsigned char>(s[i])) - '0';
    if (d > 9) break;
    acc = acc * 10 + d;
    ++i;
  }
  if (i == start) return false;
  if (i < n && static_cast<unsigned>(static_cast<unsigned char>(s[i])) - '0' <= 9) return false;  // 20+ digits
  if (neg) {
    if (acc > uint64_t(INT64_MAX) + 1) return false;
    v = static_cast<int64_t>(0 - acc);
  } else {
    if (acc > uint64_t(INT64_MAX)) return false;
    v = static_cast<int64_t>(acc);
  }
  return true;
}

/// Fast path for the common case: 1..7 digits followed by a non-digit, with 8 readable bytes.
/// Finds the digit count and converts with SWAR arithmetic (no per-digit branch, which
/// mispredicts on the varying lengths of token ids). Returns false to fall back to scan_int.
inline bool scan_int_fast(const char* s, size_t n, size_t& i, int64_t& v) {
  size_t p = i;
  bool neg = false;
  if (p < n && s[p] == '-') {
    neg = true;
    ++p;
  }
  if (p + 8 > n) return false;
  uint64_t c;
  std::memcpy(&c, s + p, 8);  // little-endian: s[p] is the lowest byte
  const uint64_t hi = 0xF0F0F0F0F0F0F0F0ULL, zeros = 0x3030303030303030ULL;
  // a byte is a digit iff its high nibble is 3 and adding 6 keeps it 3 (i.e. low nibble <= 9);
  // a carry out of a byte >= 0xFA only disturbs bytes after that (non-digit) byte
  uint64_t nondigit = ((c & hi) ^ zeros) | (((c + 0x0606060606060606ULL) & hi) ^ zeros);
  if (nondigit == 0) return false;  // 8+ digits
  unsigned k = static_cast<unsigned>(__builtin_ctzll(nondigit)) / 8;
  if (k == 0) return false;
  uint64_t d = (c << (8 * (8 - k))) & 0x0F0F0F0F0F0F0F0FULL;  // right-align: leading zero digits
  d = ((d * 2561) >> 8) & 0x00FF00FF00FF00FFULL;
  d = ((d * 6553601) >> 16) & 0x0000FFFF0000FFFFULL;
  d = (d * 42949672960001ULL) >> 32;
  v = neg ? -static_cast<int64_t>(d) : static_cast<int64_t>(d);
  i = p + k;
  return true;
}

[[noreturn]] void bad(const std::string& label, const std::string& what, size_t pos) {
  throw DataError(label + ": " + what + " at character " + std::to_string(pos));
}

}  // namespace

MemberKind member_kind(const std::string& name) {
  if (ends_with(name, ".json.gz")) return MemberKind::JsonGz;
  if (ends_with(name, ".json")) return MemberKind::Json;
  if (ends_with(name, ".txt")) return MemberKind::Txt;
  return MemberKind::Other;
}

void gunzip(const uint8_t* data, size_t n, std::vector<uint8_t>& out, const std::string& label,
            size_t max_out) {
  thread_local Decompressor dec;
  if (!dec.d) throw Error("libdeflate: cannot allocate a decompressor");
  out.clear();
  size_t in_pos = 0;
  if (n < 18) throw DataError(label + ": corrupt gzip (only " + std::to_string(n) + " bytes)");
  while (in_pos < n) {
    const uint8_t* in = data + in_pos;
    size_t in_n = n - in_pos;
    if (in_n < 18) throw DataError(label + ": corrupt gzip (trailing garbage)");
    // ISIZE (last 4 bytes of a single-member stream) hints the size; cap by deflate's max ratio.
    uint64_t hint = uint64_t(data[n - 4]) | uint64_t(data[n - 3]) << 8 | uint64_t(data[n - 2]) << 16 |
                    uint64_t(data[n - 1]) << 24;
    const uint64_t room = max_out - std::min(max_out, out.size());
    if (room == 0)
      throw DataError(label + ": gzip member inflates to more than " + std::to_string(max_out) +
                      " bytes, the limit for one member; inflation stopped");
    const uint64_t ratio_cap = uint64_t(in_n) * 1032 + 1024;  // deflate's largest expansion
    const uint64_t cap = std::min<uint64_t>(ratio_cap, room);
    size_t want = static_cast<size_t>(std::min<uint64_t>(std::max<uint64_t>(std::min(hint, cap), 1024), cap));
    while (true) {
      size_t base = out.size();
      out.resize(base + want);
      size_t used_in = 0, produced = 0;
      auto r = libdeflate_gzip_decompress_ex(dec.d, in, in_n, out.data() + base, want, &used_in, &produced);
      if (r == LIBDEFLATE_SUCCESS) {
        out.resize(base + produced);
        in_pos += used_in;
        break;
      }
      out.resize(base);
      if (r != LIBDEFLATE_INSUFFICIENT_SPACE) throw DataError(label + ": corrupt gzip data");
      if (want >= cap) {
        if (cap == room)
          throw DataError(label + ": gzip member inflates to more than " + std::to_string(max_out) +
                          " bytes, the limit for one member; inflation stopped");
        throw DataError(label + ": corrupt gzip (output exceeds " + std::to_string(cap) + " bytes)");
      }
      want = static_cast<size_t>(std::min<uint64_t>(uint64_t(want) * 2, cap));
    }
  }
}

std::vector<uint8_t> gzip_compress(const void* data, size_t n, int level) {
  libdeflate_compressor* c = libdeflate_alloc_compressor(level);
  if (!c) throw Error("libdeflate: cannot allocate a compressor (level " + std::to_string(level) + ")");
  std::vector<uint8_t> out(libdeflate_gzip_compress_bound(c, n));
  size_t k = libdeflate_gzip_compress(c, data, n, out.data(), out.size());
  libdeflate_free_compressor(c);
  if (k == 0) throw Error("libdeflate: gzip compression failed");
  out.resize(k);
  return out;
}

void parse_json_int_list(const char* s, size_t n, std::vector<int64_t>& out, const std::string& label) {
  size_t i = 0;
  while (i < n && is_ws(s[i])) ++i;
  if (i >= n || s[i] != '[') bad(label, "token list does not start with '['", i);
  ++i;
  while (i < n && is_ws(s[i])) ++i;
  if (i < n && s[i] == ']') {
    ++i;
  } else {
    while (true) {
      int64_t v;
      if (!scan_int_fast(s, n, i, v) && !scan_int(s, n, i, v)) bad(label, "expected an integer token id", i);
      if (i < n && (s[i] == '.' || s[i] == 'e' || s[i] == 'E'))
        bad(label, "token id is not an integer", i);
      out.push_back(v);
      if (i + 2 < n && s[i] == ',' && s[i + 1] == ' ' && s[i + 2] != ' ') {  // Python's ", "
        i += 2;
        continue;
      }
      while (i < n && is_ws(s[i])) ++i;
      if (i >= n) bad(label, "unterminated token list", i);
      if (s[i] == ',') {
        ++i;
        while (i < n && is_ws(s[i])) ++i;
        continue;
      }
      if (s[i] == ']') {
        ++i;
        break;
      }
      bad(label, "expected ',' or ']'", i);
    }
  }
  while (i < n && is_ws(s[i])) ++i;
  if (i != n) bad(label, "trailing data after token list", i);
}

void parse_python_list(const char* s, size_t n, std::vector<int64_t>& out, const std::string& label) {
  size_t i = 0;
  while (i < n && is_ws(s[i])) ++i;
  if (i >= n || s[i] != '[') bad(label, "token list does not start with '['", i);
  ++i;
  while (i < n && is_ws(s[i])) ++i;
  if (i < n && s[i] == ']') {
    ++i;
  } else {
    while (true) {
      if (i >= n) bad(label, "unterminated token list", i);
      char c = s[i];
      if (c == '\'' || c == '"') {  // a string element: read as token 0
        ++i;
        while (i < n && s[i] != c) i += (s[i] == '\\') ? 2 : 1;
        if (i >= n) bad(label, "unterminated string in token list", i);
        ++i;
        out.push_back(0);
      } else if (c == '-' || (c >= '0' && c <= '9')) {
        int64_t v;
        if (!scan_int(s, n, i, v)) bad(label, "bad integer token id", i);
        out.push_back(v);
      } else if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_') {
        while (i < n && ((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
                         (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
          ++i;
        out.push_back(0);
      } else {
        bad(label, "unexpected character in token list", i);
      }
      while (i < n && is_ws(s[i])) ++i;
      if (i >= n) bad(label, "unterminated token list", i);
      if (s[i] == ',') {
        ++i;
        while (i < n && is_ws(s[i])) ++i;
        if (i < n && s[i] == ']') {  // Python allows a trailing comma
          ++i;
          break;
        }
        continue;
      }
      if (s[i] == ']') {
        ++i;
        break;
      }
      bad(label, "expected ',' or ']'", i);
    }
  }
  while (i < n && is_ws(s[i])) ++i;
  if (i != n) bad(label, "trailing data after token list", i);
}

std::string format_json_int_list(const int64_t* ids, size_t n) {
  std::string s;
  s.reserve(n * 7 + 2);
  s.push_back('[');
  char buf[24];
  for (size_t i = 0; i < n; ++i) {
    if (i) s.append(", ");
    int k = std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(ids[i]));
    s.append(buf, static_cast<size_t>(k));
  }
  s.push_back(']');
  return s;
}

void decode_member(MemberKind kind, const uint8_t* data, size_t n, std::vector<int64_t>& out,
                   DecodeScratch& scratch, const std::string& label, size_t max_bytes) {
  out.clear();
  switch (kind) {
    case MemberKind::JsonGz:
      gunzip(data, n, scratch.inflated, label, max_bytes);
      parse_json_int_list(reinterpret_cast<const char*>(scratch.inflated.data()), scratch.inflated.size(),
                          out, label);
      return;
    case MemberKind::Json:
      parse_json_int_list(reinterpret_cast<const char*>(data), n, out, label);
      return;
    case MemberKind::Txt:
      parse_python_list(reinterpret_cast<const char*>(data), n, out, label);
      return;
    case MemberKind::Other:
      break;
  }
  throw DataError(label + ": not a token member (expected .json.gz, .json or .txt)");
}

}  // namespace openlm::data
