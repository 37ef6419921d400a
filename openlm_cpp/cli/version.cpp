// `openlm --version`: one line with the openlm version, the git commit the build was configured
// at, the LibTorch version and whether CUDA and NCCL are compiled in (NCCL is required by CUDA
// builds, so both are there or neither is). Registered like a subcommand (cli/command.h); binaries
// built without this file (the launcher-only test binary) have no --version flag.
#include <torch/version.h>

#include <string>

#include "openlm_cpp/cli/command.h"

#ifndef OPENLM_VERSION
#define OPENLM_VERSION "unknown"
#endif
#ifndef OPENLM_GIT_COMMIT
#define OPENLM_GIT_COMMIT "unknown"
#endif

namespace {

std::string version_line() {
#ifdef OPENLM_WITH_CUDA
  const char* gpu = "CUDA yes, NCCL yes";
#else
  const char* gpu = "CUDA no, NCCL no";
#endif
  return std::string("openlm ") + OPENLM_VERSION + " (commit " + OPENLM_GIT_COMMIT + ", LibTorch " + TORCH_VERSION +
         ", " + gpu + ")";
}

const bool registered = [] {
  openlm::cli::version_provider() = version_line;
  return true;
}();

}  // namespace
