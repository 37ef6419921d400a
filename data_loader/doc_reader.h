#pragma once
/// Streaming readers of `openlm prepare-data` inputs: plain text (documents separated by blank
/// lines) and JSONL (one JSON object per line, the document in a string field), each optionally
/// gzip (.gz, zlib) or zstd (.zst/.zstd, libzstd) compressed. Files are read in bounded chunks, so
/// memory does not grow with the file; every document and every bad line carries its 1-based line
/// number for messages ("FILE:LINE: ..."). Torch-free; the JSONL path is fuzzed (fuzz/jsonl_reader.cpp).
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace openlm::data {

/// A sequential byte source (a file, a decompressor over another stream, a memory buffer).
class ByteStream {
 public:
  virtual ~ByteStream() = default;
  /// Reads up to n bytes into buf; returns 0 only at the end. Throws IoError/DataError naming the file.
  virtual size_t read(char* buf, size_t n) = 0;
};

enum class Compression { None, Gzip, Zstd };
enum class DocFormat { Text, Jsonl };

struct InputKind {
  DocFormat format = DocFormat::Text;
  Compression compression = Compression::None;
};

/// From a file name: a trailing .gz / .zst / .zstd picks the decompressor; then .jsonl, .json or
/// .ndjson means JSONL, anything else plain text.
InputKind input_kind(const std::string& path);
/// Whether a folder walk takes a file of this name: .txt, .text, .jsonl, .json or .ndjson, each
/// optionally followed by .gz, .zst or .zstd; names starting with '.' are never taken.
bool is_input_file_name(const std::string& name);

/// A file read in chunks; `bytes_read` (optional) is increased by every byte read (progress/ETA).
std::unique_ptr<ByteStream> open_file_stream(const std::string& path, std::atomic<uint64_t>* bytes_read = nullptr);
/// A stream over bytes held in memory (tests, fuzzing).
std::unique_ptr<ByteStream> memory_stream(std::string data);
/// Wraps `raw` in the decompressor for `c` (None returns raw). Concatenated gzip members and zstd
/// frames are read one after the other. Corrupt or truncated data throws DataError naming `label`.
std::unique_ptr<ByteStream> decompress_stream(std::unique_ptr<ByteStream> raw, Compression c, const std::string& label);

/// Why a line was refused (BadLine::None: a good document).
enum class BadLine { None, InvalidUtf8, NotJson, NotObject, MissingField, EmptyDocument };
/// The name used in messages and in the stats file ("invalid_utf8", "not_json", ...).
const char* bad_line_name(BadLine b);

/// Parses one JSONL line (strict JSON, UTF-8 already checked by the caller): the line must be an
/// object whose member `field` is a non-empty string (when a key repeats, the last one counts, as in
/// Python's json). On success stores the string in `text`; otherwise returns the reason and a
/// description in `why`.
BadLine parse_jsonl_line(std::string_view line, const std::string& field, std::string& text, std::string& why);

struct DocRecord {
  std::string text;            ///< the document (good records only)
  int64_t line = 0;            ///< 1-based: the document's first line, or the bad line
  BadLine bad = BadLine::None; ///< != None: a refused line (text is empty)
  std::string why;             ///< what is wrong with a bad line
};

/// Documents of one input, in order. Text: a document is a run of lines that are not blank
/// (whitespace only), joined with "\n"; a trailing '\r' of each line is dropped; a document holding
/// a line that is not valid UTF-8 is returned as one bad record (the line of the first such line).
/// JSONL: one record per line; blank lines are skipped and counted.
class DocReader {
 public:
  /// Longest line accepted (a longer one is a DataError naming file and line: a file with no
  /// newlines at all must not take unbounded memory).
  static constexpr size_t kMaxLineBytes = size_t(1) << 30;

  DocReader(std::unique_ptr<ByteStream> in, std::string label, DocFormat format, std::string text_field);
  /// The next document or bad line; false at the end of the input.
  bool next(DocRecord& out);
  /// Blank JSONL lines skipped so far.
  int64_t blank_lines() const { return blank_lines_; }
  int64_t lines() const { return line_no_; }

 private:
  bool next_line(std::string& line);

  std::unique_ptr<ByteStream> in_;
  std::string label_, field_;
  DocFormat format_;
  std::string buf_;  // bytes read but not yet returned as lines: buf_[pos_, end)
  size_t pos_ = 0;
  bool eof_ = false;
  int64_t line_no_ = 0, blank_lines_ = 0;
  std::string line_;
};

}  // namespace openlm::data
