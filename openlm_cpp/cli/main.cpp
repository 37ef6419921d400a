// Entry point of `openlm`: builds the CLI from the registered subcommands and maps errors to exit
// codes (1 = user/data error with a message, 2 = usage error from CLI11).
#include <cstdio>

#include "openlm_cpp/cli/command.h"
#include "openlm_cpp/core/error.h"
#include "openlm_cpp/core/log.h"

namespace openlm::cli {
std::map<std::string, Setup>& registry() {
  static std::map<std::string, Setup> r;
  return r;
}
}  // namespace openlm::cli

int main(int argc, char** argv) {
  CLI::App app{"openlm: OpenLM/DCLM language-model pretraining in C++ on LibTorch"};
  app.require_subcommand(1);
  for (auto& [name, setup] : openlm::cli::registry()) setup(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const openlm::Error& e) {
    openlm::log::error("{}", e.what());
    return 1;
  } catch (const std::exception& e) {
    openlm::log::error("{}", e.what());
    return 1;
  }
  return 0;
}
