#pragma once
/// Errors raised on bad input or failed operations. Every message says what went wrong and where
/// (file, key, line, record, rank) so a user can act on it; nothing calls abort() on user input.
#include <stdexcept>
#include <string>

namespace openlm {

/// Base class of all openlm-cpp errors.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A recipe/config problem: carries the file, the dotted key and the 1-based line (0 = unknown).
class ConfigError : public Error {
 public:
  ConfigError(const std::string& file, const std::string& key, int line, const std::string& what);
  const std::string& file() const { return file_; }
  const std::string& key() const { return key_; }
  int line() const { return line_; }

 private:
  std::string file_, key_;
  int line_;
};

/// Bad data on disk (shard, checkpoint, safetensors file): names the file and the record.
class DataError : public Error {
 public:
  using Error::Error;
};

/// An I/O failure (open, write, fsync, rename), with the path and errno text.
class IoError : public Error {
 public:
  using Error::Error;
};

/// Throws IoError "<what> '<path>': <strerror(errno)>".
[[noreturn]] void throw_errno(const std::string& what, const std::string& path);

}  // namespace openlm
