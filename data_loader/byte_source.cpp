#include "data_loader/byte_source.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "openlm_cpp/core/error.h"

namespace openlm::data {
namespace {

std::string local_path(const std::string& uri) {
  if (uri.rfind("file://", 0) == 0) return uri.substr(7);
  auto colon = uri.find("://");
  if (colon != std::string::npos || uri.rfind("pipe:", 0) == 0)
    throw ConfigError("", "data.manifests", 0,
                      "shard '" + uri + "': only local paths are supported as shard locations");
  return uri;
}

class LocalFile final : public RandomAccessFile {
 public:
  explicit LocalFile(std::string path) : path_(std::move(path)) {
    fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) throw_errno("cannot open shard", path_);
    struct stat st {};
    if (::fstat(fd_, &st) != 0) {
      int e = errno;
      ::close(fd_);
      errno = e;
      throw_errno("cannot stat shard", path_);
    }
    size_ = static_cast<uint64_t>(st.st_size);
  }
  ~LocalFile() override { ::close(fd_); }
  uint64_t size() const override { return size_; }
  size_t read_at(uint64_t offset, void* buf, size_t n) const override {
    size_t done = 0;
    auto* p = static_cast<char*>(buf);
    while (done < n) {
      ssize_t r = ::pread(fd_, p + done, n - done, static_cast<off_t>(offset + done));
      if (r < 0) {
        if (errno == EINTR) continue;
        throw_errno("cannot read shard", path_);
      }
      if (r == 0) break;
      done += static_cast<size_t>(r);
    }
    return done;
  }
  const std::string& path() const override { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

}  // namespace

std::unique_ptr<RandomAccessFile> open_byte_source(const std::string& uri) {
  return std::make_unique<LocalFile>(local_path(uri));
}

bool byte_source_exists(const std::string& uri) {
  struct stat st {};
  return ::stat(local_path(uri).c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

}  // namespace openlm::data
