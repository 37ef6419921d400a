#pragma once
// The one command-line helper the benchmark programs share (each prints one JSON line).
#include <string>

namespace openlm::bench {

/// The value after `--name` on the command line, else `dflt`.
inline std::string arg(int argc, char** argv, const std::string& name, const std::string& dflt) {
  for (int i = 1; i + 1 < argc; ++i)
    if (name == argv[i]) return argv[i + 1];
  return dflt;
}

}  // namespace openlm::bench
