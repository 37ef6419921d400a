#pragma once
/// POSIX tar framing (ustar, pax and GNU long-name extensions) as webdataset/OpenLM shards use it.
/// The reader only builds an index of regular-file members (name, data offset, size) from the
/// 512-byte headers, so members can then be read at random with pread. Torch-free and fuzzed
/// (fuzz/data_tar.cpp).
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace openlm::data {

/// One regular file inside a tar archive.
struct TarMember {
  std::string name;     ///< full path (pax `path` or GNU long name when present)
  uint64_t offset = 0;  ///< byte offset of the member's data in the archive
  uint64_t size = 0;    ///< data size in bytes
};

/// Reads up to n bytes at an offset; returns the count read (short only at end of file).
using ReadAtFn = std::function<size_t(uint64_t offset, void* buf, size_t n)>;

/// Indexes the regular-file members of a tar archive of `file_size` bytes. Throws DataError
/// naming `label` (the shard) and the offset on a bad header checksum, a bad size field, a member
/// whose data runs past the end of the file (truncated tar) or malformed pax records. Archives that
/// end at a block boundary without the two zero blocks are accepted (the data is complete).
std::vector<TarMember> index_tar(const ReadAtFn& read, uint64_t file_size, const std::string& label);

/// Same, over an in-memory archive.
std::vector<TarMember> index_tar_buffer(const void* data, size_t n, const std::string& label);

/// Writes a ustar archive of regular files (mode 0644, mtime 0 so output is reproducible), then
/// two zero blocks padded to a 10240-byte record as GNU tar and Python's tarfile do. Names longer
/// than 100 bytes use a pax `path` record.
class TarWriter {
 public:
  /// Opens `path` for writing (truncates). Throws IoError.
  explicit TarWriter(const std::string& path);
  ~TarWriter();
  TarWriter(const TarWriter&) = delete;
  TarWriter& operator=(const TarWriter&) = delete;
  void add(const std::string& name, const void* data, size_t n);
  /// Writes the end-of-archive blocks, flushes and closes. Throws IoError.
  void finish();

 private:
  void write_raw(const void* p, size_t n);
  void write_header(const std::string& name, uint64_t size, char type);
  std::string path_;
  std::FILE* f_ = nullptr;
  uint64_t written_ = 0;
};

}  // namespace openlm::data
