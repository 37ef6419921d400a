#include "launch/output_relay.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

namespace openlm::launch {

void write_all(int fd, const char* data, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, data, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {  // a non-blocking destination: wait until it drains
        pollfd p{fd, POLLOUT, 0};
        ::poll(&p, 1, 100);
        continue;
      }
      return;
    }
    data += w;
    n -= static_cast<size_t>(w);
  }
}

OutputRelay::OutputRelay(int src_fd, int dest_fd, std::string prefix)
    : src_(src_fd), dest_(dest_fd), prefix_(std::move(prefix)) {
  int flags = ::fcntl(src_, F_GETFL);
  if (flags >= 0) ::fcntl(src_, F_SETFL, flags | O_NONBLOCK);
}

OutputRelay::~OutputRelay() { finish(); }

void OutputRelay::emit(const char* data, size_t n, bool add_newline) {
  // One write per line so lines of different ranks do not interleave mid-line.
  std::string line;
  line.reserve(prefix_.size() + n + 1);
  line.append(prefix_).append(data, n);
  if (add_newline) line.push_back('\n');
  write_all(dest_, line.data(), line.size());
}

bool OutputRelay::pump() {
  if (src_ < 0) return false;
  char buf[16384];
  for (int round = 0; round < 64; ++round) {  // bounded, so one chatty rank cannot starve others
    ssize_t r = ::read(src_, buf, sizeof buf);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return true;
      finish();  // EIO etc.: treat as EOF
      return false;
    }
    if (r == 0) {
      finish();
      return false;
    }
    pending_.append(buf, static_cast<size_t>(r));
    size_t start = 0;
    while (true) {
      size_t nl = pending_.find('\n', start);
      if (nl == std::string::npos) break;
      emit(pending_.data() + start, nl - start + 1, false);
      start = nl + 1;
    }
    pending_.erase(0, start);
    while (pending_.size() >= kMaxLine) {
      emit(pending_.data(), kMaxLine, true);
      pending_.erase(0, kMaxLine);
    }
  }
  return true;
}

void OutputRelay::finish() {
  if (!pending_.empty()) emit(pending_.data(), pending_.size(), true);
  pending_.clear();
  if (src_ >= 0) ::close(src_);
  src_ = -1;
}

}  // namespace openlm::launch
