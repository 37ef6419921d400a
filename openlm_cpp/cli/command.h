#pragma once
/// Self-registering subcommands of the `openlm` binary. A subcommand file does:
///   static openlm::cli::Registrar reg("train", [](CLI::App& app) { ... add_subcommand ... });
/// main() creates the App and calls every registered setup function (in name order).
#include <CLI/CLI.hpp>

#include <functional>
#include <map>
#include <string>

#include "openlm_cpp/core/error.h"

namespace openlm::cli {

/// Refuses an option value out of range: "<option>: <what>" (exit status 1, like other user errors).
inline void require_option(bool ok, const std::string& option, const std::string& what) {
  if (!ok) throw openlm::ConfigError(option, "", 0, what);
}

/// `--weights NAME` of the commands that load a run's weights (eval, generate, export-hf): the
/// source is then resolved by openlm::weights_source (train/inference.h).
inline void add_weights_option(CLI::App* sub, std::string& weights) {
  sub->add_option("--weights", weights,
                  "a weight average the run kept (recipe averagers:, e.g. ema_0.999): RUN/model_<NAME>.safetensors; "
                  "model = the trained weights");
}

using Setup = std::function<void(CLI::App& root)>;

std::map<std::string, Setup>& registry();
/// What `openlm --version` prints (set by version.cpp; empty: the binary has no --version).
std::function<std::string()>& version_provider();
/// The one-line message for an exception no other handler took (set by torch_errors.cpp to strip
/// LibTorch's stack trace from c10::Error; empty: e.what()).
std::function<std::string(const std::exception&)>& error_describer();

struct Registrar {
  Registrar(const std::string& name, Setup s) { registry()[name] = std::move(s); }
};

}  // namespace openlm::cli
