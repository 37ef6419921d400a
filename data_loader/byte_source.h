#pragma once
/// Random-access byte sources for shards. The loader reads shard members with positional reads
/// (pread), so several worker threads share one open file without seeking. Local paths are the only
/// store today; an object store or OpenLM's `pipe:` command URLs would be further implementations of
/// RandomAccessFile returned by open_byte_source(). No torch here.
#include <cstdint>
#include <memory>
#include <string>

namespace openlm::data {

/// A read-only file addressed by byte offset. Implementations must allow concurrent read_at().
class RandomAccessFile {
 public:
  virtual ~RandomAccessFile() = default;
  /// Total size in bytes.
  virtual uint64_t size() const = 0;
  /// Reads up to n bytes at `offset` into buf; returns the count read (less than n only at EOF).
  virtual size_t read_at(uint64_t offset, void* buf, size_t n) const = 0;
  /// The path or URL, for messages.
  virtual const std::string& path() const = 0;
};

/// Opens `uri` for positional reads. Plain paths and file:// URLs are local files; any other
/// scheme (pipe:, s3:, ...) throws ConfigError naming the URI. Throws IoError if the file is missing.
std::unique_ptr<RandomAccessFile> open_byte_source(const std::string& uri);

/// True when `uri` names a local file that exists.
bool byte_source_exists(const std::string& uri);

}  // namespace openlm::data
