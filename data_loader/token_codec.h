#pragma once
/// Decoding of OpenLM shard members into token ids: gzip inflate (libdeflate), a hand-rolled JSON
/// integer-list scanner, and the legacy Python-list text format. Torch-free and fuzzed
/// (fuzz/data_tokens.cpp). Every error is a DataError naming `label` (shard/member).
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace openlm::data {

/// How a tar member's bytes are encoded, from its name.
enum class MemberKind {
  JsonGz,   ///< <key>.json.gz: gzip of a JSON list of ints (current OpenLM/DCLM tools)
  Json,     ///< <key>.json: a plain JSON list of ints
  Txt,      ///< <key>.txt: Python-list text; non-int elements (e.g. '<|endoftext|>') read as 0
  Other     ///< anything else (ignored by the reader, like webdataset ignores unknown keys)
};
MemberKind member_kind(const std::string& name);

/// Default bound on one member's (inflated) bytes when the reader knows no sequence length
/// (`openlm data stats|convert`).
inline constexpr size_t kDefaultMaxMemberBytes = size_t(1) << 30;

/// Bound on one member's inflated bytes for a loader that needs `sample_len` (= seq_len + 1) tokens
/// per sequence: what a JSON list of sample_len int64 ids can take (20 characters for
/// -9223372036854775808 plus up to 4 separator characters each, e.g. ",\n  " of json.dumps(indent=2))
/// plus 64 KiB of slack. A member inflating past this is refused (a gzip bomb, or a member far
/// longer than any crop needs) before it can take more memory.
inline size_t max_member_bytes(int64_t sample_len) {
  return static_cast<size_t>(sample_len > 0 ? sample_len : 1) * 24 + (size_t(64) << 10);
}

/// Inflates one or more concatenated gzip members into `out` (resized to the output length).
/// Output is capped at `max_out` bytes: inflation stops there with a DataError naming `label`, so a
/// gzip bomb or a corrupt size field cannot exhaust memory.
void gunzip(const uint8_t* data, size_t n, std::vector<uint8_t>& out, const std::string& label,
            size_t max_out = kDefaultMaxMemberBytes);

/// gzip-compresses `n` bytes (libdeflate, compression level 1..12; 6 matches Python's default 9
/// closely in size and is much faster).
std::vector<uint8_t> gzip_compress(const void* data, size_t n, int level = 6);

/// Parses `[int, int, ...]` (JSON whitespace allowed, empty list allowed) and appends to out.
/// Rejects floats, strings, nesting, trailing garbage and values outside int64.
void parse_json_int_list(const char* s, size_t n, std::vector<int64_t>& out, const std::string& label);

/// Parses the legacy Python-list text: ints, quoted strings and bare words (None, ...) where any
/// non-int element becomes 0 (OpenLM's rule for "<|endoftext|>").
void parse_python_list(const char* s, size_t n, std::vector<int64_t>& out, const std::string& label);

/// Formats ids as compact JSON "[1, 2, 3]" (the spacing Python's json.dumps uses).
std::string format_json_int_list(const int64_t* ids, size_t n);

/// Per-thread scratch buffers for decode_member (reused to avoid allocation per member).
struct DecodeScratch {
  std::vector<uint8_t> raw;
  std::vector<uint8_t> inflated;
};

/// Decodes one member's bytes by its kind into `out` (cleared first). Throws DataError for
/// MemberKind::Other, and for a .json.gz member inflating past `max_bytes`.
void decode_member(MemberKind kind, const uint8_t* data, size_t n, std::vector<int64_t>& out,
                   DecodeScratch& scratch, const std::string& label, size_t max_bytes = kDefaultMaxMemberBytes);

}  // namespace openlm::data
