#include "openlm_cpp/checkpoint/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <random>
#include <utility>

#include "openlm_cpp/core/error.h"

namespace openlm::fs {

namespace {
/// 16 hex digits nobody can predict (a fresh name for each temporary file).
std::string random_suffix() {
  static std::atomic<uint64_t> counter{0};
  thread_local std::mt19937_64 gen([] {
    std::random_device rd;
    return (uint64_t(rd()) << 32) ^ rd() ^ (uint64_t(::getpid()) << 16);
  }());
  const uint64_t v = gen() ^ (counter.fetch_add(1) * 0x9E3779B97F4A7C15ULL);
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(v));
  return hex;
}
}  // namespace

AtomicFile::AtomicFile(std::string path, unsigned mode) : path_(std::move(path)) {
  // A new file under a fresh name: O_EXCL never opens an existing file and, with O_NOFOLLOW, never
  // follows a symlink someone planted at that name (it fails with EEXIST; we pick another name).
  for (int attempt = 0;; ++attempt) {
    tmp_ = path_ + ".tmp-" + random_suffix();
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, static_cast<mode_t>(mode & 07777));
    if (fd_ >= 0) break;
    if (errno != EEXIST || attempt >= 16) throw_errno("cannot create", tmp_);
  }
}

AtomicFile::~AtomicFile() { abort(); }

namespace {
// Write-behind granularity: large files are pushed to the disk in chunks of this size while later
// chunks are still being written, and their pages are then dropped from the page cache.
constexpr uint64_t kWriteBehind = uint64_t(32) << 20;
}  // namespace

void AtomicFile::write_behind() {
#ifdef __linux__
  // Start writeback of everything written since the last call, then wait for the chunk before it
  // and drop its (now clean) pages. Measured on this project's disk: ~1.0-1.3 GB/s for a 1 GB file
  // versus 0.15-1.1 GB/s when the whole file sits dirty in the page cache until fsync, and the
  // checkpoint no longer evicts the training job's cached data. Failures here are only advisory:
  // commit()'s fsync reports real I/O errors.
  const uint64_t start = started_, len = size_ - started_;
  ::sync_file_range(fd_, static_cast<off64_t>(start), static_cast<off64_t>(len), SYNC_FILE_RANGE_WRITE);
  if (start > dropped_) {
    const uint64_t prev = dropped_, plen = start - dropped_;
    ::sync_file_range(fd_, static_cast<off64_t>(prev), static_cast<off64_t>(plen),
                      SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
    ::posix_fadvise(fd_, static_cast<off_t>(prev), static_cast<off_t>(plen), POSIX_FADV_DONTNEED);
    dropped_ = start;
  }
  started_ = size_;
#endif
}

void AtomicFile::write(const void* data, size_t n) {
  if (done_ || fd_ < 0) throw IoError("write to closed atomic file '" + tmp_ + "'");
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    // At most one write-behind chunk per call (Linux also caps a write at ~2 GiB).
    ssize_t w = ::write(fd_, p, std::min<uint64_t>(n, kWriteBehind));
    if (w < 0) {
      if (errno == EINTR) continue;
      throw_errno("write failed for", tmp_);
    }
    if (w == 0) throw IoError("write made no progress on '" + tmp_ + "'");
    p += w;
    n -= static_cast<size_t>(w);
    size_ += static_cast<uint64_t>(w);
    if (size_ - started_ >= kWriteBehind) write_behind();
  }
}

void AtomicFile::commit() {
  if (done_) throw IoError("atomic file '" + path_ + "' already committed");
  fsync_fd(fd_, tmp_);
  int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) {
    ::unlink(tmp_.c_str());
    done_ = true;
    throw_errno("close failed for", tmp_);
  }
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp_.c_str());
    done_ = true;
    errno = e;
    throw_errno("cannot rename temporary file onto", path_);
  }
  done_ = true;
  fsync_dir(parent_dir(path_));
}

void AtomicFile::abort() noexcept {
  if (done_) return;
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  ::unlink(tmp_.c_str());
  done_ = true;
}

void write_file_atomic(const std::string& path, std::string_view content) {
  AtomicFile f(path);
  f.write(content);
  f.commit();
}

namespace {
/// Closes a file descriptor on every path out of a scope.
struct FdCloser {
  int fd;
  ~FdCloser() {
    if (fd >= 0) ::close(fd);
  }
};

/// Reads `fd` to its end in 64 KiB chunks, handing each to `sink`; errors name `path`.
template <typename Sink>
void read_chunks(int fd, const std::string& path, Sink&& sink) {
  char buf[1 << 16];
  for (;;) {
    ssize_t r = ::read(fd, buf, sizeof buf);
    if (r < 0) {
      if (errno == EINTR) continue;
      throw_errno("read failed for", path);
    }
    if (r == 0) return;
    sink(buf, static_cast<size_t>(r));
  }
}
}  // namespace

void copy_file_atomic(const std::string& src, const std::string& dst) {
  // O_NONBLOCK: opening a FIFO must not block; it has no effect on a regular file's reads.
  FdCloser in{::open(src.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK)};
  if (in.fd < 0) throw_errno("cannot open", src);
  struct stat st {};
  if (::fstat(in.fd, &st) != 0) throw_errno("cannot stat", src);
  if (!S_ISREG(st.st_mode)) throw IoError("refusing to copy '" + src + "': not a regular file");
  AtomicFile out(dst, st.st_mode & 0666);
  read_chunks(in.fd, src, [&](const char* data, size_t n) { out.write(data, n); });
  out.commit();
}

std::string read_file(const std::string& path) {
  FdCloser in{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (in.fd < 0) throw_errno("cannot open", path);
  std::string out;
  read_chunks(in.fd, path, [&](const char* data, size_t n) { out.append(data, n); });
  return out;
}

void fsync_fd(int fd, const std::string& path_for_errors) {
  while (::fsync(fd) != 0) {
    if (errno == EINTR) continue;
    throw_errno("fsync failed for", path_for_errors);
  }
}

void fsync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw_errno("cannot open directory", dir);
  try {
    fsync_fd(fd, dir);
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
}

std::string parent_dir(const std::string& path) {
  auto pos = path.find_last_of('/');
  if (pos == std::string::npos) return ".";
  if (pos == 0) return "/";
  return path.substr(0, pos);
}

}  // namespace openlm::fs
