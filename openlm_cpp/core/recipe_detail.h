#pragma once
/// Internal to the recipe reader (recipe.cpp) and its validator (recipe_validate.cpp): where each
/// key of a recipe came from, so that errors found after parsing still name file, key and line.
#include <map>
#include <set>
#include <string>

#include "openlm_cpp/core/config.h"
#include "openlm_cpp/core/error.h"

namespace openlm::detail {

/// Where each dotted key came from, for messages raised after parsing (validation).
struct Origin {
  std::string file;
  std::map<std::string, int> lines;
  std::set<std::string> from_cli;  // keys set by --set
  /// Line of the key, else of its closest parent (a model key inherited from a model recipe
  /// points at the `model:` entry that pulled it in).
  int line(std::string key) const {
    for (;;) {
      auto it = lines.find(key);
      if (it != lines.end()) return it->second;
      auto dot = key.rfind('.');
      if (dot == std::string::npos) return 0;
      key.resize(dot);
    }
  }
  /// "--set <k>" when the key, or a mapping or list above it, came from --set k=...; else the file.
  std::string file_of(std::string key) const {
    for (;;) {
      if (from_cli.count(key)) return std::string("--set ") + key;
      auto cut = key.find_last_of(".[");
      if (cut == std::string::npos || cut == 0) return file;
      key.resize(cut);
    }
  }
  /// Whether the recipe (or a --set) wrote this exact key, as opposed to a default.
  bool present(const std::string& key) const { return lines.count(key) > 0 || from_cli.count(key) > 0; }
  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw ConfigError(file_of(key), key, line(key), what);
  }
};

/// Range and consistency checks of a parsed recipe (every rule lives here); `prefix` is the
/// dotted path of the model section ("model." in a train recipe, "" in a model recipe).
void validate_model_fields(const ModelConfig& m, const Origin& o, const std::string& prefix);
void validate_train_fields(const TrainConfig& c, const Origin& o);

}  // namespace openlm::detail
