#pragma once
/// The ONE recipe parser and validator. YAML in, config structs out; every problem is a
/// ConfigError naming the file, the dotted key and the line. Field lists live in one place
/// (recipe.cpp: `fields(...)`) and drive parsing, validation messages and the resolved dump.
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "openlm_cpp/core/config.h"

namespace openlm {

/// Loads recipes/train/*.yaml (or a resolved config.json). `overrides` are "a.b=value" strings
/// (value parsed as YAML), applied before validation.
TrainConfig load_train_recipe(const std::string& path, const std::vector<std::string>& overrides = {});
/// The same, for a recipe held in memory (e.g. the resolved config embedded in a checkpoint's
/// metadata.json): `text` is YAML or JSON, `source` is the file errors name (and source_file),
/// `base_dir` the directory relative model recipe paths are resolved against. Writes no file.
TrainConfig load_train_recipe_text(const std::string& text, const std::string& source, const std::string& base_dir,
                                   const std::vector<std::string>& overrides = {});

/// Resolves a model by registry name ("open_lm_1b") or by path to a model recipe, then applies
/// "key=value" overrides (model keys without the "model." prefix).
ModelConfig load_model(const std::string& name_or_path, const std::vector<std::string>& overrides = {});

/// Directory of recipes: $OPENLM_RECIPES if set, else the source tree's recipes/.
std::string recipes_dir();
/// Names of every model recipe in recipes_dir()/models.
std::vector<std::string> model_names();

/// Throws ConfigError on an impossible model (unknown norm type, kv heads not dividing heads, ...).
void validate_model(const ModelConfig& m, const std::string& file = "");
/// Gradient-accumulation steps = global / (micro * world); a non-integer result is a ConfigError.
int64_t accumulation_steps(const TrainConfig& c, int world_size);
/// Total optimizer steps (max_steps, or train_num_tokens / (global batch * seq_len)).
int64_t total_steps(const TrainConfig& c);

/// The resolved config as JSON (itself loadable by load_train_recipe).
nlohmann::json to_json(const TrainConfig& c);
nlohmann::json to_json(const ModelConfig& m);

}  // namespace openlm
