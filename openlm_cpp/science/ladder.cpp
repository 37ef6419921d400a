#include "openlm_cpp/science/ladder.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <regex>
#include <set>

#include "openlm_cpp/core/error.h"
#include "openlm_cpp/core/recipe.h"

namespace fs = std::filesystem;

namespace openlm::science {
namespace {

int line_of(const YAML::Node& n) { return n.Mark().line >= 0 ? n.Mark().line + 1 : 0; }

/// Reads one ladder file; every error names the file, the dotted key and the line.
struct Reader {
  std::string file;

  [[noreturn]] void fail(const YAML::Node& n, const std::string& key, const std::string& what) const {
    throw ConfigError(file, key, n ? line_of(n) : 0, what);
  }

  /// Keys of a mapping, refusing unknown and duplicated ones.
  void check_keys(const YAML::Node& map, const std::string& prefix, const std::vector<std::string>& known) const {
    if (!map.IsMap()) fail(map, prefix.empty() ? "" : prefix.substr(0, prefix.size() - 1), "expected a mapping");
    std::set<std::string> seen;
    for (auto it = map.begin(); it != map.end(); ++it) {
      const std::string k = it->first.as<std::string>();
      if (!seen.insert(k).second) fail(it->first, prefix + k, "duplicated key");
      if (std::find(known.begin(), known.end(), k) == known.end()) {
        std::string list;
        for (auto& x : known) list += (list.empty() ? "" : ", ") + x;
        fail(it->first, prefix + k, "unknown key (known keys here: " + list + ")");
      }
    }
  }

