#pragma once
/// Copies one child's pipe to a destination fd line by line, each line prefixed (e.g. "[rank3]: "),
/// so the interleaved output of many ranks stays readable. Partial lines wait for their newline;
/// an over-long line is flushed in pieces of `kMaxLine` bytes; what remains at EOF is flushed with a
/// newline added.
#include <string>

namespace openlm::launch {

class OutputRelay {
 public:
  static constexpr size_t kMaxLine = 64 * 1024;

  OutputRelay(int src_fd, int dest_fd, std::string prefix);
  ~OutputRelay();
  OutputRelay(const OutputRelay&) = delete;
  OutputRelay& operator=(const OutputRelay&) = delete;

  int fd() const { return src_; }
  bool open() const { return src_ >= 0; }
  /// Reads what is available (the fd is non-blocking) and writes complete lines. Returns false
  /// once the source reached EOF (the fd is then closed and the remainder flushed).
  bool pump();
  /// Flushes a partial line and closes the source (used when giving up on a pipe that stays open).
  void finish();

 private:
  void emit(const char* data, size_t n, bool add_newline);

  int src_;
  int dest_;
  std::string prefix_;
  std::string pending_;
};

/// Writes all of `data` to fd, retrying on EINTR / short writes; errors are ignored (a closed
/// terminal must not kill the launcher).
void write_all(int fd, const char* data, size_t n);

}  // namespace openlm::launch
