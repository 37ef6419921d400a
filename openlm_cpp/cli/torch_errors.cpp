// LibTorch errors at the top level of `openlm` (cli/main.cpp): c10::Error's what() carries a C++
// stack trace; users get its message alone, on one line, prefixed "LibTorch: ". Kept apart from
// main.cpp so that binaries without LibTorch (the launcher-only test binary) can share main.cpp.
#include <c10/util/Exception.h>

#include <string>

#include "openlm_cpp/cli/command.h"

namespace {

std::string describe(const std::exception& e) {
  auto* ce = dynamic_cast<const c10::Error*>(&e);
  if (!ce) return e.what();
  std::string msg = ce->what_without_backtrace();
  for (char& c : msg)
    if (c == '\n') c = ' ';
  return "LibTorch: " + msg;
}

const bool registered = [] {
  openlm::cli::error_describer() = describe;
  return true;
}();

}  // namespace
