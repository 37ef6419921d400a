// Where a recipe's inputs are: the one rule for relative paths, and OpenLM's own JSON model
// configs read as model recipes. Parsing proper lives in recipe.cpp, range checks in
// recipe_validate.cpp.
#include <filesystem>
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
  const bool from_cli = o.file_of(key).rfind("--set ", 0) == 0;
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
    if (v.name.empty()) v.name = v.path.rfind("default_corpus:", 0) == 0 ? v.path.substr(15) : fs::path(v.path).stem().string();
    if (!names.insert(v.name).second)
      o.fail(key + ".name", "duplicate source name '" + v.name + "' (metrics name each source; give every entry its own name)");
    if (v.path.rfind("default_corpus:", 0) != 0) resolve(v.path, key + ".path", o, recipe_dir);
  }
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
