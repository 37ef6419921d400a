// Where a recipe's inputs are: the one rule for relative paths, and OpenLM's own JSON model
// configs read as model recipes. Parsing proper lives in recipe.cpp, range checks in
// recipe_validate.cpp.
#include <filesystem>
#include <vector>

#include "openlm_cpp/core/recipe.h"
#include <set>
#include <string>

#include "openlm_cpp/core/recipe_detail.h"

namespace fs = std::filesystem;

namespace openlm::detail {
namespace {

/// `p` made absolute: against the working directory when --set wrote `key` (the user typed it
/// there), else against the recipe's folder. Absolute paths and "" are left alone.
void resolve(std::string& p, const std::string& key, const Origin& o, const std::string& recipe_dir) {
  if (p.empty() || fs::path(p).is_absolute()) return;
  const bool from_cli = !o.cli_key(key).empty();
  const fs::path base = from_cli || recipe_dir.empty() ? fs::current_path() : fs::absolute(recipe_dir);
  p = (base / p).lexically_normal().string();
}

}  // namespace

void resolve_recipe_paths(TrainConfig& c, const Origin& o, const std::string& recipe_dir) {
  for (std::size_t i = 0; i < c.data.manifests.size(); ++i)
    resolve(c.data.manifests[i].path, "data.manifests[" + std::to_string(i) + "].path", o, recipe_dir);
  resolve(c.data.instructions, "data.instructions", o, recipe_dir);
  resolve(c.tokenizer.path, "tokenizer.path", o, recipe_dir);
  resolve(c.init_from, "init_from", o, recipe_dir);
  if (c.resume != "latest") resolve(c.resume, "resume", o, recipe_dir);
  std::set<std::string> names;
  for (std::size_t i = 0; i < c.eval.val_data.size(); ++i) {
    auto& v = c.eval.val_data[i];
    const std::string key = "eval.val_data[" + std::to_string(i) + "]";
    const bool corpus = is_default_corpus_source(v.path);
    if (v.name.empty())
      v.name = corpus ? v.path.substr(std::string(kDefaultCorpusPrefix).size()) : fs::path(v.path).stem().string();
    if (!names.insert(v.name).second)
      o.fail(key + ".name", "duplicate source name '" + v.name + "' (metrics name each source; give every entry its own name)");
    if (!corpus) resolve(v.path, key + ".path", o, recipe_dir);
  }
}

YAML::Node load_yaml(const std::string& path) {
  if (!fs::exists(path)) throw ConfigError(path, "", 0, "file not found");
  if (fs::is_directory(path)) throw ConfigError(path, "", 0, "is a directory, not a recipe file");
  try {
    return YAML::LoadFile(path);
  } catch (const YAML::ParserException& e) {
    throw ConfigError(path, "", e.mark.line + 1, std::string("YAML syntax error: ") + e.msg);
  } catch (const YAML::Exception& e) {
    throw ConfigError(path, "", 0, std::string("cannot read YAML: ") + e.what());
  }
}

/// Applies "a.b.c=value" to the YAML tree (value parsed as YAML), creating maps as needed.
void apply_override(YAML::Node root, const std::string& spec, detail::Origin& origin) {
  auto eq = spec.find('=');
  if (eq == std::string::npos || eq == 0)
    throw ConfigError("--set", spec, 0, "expected key.sub=value");
  std::string key = spec.substr(0, eq), value = spec.substr(eq + 1);
  YAML::Node v;
  try {
    v = YAML::Load(value);
  } catch (const YAML::Exception& e) {
    throw ConfigError("--set", key, 0, "cannot parse value '" + value + "': " + e.what());
  }
  std::vector<std::string> parts;
  for (std::size_t s = 0, e; s <= key.size(); s = e + 1) {
    e = key.find('.', s);
    if (e == std::string::npos) e = key.size();
    parts.push_back(key.substr(s, e - s));
  }
  // A scalar `model: name` becomes {name: name} so that sub-keys can be overridden.
  if (parts.size() > 1 && parts[0] == "model" && root["model"] && root["model"].IsScalar()) {
    std::string name = root["model"].Scalar();
    root["model"] = YAML::Node(YAML::NodeType::Map);
    root["model"]["name"] = name;
  }
  std::vector<YAML::Node> chain{root};
  for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
    YAML::Node next = chain.back()[parts[i]];
    if (!next.IsDefined() || next.IsNull()) {
      chain.back()[parts[i]] = YAML::Node(YAML::NodeType::Map);
      next = chain.back()[parts[i]];
    } else if (!next.IsMap()) {
      throw ConfigError("--set", key, 0, "'" + parts[i] + "' is not a mapping");
    }
    chain.push_back(next);
  }
  chain.back()[parts.back()] = v;
  origin.from_cli.insert(key);
}

std::string source_recipes_dir() {
#ifdef OPENLM_RECIPES_DIR
  return OPENLM_RECIPES_DIR;
#else
  return "recipes";
#endif
}

std::string find_model_recipe(const std::string& name_or_path, const std::string& relative_to) {
  std::vector<fs::path> tries;
  fs::path p(name_or_path);
  bool pathlike = name_or_path.find('/') != std::string::npos ||
                  p.extension() == ".yaml" || p.extension() == ".yml" || p.extension() == ".json";
  if (pathlike) {
    tries.push_back(p);
    if (!relative_to.empty() && p.is_relative()) tries.push_back(fs::path(relative_to) / p);
  } else {
    tries.push_back(fs::path(recipes_dir()) / "models" / (name_or_path + ".yaml"));
  }
  for (auto& t : tries)
    if (fs::exists(t)) return t.string();
  std::string names;
  if (!pathlike)
    for (auto& n : model_names()) names += (names.empty() ? "" : ", ") + n;
  throw ConfigError(tries.front().string(), "model", 0,
                    "no model recipe '" + name_or_path + "'" +
                        (names.empty() ? "" : " (known models: " + names + ")"));
}

YAML::Node from_openlm_json(const YAML::Node& root, const Origin& o, const std::string& prefix) {
  if (!root.IsMap() || !root["hidden_dim"]) return root;
  // OpenLM's model_configs/*.json: the shape keys are read by OpenLM from the file; norm, FFN,
  // qk-norm and positional settings come from its command line and are recorded in some files.
  static const std::set<std::string> same = {"n_layers", "n_heads", "seq_len", "vocab_size", "post_embed_norm",
                                             "weight_tying", "norm_type", "ffn_type", "qk_norm",
                                             "positional_embedding_type", "norm_eps", "n_kv_heads", "name"};
  YAML::Node out(YAML::NodeType::Map);
  for (auto it = root.begin(); it != root.end(); ++it) {
    const std::string k = it->first.as<std::string>();
    if (k == "hidden_dim") {
      out["dim"] = it->second;
    } else if (k == "model_norm") {
      if (root["norm_type"] && root["norm_type"].IsScalar() && it->second.IsScalar() &&
          root["norm_type"].Scalar() != it->second.Scalar())
        o.fail(prefix + "model_norm", "'" + it->second.Scalar() + "' differs from norm_type '" +
                                          root["norm_type"].Scalar() + "' in the same OpenLM config");
      out["norm_type"] = it->second;
    } else if (same.count(k)) {
      out[k] = it->second;
    } else {
      o.fail(prefix + k, "OpenLM model config key not supported here (supported: hidden_dim, model_norm and "
                         "our model keys; docs/RECIPES.md)");
    }
  }
  return out;
}

}  // namespace openlm::detail
