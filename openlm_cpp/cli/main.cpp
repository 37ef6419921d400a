// Entry point of `openlm`: builds the CLI from the registered subcommands and maps errors to exit
// codes: 0 done, 1 user/data error with a message, 2 usage error (CLI11, unknown command);
// `openlm launch` exits with a failed rank's status or 128 + signal, `openlm train` with 130 when
// Ctrl-C stopped it after a checkpoint. A LibTorch error (c10::Error) is reported as one line,
// without LibTorch's stack trace (cli/torch_errors.cpp).
#include <cstdio>
#include <cstring>
#include <string>

#include "openlm_cpp/cli/command.h"
#include "openlm_cpp/core/error.h"
#include "openlm_cpp/core/log.h"

namespace openlm::cli {
std::map<std::string, Setup>& registry() {
  static std::map<std::string, Setup> r;
  return r;
}
std::function<std::string()>& version_provider() {
  static std::function<std::string()> f;
  return f;
}
std::function<std::string(const std::exception&)>& error_describer() {
  static std::function<std::string(const std::exception&)> f;
  return f;
}
}  // namespace openlm::cli

int main(int argc, char** argv) {
  CLI::App app{"openlm: OpenLM/DCLM language-model pretraining in C++ on LibTorch"};
  app.require_subcommand(1);
  // Every option's --help line shows its default (subcommands inherit these option defaults).
  app.option_defaults()->always_capture_default();
  if (auto& version = openlm::cli::version_provider()) app.set_version_flag("--version", version);
  for (auto& [name, setup] : openlm::cli::registry()) setup(app);
  // `openlm foo`: name the unknown command and list the known ones (CLI11 would only say that
  // "foo" was not expected and that a subcommand is required).
  const auto commands = app.get_subcommands([](CLI::App*) { return true; });
  auto known = [&](const std::string& s) {
    for (const CLI::App* c : commands)
      if (c->get_name() == s) return true;
    return false;
  };
  if (argc > 1 && argv[1][0] != '-' && !known(argv[1])) {
    std::string names;
    for (const CLI::App* c : commands) names += (names.empty() ? "" : ", ") + c->get_name();
    std::fprintf(stderr, "openlm: unknown command '%s'; the commands are: %s (openlm --help describes them)\n",
                 argv[1], names.c_str());
    return 2;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help/--version: 0; a subcommand's own status (launch, train) passes through; every other
    // parse error (missing or unknown option, bad value, no command) is a usage error: 2.
    const int rc = app.exit(e);
    return rc == 0 || e.get_name() == "RuntimeError" ? rc : 2;
  } catch (const openlm::Error& e) {
    openlm::log::error("{}", e.what());
    return 1;
  } catch (const std::exception& e) {
    // Anything else (a LibTorch c10::Error no check of ours caught first): one line, exit 1.
    auto& describe = openlm::cli::error_describer();
    openlm::log::error("{}", describe ? describe(e) : std::string(e.what()));
    return 1;
  }
  return 0;
}
