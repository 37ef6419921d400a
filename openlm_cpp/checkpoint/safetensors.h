#pragma once
/// The safetensors container, torch-free: header parsing/validation and writing over raw bytes.
///
/// File layout (docs/HF_FORMAT.md, docs/CHECKPOINT_FORMAT.md):
///   [u64 LE N][N bytes UTF-8 JSON header, space-padded][data buffer]
/// The header maps tensor names to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative
/// to the data buffer) plus an optional "__metadata__" {string: string}. Tensor data is little-endian,
/// row-major, with no padding between tensors.
///
/// The parser follows the reference reader's rejection rules and adds a few of its own (duplicate
/// keys, unknown fields); every rejection is a DataError whose message starts with the file name.
/// The torch adapter lives in tensor_file.h; this file stays torch-free so it can be fuzzed.
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace openlm::safetensors {

/// Element types, in the reference implementation's order (increasing alignment). The writer lays
/// tensors out by descending DType then by name, so with the 8-byte header padding every tensor
/// starts at an offset that is a multiple of its item size (zero-copy mmap stays aligned).
enum class DType : uint8_t { BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64 };

/// Bytes per element (1, 2, 4 or 8).
size_t dtype_size(DType d);
/// The header spelling ("F32", "BF16", ...).
const char* dtype_name(DType d);
/// Inverse of dtype_name; nullopt for an unknown spelling.
std::optional<DType> dtype_from_name(std::string_view name);

/// The reference reader's limit on N.
constexpr uint64_t kMaxHeaderSize = 100'000'000;

/// One tensor's header entry. Offsets are relative to the start of the data buffer.
struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<uint64_t> shape;  ///< [] is a scalar (one element)
  uint64_t begin = 0, end = 0;  ///< byte range [begin, end) in the data buffer
  uint64_t nbytes() const { return end - begin; }
  uint64_t numel() const;       ///< product of shape (validated not to overflow)
};

/// A parsed, validated header.
struct Header {
  std::vector<TensorInfo> tensors;  ///< sorted by data offset (file order)
  std::map<std::string, std::string> metadata;  ///< "__metadata__" (empty when absent)
  bool has_metadata = false;
  uint64_t header_len = 0;  ///< N
  uint64_t data_size = 0;   ///< bytes in the data buffer (== file size - 8 - N)
  uint64_t data_start() const { return 8 + header_len; }
  /// The entry named `name`, or nullptr.
  const TensorInfo* find(std::string_view name) const;
};

/// Checks the 8-byte length prefix against the file size and returns N. Throws DataError for a
/// file under 8 bytes, N > kMaxHeaderSize, or a header running past the end of the file.
uint64_t parse_header_length(const void* first8, uint64_t file_size, const std::string& file);

/// Parses and validates the N header bytes of a file of `file_size` bytes: UTF-8, JSON object,
/// entry types, known dtypes, no duplicate keys, shape/byte-size overflow, offsets tiling the data
/// buffer exactly from 0 (no gaps, no overlaps, no trailing bytes).
Header parse_header_json(std::string_view json, uint64_t file_size, const std::string& file);

/// parse_header_length + parse_header_json over a whole file image (a buffer or an mmap).
Header parse(const void* data, uint64_t size, const std::string& file);

/// A tensor to write: `nbytes` little-endian row-major bytes at `data` (data may be null when only
/// planning the layout).
struct TensorBytes {
  std::string name;
  DType dtype = DType::F32;
  std::vector<uint64_t> shape;
  const void* data = nullptr;
  uint64_t nbytes = 0;
};

/// The layout a writer will produce.
struct Plan {
  std::string prefix;          ///< 8-byte length + JSON header padded with spaces to a multiple of 8
  std::vector<size_t> order;   ///< indices into the input, in file order
  std::vector<uint64_t> begin; ///< data offset of input[i] (indexed like the input)
  uint64_t data_size = 0;      ///< total data bytes
  uint64_t file_size() const { return prefix.size() + data_size; }
};

/// Validates the tensors (non-empty, unique, UTF-8 names other than "__metadata__"; nbytes equal to
/// numel * item size) and builds the header. `metadata` is written as "__metadata__" with
/// "format": "pt" added unless the caller sets "format". Throws Error naming `file`.
Plan plan(const std::vector<TensorBytes>& tensors, const std::map<std::string, std::string>& metadata,
          const std::string& file);

/// A complete file image in memory (tests, fuzzing, small files).
std::string serialize(const std::vector<TensorBytes>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

/// Writes a file atomically (<path>.tmp, fsync, rename, fsync dir). Throws IoError on I/O failure,
/// leaving any previous `path` intact.
void write_file(const std::string& path, const std::vector<TensorBytes>& tensors,
                const std::map<std::string, std::string>& metadata = {});

/// Strict UTF-8 check (no overlongs, no surrogates, nothing above U+10FFFF).
bool is_valid_utf8(std::string_view s);

}  // namespace openlm::safetensors