  std::string str(const YAML::Node& n, const std::string& key) const {
    if (!n.IsScalar()) fail(n, key, "expected a string");
    return n.Scalar();
  }
  double number(const YAML::Node& n, const std::string& key) const {
    if (!n.IsScalar()) fail(n, key, "expected a number");
    try {
      const double v = n.as<double>();
      if (!std::isfinite(v)) fail(n, key, "must be finite (got " + n.Scalar() + ")");
      return v;
    } catch (const YAML::Exception&) {
      fail(n, key, "expected a number (got '" + n.Scalar() + "')");
    }
  }
  int64_t integer(const YAML::Node& n, const std::string& key) const {
    if (!n.IsScalar()) fail(n, key, "expected an integer");
    try {
      return n.as<int64_t>();
    } catch (const YAML::Exception&) {
      fail(n, key, "expected an integer (got '" + n.Scalar() + "')");
    }
  }
  int64_t positive(const YAML::Node& n, const std::string& key) const {
    const int64_t v = integer(n, key);
    if (v <= 0) fail(n, key, "must be > 0 (got " + std::to_string(v) + ")");
    return v;
  }
  /// A path relative to the ladder file's folder, made absolute; it must exist.
  std::string path(const YAML::Node& n, const std::string& key) const {
    const std::string p = str(n, key);
    if (p.empty()) fail(n, key, "must not be empty");
    fs::path r = fs::path(p).is_absolute() ? fs::path(p) : fs::absolute(fs::path(file).parent_path()) / p;
    r = r.lexically_normal();
    if (!fs::is_regular_file(r)) fail(n, key, "file not found: " + r.string());
    return r.string();
  }
  /// A `set:` mapping as "key=value" strings (values written back as flow YAML).
  std::vector<std::string> sets(const YAML::Node& n, const std::string& key) const {
    if (!n.IsMap()) fail(n, key, "expected a mapping of recipe keys (as `openlm train --set` spells them) to values");
    std::vector<std::string> out;
    std::set<std::string> seen;
    for (auto it = n.begin(); it != n.end(); ++it) {
      const std::string k = it->first.as<std::string>();
      if (!seen.insert(k).second) fail(it->first, key + "." + k, "duplicated key");
      if (k.empty() || k.find('=') != std::string::npos) fail(it->first, key + "." + k, "not a recipe key");
      out.push_back(k + "=" + flow(it->second));
    }
    return out;
  }
  static std::string flow(const YAML::Node& v) {
    YAML::Emitter e;
    e.SetMapFormat(YAML::Flow);
    e.SetSeqFormat(YAML::Flow);
    e << v;
    return e.c_str();
  }
};

const std::regex kName("[A-Za-z0-9][A-Za-z0-9_.-]*");

LadderScale read_scale(const Reader& r, const YAML::Node& s, const std::string& key) {
  r.check_keys(s, key + ".", {"name", "model", "multiplier", "tokens", "set", "base"});
  LadderScale sc;
  sc.line = line_of(s);
  if (!s["name"]) r.fail(s, key + ".name", "missing required key");
  sc.name = r.str(s["name"], key + ".name");
  if (!std::regex_match(sc.name, kName))
    r.fail(s["name"], key + ".name", "'" + sc.name + "' is not a usable run name (letters, digits, _ . -)");
  if (const auto m = s["model"]) {
    if (m.IsScalar()) {
      sc.model_sets.push_back("model.name=" + Reader::flow(m));
    } else if (m.IsMap()) {
      for (auto it = m.begin(); it != m.end(); ++it)
        sc.model_sets.push_back("model." + it->first.as<std::string>() + "=" + Reader::flow(it->second));
    } else {
      r.fail(m, key + ".model", "expected a model name or a mapping of model keys");
    }
  }
  const bool has_mult = static_cast<bool>(s["multiplier"]), has_tokens = static_cast<bool>(s["tokens"]);
  if (has_mult == has_tokens)
    r.fail(s, key, has_mult ? "give multiplier or tokens, not both" : "missing 'multiplier' (or 'tokens')");
  if (has_mult) {
    sc.multiplier = r.number(s["multiplier"], key + ".multiplier");
    if (!(sc.multiplier > 0)) r.fail(s["multiplier"], key + ".multiplier", "must be > 0");
  } else {
    sc.tokens = r.positive(s["tokens"], key + ".tokens");
  }
  if (s["set"]) sc.sets = r.sets(s["set"], key + ".set");
  if (s["base"]) sc.base = r.path(s["base"], key + ".base");
  return sc;
}

}  // namespace

LadderSpec load_ladder(const std::string& file) {
  Reader r{file};
  if (!fs::exists(file)) throw ConfigError(file, "", 0, "file not found");
  if (fs::is_directory(file)) throw ConfigError(file, "", 0, "is a directory, not a ladder file");
  YAML::Node root;
  try {
    root = YAML::LoadFile(file);
  } catch (const YAML::ParserException& e) {
    throw ConfigError(file, "", e.mark.line + 1, std::string("YAML syntax error: ") + e.msg);
  } catch (const YAML::Exception& e) {
    throw ConfigError(file, "", 0, std::string("cannot read YAML: ") + e.what());
  }
  if (!root.IsMap()) throw ConfigError(file, "", 0, "a ladder file is a mapping (docs/LADDERS.md)");
  r.check_keys(root, "", {"name", "base", "set", "tokens_per_param", "params", "flops", "nproc_per_node",
                          "val_source", "suite", "slurm", "scales"});
  LadderSpec sp;
  sp.file = file;
  sp.name = root["name"] ? r.str(root["name"], "name") : fs::path(file).stem().string();
  if (!std::regex_match(sp.name, kName)) r.fail(root["name"], "name", "'" + sp.name + "' is not a usable name");
  if (const auto b = root["base"]) {
    if (b.IsMap()) {
      YAML::Emitter e;
      e << b;
      sp.base_text = e.c_str();
    } else {
      sp.base = r.path(b, "base");
    }
  }
  if (root["set"]) sp.sets = r.sets(root["set"], "set");
  if (const auto n = root["tokens_per_param"]) {
    sp.tokens_per_param = r.number(n, "tokens_per_param");
    if (!(sp.tokens_per_param > 0)) r.fail(n, "tokens_per_param", "must be > 0");
  }
  if (const auto n = root["params"]) {
    sp.params = r.str(n, "params");
    if (sp.params != "dclm" && sp.params != "total" && sp.params != "non_embedding")
      r.fail(n, "params", "must be dclm, total or non_embedding (got '" + sp.params + "')");
  }
  if (const auto n = root["flops"]) {
    sp.flops = r.str(n, "flops");
    if (sp.flops != "6nd" && sp.flops != "6nd_attention")
      r.fail(n, "flops", "must be 6nd or 6nd_attention (got '" + sp.flops + "')");
  }
  if (root["nproc_per_node"]) sp.nproc_per_node = r.positive(root["nproc_per_node"], "nproc_per_node");
  if (root["val_source"]) sp.val_source = r.str(root["val_source"], "val_source");
  if (const auto n = root["suite"]; n && !(n.IsScalar() && n.Scalar().empty())) sp.suite = r.path(n, "suite");
  if (const auto s = root["slurm"]) {
    r.check_keys(s, "slurm.", {"nodes", "gpus_per_node", "cpus_per_task", "time", "partition", "account", "sbatch"});
    if (s["nodes"]) sp.slurm.nodes = r.positive(s["nodes"], "slurm.nodes");
    if (s["gpus_per_node"]) sp.slurm.gpus_per_node = r.positive(s["gpus_per_node"], "slurm.gpus_per_node");
    if (s["cpus_per_task"]) sp.slurm.cpus_per_task = r.positive(s["cpus_per_task"], "slurm.cpus_per_task");
    if (s["time"]) sp.slurm.time = r.str(s["time"], "slurm.time");
    if (s["partition"]) sp.slurm.partition = r.str(s["partition"], "slurm.partition");
    if (s["account"]) sp.slurm.account = r.str(s["account"], "slurm.account");
    if (const auto x = s["sbatch"]) {
      if (!x.IsSequence()) r.fail(x, "slurm.sbatch", "expected a list of sbatch options, e.g. [--qos=high]");
      for (std::size_t i = 0; i < x.size(); ++i) sp.slurm.sbatch.push_back(r.str(x[i], "slurm.sbatch[" + std::to_string(i) + "]"));
    }
  }
  if (sp.base.empty() && sp.base_text.empty()) {
    // Without a ladder-wide base every scale must name its own.
    if (root["scales"] && root["scales"].IsSequence())
      for (std::size_t i = 0; i < root["scales"].size(); ++i)
        if (root["scales"][i].IsMap() && !root["scales"][i]["base"])
          r.fail(root["scales"][i], "scales[" + std::to_string(i) + "].base",
                 "missing: no ladder-wide 'base' recipe, so every scale needs its own");
  }
  const auto sc = root["scales"];
  if (!sc) r.fail(root, "scales", "missing required key");
  if (!sc.IsSequence() || sc.size() == 0) r.fail(sc, "scales", "expected a non-empty list of scales");
  std::set<std::string> names;
  for (std::size_t i = 0; i < sc.size(); ++i) {
    const std::string key = "scales[" + std::to_string(i) + "]";
    sp.scales.push_back(read_scale(r, sc[i], key));
    if (!names.insert(sp.scales.back().name).second)
      r.fail(sc[i]["name"], key + ".name", "duplicate scale name '" + sp.scales.back().name + "'");
  }
  return sp;
}

int64_t ladder_params(const ModelConfig& m, const std::string& rule, const ParamCounter& count) {
  if (rule == "total") return count(m).total;
  if (rule == "non_embedding") return count(m).non_embedding;
  ModelConfig no_qk = m;  // dclm: DCLM computed its counts from the model JSON, without qk-norm
  no_qk.qk_norm = false;
  return count(no_qk).total;
}

std::vector<PlannedRun> plan_ladder(const LadderSpec& sp, const std::string& out_dir, const ParamCounter& count) {
  std::vector<PlannedRun> runs;
  const fs::path out = fs::absolute(out_dir).lexically_normal();
  for (std::size_t i = 0; i < sp.scales.size(); ++i) {
    const LadderScale& sc = sp.scales[i];
    const std::string key = "scales[" + std::to_string(i) + "]";
    PlannedRun run;
    run.name = sc.name;
    run.run_dir = (out / "runs" / sc.name).string();
    std::vector<std::string> sets = sp.sets;
    sets.insert(sets.end(), sc.model_sets.begin(), sc.model_sets.end());
    sets.insert(sets.end(), sc.sets.begin(), sc.sets.end());
    sets.push_back("run_dir=" + run.run_dir);
    sets.push_back("resume=latest");
    sets.push_back("max_steps=0");
    auto load = [&](int64_t tokens) {
      std::vector<std::string> s = sets;
      s.push_back("train_num_tokens=" + std::to_string(tokens));
      try {
        if (!sc.base.empty()) return load_train_recipe(sc.base, s);
        if (!sp.base.empty()) return load_train_recipe(sp.base, s);
        return load_train_recipe_text(sp.base_text, sp.file + " (base)", fs::path(sp.file).parent_path().string(), s);
      } catch (const ConfigError& e) {
        throw ConfigError(sp.file, key, sc.line, "scale '" + sc.name + "': " + e.what());
      }
    };
    // First pass: the model (a huge budget keeps the warmup check quiet); second: the real budget.
    const TrainConfig first = load(int64_t{1} << 50);
    const ModelConfig& model = first.model;
    run.size = count(model);
    run.params = ladder_params(model, sp.params, count);
    run.multiplier = sc.multiplier;
    if (sc.tokens > 0) {
      run.tokens = sc.tokens;
    } else {
      // DCLM: int(20 * params * multiplier). long double holds 20 x 7B x k exactly.
      const long double t = static_cast<long double>(sc.multiplier) * static_cast<long double>(sp.tokens_per_param) *
                            static_cast<long double>(run.params);
      if (!(t >= 1) || t > 9.0e18L)
        throw ConfigError(sp.file, key, sc.line, "scale '" + sc.name + "': token budget out of range");
      run.tokens = static_cast<int64_t>(std::floor(t));
    }
    run.tokens_per_step = first.batch.global_batch_size * model.seq_len;
    if (run.tokens < run.tokens_per_step)
      throw ConfigError(sp.file, key, sc.line,
                        "scale '" + sc.name + "': " + std::to_string(run.tokens) + " tokens make no full step of " +
                            std::to_string(run.tokens_per_step) + " tokens (global_batch_size x seq_len)");
    run.cfg = load(run.tokens);
    run.steps = total_steps(run.cfg);
    const ModelConfig& m = run.cfg.model;
    run.flops_per_token = 6.0 * static_cast<double>(run.params);
    if (sp.flops == "6nd_attention")
      run.flops_per_token += 12.0 * static_cast<double>(m.n_layers) * static_cast<double>(m.attn_width()) *
                             static_cast<double>(m.seq_len);
    run.flops = run.flops_per_token * static_cast<double>(run.tokens);
    const auto& val = run.cfg.eval.val_data;
    if (val.empty())
      throw ConfigError(sp.file, key, sc.line,
                        "scale '" + sc.name + "': the run has no eval.val_data; a ladder reads each run's final "
                        "validation loss, so give the base recipe (or the ladder's set:) an eval.val_data source");
    run.val_source = val.front().name;
    if (!sp.val_source.empty()) {
      std::string names;
      bool found = false;
      for (auto& v : val) found |= v.name == sp.val_source, names += (names.empty() ? "" : ", ") + v.name;
      if (!found)
        throw ConfigError(sp.file, "val_source", 0,
                          "scale '" + sc.name + "' has no eval source '" + sp.val_source + "' (it has: " + names + ")");
      run.val_source = sp.val_source;
    }
    runs.push_back(std::move(run));
  }
  return runs;
}

}  // namespace openlm::science
