#pragma once
/// The native shard format: fixed-length pre-tokenised sequences as little-endian uint16 or uint32
/// (chosen by vocabulary size), read through mmap with no decoding. Layout (docs/DATA_FORMATS.md):
///
///   bytes [0, 8)    magic "OLMTOKS1"
///   bytes [8, 12)   uint32 LE: length H of the JSON header
///   bytes [12, 12+H) JSON header: {"format_version":1, "dtype":"uint16"|"uint32", "seq_len":L,
///                   "count":N, "tokenizer":"...", "xxh3_64":"<16 hex digits of the token data>"}
///   zero padding up to data_offset = round_up(12 + H, 64)
///   bytes [data_offset, data_offset + N*L*dtype_bytes): tokens, sequence-major [N, L]
///
/// The file size must match exactly. Torch-free; the header parser is fuzzed.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace openlm::data {

inline constexpr char kNativeMagic[9] = "OLMTOKS1";
inline constexpr const char* kNativeExt = ".olmtok";

struct NativeHeader {
  int format_version = 1;
  int dtype_bytes = 2;        ///< 2 = uint16, 4 = uint32
  int64_t seq_len = 0;        ///< tokens per stored sequence (model seq_len + 1)
  int64_t count = 0;          ///< number of sequences
  std::string tokenizer;      ///< tokenizer identity ("" when unknown, e.g. converted from tar)
  uint64_t checksum = 0;      ///< XXH3-64 of the token data
  uint64_t data_offset = 0;   ///< byte offset of the token data
};

/// dtype for a vocabulary: uint16 when every id fits (vocab_size <= 65536), else uint32.
int native_dtype_bytes(int64_t vocab_size);

/// Parses and validates the header of a native shard whose first `n` bytes are `data` and whose
/// total size is `file_size`. Throws DataError naming `label` on bad magic, JSON, fields, or a
/// file size that disagrees with count * seq_len.
NativeHeader parse_native_header(const uint8_t* data, size_t n, uint64_t file_size, const std::string& label);

/// Serialises a header (computes data_offset). Returns the bytes to place before the token data.
std::string encode_native_header(NativeHeader& h);

/// Writes one native shard: sequences are appended, then finish() writes `<path>.tmp` and renames
/// it to `path`, so a crash never leaves a half-written shard under the final name.
class NativeShardWriter {
 public:
  NativeShardWriter(std::string path, int dtype_bytes, int64_t seq_len, std::string tokenizer);
  /// Appends one sequence of exactly seq_len ids, each in [0, 2^(8*dtype_bytes)). Throws DataError.
  void append(const int64_t* ids, size_t n);
  int64_t count() const { return count_; }
  void finish();

 private:
  std::string path_, tokenizer_;
  int dtype_bytes_;
  int64_t seq_len_, count_ = 0;
  std::vector<uint8_t> data_;
};

/// A memory-mapped native shard. Thread-safe for reads.
class NativeShard {
 public:
  /// Maps and validates `path`. Throws IoError/DataError naming the path.
  explicit NativeShard(const std::string& path);
  ~NativeShard();
  NativeShard(const NativeShard&) = delete;
  NativeShard& operator=(const NativeShard&) = delete;

  const NativeHeader& header() const { return h_; }
  int64_t count() const { return h_.count; }
  int64_t seq_len() const { return h_.seq_len; }
  const std::string& path() const { return path_; }
  /// Copies sequence i's tokens [offset, offset+len) into out as int64. Caller checks bounds.
  void read(int64_t i, int64_t offset, int64_t len, int64_t* out) const;
  /// Recomputes the checksum over the token data; throws DataError on mismatch.
  void verify_checksum() const;
  /// Largest token id in the shard (a full scan).
  int64_t max_id() const;

 private:
  std::string path_;
  NativeHeader h_;
  const uint8_t* base_ = nullptr;
  size_t map_size_ = 0;
};

}  // namespace openlm::data
