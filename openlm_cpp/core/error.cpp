#include "openlm_cpp/core/error.h"

#include <cerrno>
#include <cstring>

namespace openlm {

static std::string config_message(const std::string& file, const std::string& key, int line,
                                  const std::string& what) {
  std::string m = file.empty() ? std::string("<config>") : file;
  if (line > 0) m += ":" + std::to_string(line);
  if (!key.empty()) m += ": key '" + key + "'";
  return m + ": " + what;
}

ConfigError::ConfigError(const std::string& file, const std::string& key, int line,
                         const std::string& what)
    : Error(config_message(file, key, line, what)), file_(file), key_(key), line_(line) {}

void throw_errno(const std::string& what, const std::string& path) {
  int e = errno;
  throw IoError(what + " '" + path + "': " + std::strerror(e));
}

}  // namespace openlm
