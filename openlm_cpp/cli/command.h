#pragma once
/// Self-registering subcommands of the `openlm` binary. A subcommand file does:
///   static openlm::cli::Registrar reg("train", [](CLI::App& app) { ... add_subcommand ... });
/// main() creates the App and calls every registered setup function (in name order).
#include <CLI/CLI.hpp>

#include <functional>
#include <map>
#include <string>

namespace openlm::cli {

using Setup = std::function<void(CLI::App& root)>;

std::map<std::string, Setup>& registry();

struct Registrar {
  Registrar(const std::string& name, Setup s) { registry()[name] = std::move(s); }
};

}  // namespace openlm::cli
