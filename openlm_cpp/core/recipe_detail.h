#pragma once
/// Internal to the recipe reader (recipe.cpp) and its validator (recipe_validate.cpp): where each
/// key of a recipe came from, so that errors found after parsing still name file, key and line.
#include <yaml-cpp/yaml.h>

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
  /// The key itself, or the mapping or list above it, that --set wrote ("" when the file did).
  std::string cli_key(std::string key) const {
    for (;;) {
      if (from_cli.count(key)) return key;
      auto cut = key.find_last_of(".[");
      if (cut == std::string::npos || cut == 0) return "";
      key.resize(cut);
    }
  }
  /// "--set <k>" when the key, or a mapping or list above it, came from --set k=...; else the file.
  std::string file_of(const std::string& key) const {
    const std::string k = cli_key(key);
    return k.empty() ? file : "--set " + k;
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

/// Reads a YAML (or JSON) file; ConfigError naming the file (and line) when it cannot.
YAML::Node load_yaml(const std::string& path);
/// Applies "a.b.c=value" (value parsed as YAML) to the tree, creating maps as needed; records the
/// key in origin.from_cli.
void apply_override(YAML::Node root, const std::string& spec, Origin& origin);
/// The source tree's recipes/ (compiled in), for recipes_dir() when $OPENLM_RECIPES is unset.
std::string source_recipes_dir();
/// The model recipe file for a registry name (recipes/models/<name>.yaml) or a path (tried as
/// given, then against `relative_to`); ConfigError listing the known names otherwise.
std::string find_model_recipe(const std::string& name_or_path, const std::string& relative_to);

/// Relative input paths (data.manifests[].path, data.instructions, tokenizer.path, init_from,
/// resume when a path, eval.val_data[].path) become absolute: against `recipe_dir` when the recipe
/// file wrote them, against the working directory when --set did. run_dir (an output) is relative
/// to the working directory. Also fills eval.val_data[].name from the path when empty.
void resolve_recipe_paths(TrainConfig& c, const Origin& o, const std::string& recipe_dir);

/// An OpenLM model config JSON (open_lm/model_configs/*.json: hidden_dim, model_norm, ...)
/// translated into our model keys; any other node is returned as it is. Keys OpenLM's JSON may
/// carry that we do not model (MoE, attention variants) are refused by name.
YAML::Node from_openlm_json(const YAML::Node& root, const Origin& o, const std::string& prefix);

}  // namespace openlm::detail
