#pragma once
/// Crash-safe file replacement. A reader of `path` sees either the previous complete file or the new
/// complete file, never a torn one: bytes go to a fresh `<path>.tmp-<random>` beside it, which is
/// fsync'd, renamed over `path`, and then the containing directory is fsync'd so the rename itself
/// survives a power loss. The temporary file is created with O_CREAT|O_EXCL|O_NOFOLLOW under a name
/// nobody can predict, so a file or symlink planted beside the destination is never written through.
/// Torch-free (the safetensors writer and the fuzz build use it).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace openlm::fs {

/// Writes one file atomically in pieces. Usage: construct, write() any number of times, commit().
/// If commit() is never reached (an exception, a disk-full error), the destructor removes the
/// temporary file and the previous `path`, if any, is left untouched.
class AtomicFile {
 public:
  /// Creates a new `<path>.tmp-<random>` (O_EXCL|O_NOFOLLOW; `mode`, narrowed by the umask).
  /// Throws IoError naming the temporary path.
  explicit AtomicFile(std::string path, unsigned mode = 0644);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  /// Appends `n` bytes; loops over short writes and EINTR. Throws IoError (e.g. ENOSPC, EFBIG)
  /// naming the temporary path. Large files are written back in 32 MiB chunks as they grow
  /// (sync_file_range) and their pages dropped from the page cache, so commit()'s fsync has little
  /// left to do and a checkpoint does not flood the page cache.
  void write(const void* data, size_t n);
  void write(std::string_view s) { write(s.data(), s.size()); }
  /// Bytes written so far.
  uint64_t size() const { return size_; }
  /// fsync the data, close, rename over the destination, fsync the directory.
  void commit();
  /// Removes the temporary file without touching the destination (idempotent).
  void abort() noexcept;

  const std::string& path() const { return path_; }
  const std::string& tmp_path() const { return tmp_; }

 private:
  void write_behind();
  std::string path_, tmp_;
  int fd_ = -1;
  uint64_t size_ = 0;
  uint64_t started_ = 0;  // bytes whose writeback has been started
  uint64_t dropped_ = 0;  // bytes written back and dropped from the page cache
  bool done_ = false;
};

/// Replaces `path` by `content` atomically (the AtomicFile protocol in one call).
void write_file_atomic(const std::string& path, std::string_view content);

/// Copies the regular file `src` to `dst` atomically. The copy's permission bits are the source's
/// (without execute bits), further narrowed by the umask: a copy is never more readable than its
/// source. Anything but a regular file (a FIFO, a device such as /dev/zero, a directory) is refused
/// with an IoError naming `src`; symlinks are followed (callers decide which sources are allowed).
void copy_file_atomic(const std::string& src, const std::string& dst);

/// Reads a whole (small) file. Throws IoError naming the path.
std::string read_file(const std::string& path);

/// fsync an open descriptor; throws IoError naming `path_for_errors`.
void fsync_fd(int fd, const std::string& path_for_errors);

/// fsync a directory so that renames and creations inside it are durable.
void fsync_dir(const std::string& dir);

/// The directory part of `path` ("." when there is none).
std::string parent_dir(const std::string& path);

}  // namespace openlm::fs
