#include "openlm_cpp/core/recipe.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>

#include "openlm_cpp/core/error.h"
#include "openlm_cpp/core/recipe_detail.h"

namespace fs = std::filesystem;

namespace openlm {
namespace {

// ---------------------------------------------------------------------------------------------
// Field lists: the single place where recipe keys are named. Visitors parse and dump them.
// ---------------------------------------------------------------------------------------------
template <class V>
void fields(V& v, ModelConfig& c) {
  v("name", c.name);
  v("dim", c.dim);
  v("n_layers", c.n_layers);
  v("n_heads", c.n_heads);
  v("n_kv_heads", c.n_kv_heads);
  v("seq_len", c.seq_len);
  v("vocab_size", c.vocab_size);
  v("norm_type", c.norm_type);
  v("norm_eps", c.norm_eps);
  v("qk_norm", c.qk_norm);
  v("positional_embedding_type", c.positional_embedding_type);
  v("ffn_type", c.ffn_type);
  v("weight_tying", c.weight_tying);
  v("post_embed_norm", c.post_embed_norm);
  v("rope_theta", c.rope_theta);
  v("ffn_hidden", c.ffn_hidden);
}
template <class V>
void fields(V& v, OptimConfig& c) {
  v("lr", c.lr);
  v("wd", c.wd);
  v("beta1", c.beta1);
  v("beta2", c.beta2);
  v("eps", c.eps);
  v("wd_exclude_norms_biases_embeddings", c.wd_exclude_norms_biases_embeddings);
  v("grad_clip_norm", c.grad_clip_norm);
  v("z_loss", c.z_loss);
}
template <class V>
void fields(V& v, ScheduleConfig& c) {
  v("lr_scheduler", c.lr_scheduler);
  v("warmup", c.warmup);
  v("lr_cooldown_end", c.lr_cooldown_end);
  v("force_min_lr", c.force_min_lr);
  v("cooldown_fraction", c.cooldown_fraction);
  v("allow_change", c.allow_change);
}
template <class V>
void fields(V& v, BatchConfig& c) {
  v("global_batch_size", c.global_batch_size);
  v("micro_batch_size", c.micro_batch_size);
}
template <class V>
void fields(V& v, DataSourceConfig& c) {
  v("path", c.path);
  v("weight", c.weight);
}
template <class V>
void fields(V& v, DataConfig& c) {
  v("manifests", c.manifests);
  v("default_corpus", c.default_corpus);
  v("replacement", c.replacement);
  v("on_epoch_end", c.on_epoch_end);
  v("skip_corrupt", c.skip_corrupt);
  v("num_workers", c.num_workers);
  v("prefetch", c.prefetch);
  v("instructions", c.instructions);
  v("prompt_field", c.prompt_field);
  v("response_field", c.response_field);
}
template <class V>
void fields(V& v, ParallelConfig& c) {
  v("strategy", c.strategy);
  v("shard_group_size", c.shard_group_size);
  v("reduce_dtype", c.reduce_dtype);
  v("timeout_s", c.timeout_s);
}
template <class V>
void fields(V& v, CheckpointConfig& c) {
  v("every_steps", c.every_steps);
  v("keep_last", c.keep_last);
  v("keep_every", c.keep_every);
  v("async", c.async);
}
template <class V>
void fields(V& v, LoggingConfig& c) {
  v("every_steps", c.every_steps);
  v("tensorboard", c.tensorboard);
  v("save_weights_every", c.save_weights_every);
  v("peak_tflops", c.peak_tflops);
}
template <class V>
void fields(V& v, TokenizerConfig& c) {
  v("type", c.type);
  v("path", c.path);
}
template <class V>
void fields(V& v, GenerateConfig& c) {
  v("prompt", c.prompt);
  v("max_new_tokens", c.max_new_tokens);
  v("temperature", c.temperature);
  v("top_k", c.top_k);
  v("top_p", c.top_p);
}
template <class V>
void fields(V& v, ValSourceConfig& c) {
  v("name", c.name);
  v("path", c.path);
}
template <class V>
void fields(V& v, EvalConfig& c) {
  v("val_data", c.val_data);
  v("every_steps", c.every_steps);
  v("max_sequences", c.max_sequences);
}
template <class V>
void fields(V& v, TrainConfig& c) {
  v("model", c.model);
  v("tokenizer", c.tokenizer);
  v("data", c.data);
  v("batch", c.batch);
  v("optim", c.optim);
  v("schedule", c.schedule);
  v("parallel", c.parallel);
  v("checkpoint", c.checkpoint);
  v("logging", c.logging);
  v("generate", c.generate);
  v("eval", c.eval);
  v("averagers", c.averagers);
  v("precision", c.precision);
  v("grad_checkpointing", c.grad_checkpointing);
  v("grad_checkpointing_every", c.grad_checkpointing_every);
  v("grad_checkpointing_scope", c.grad_checkpointing_scope);
  v("seed", c.seed);
  v("max_steps", c.max_steps);
  v("train_num_tokens", c.train_num_tokens);
  v("run_dir", c.run_dir);
  v("resume", c.resume);
  v("init_from", c.init_from);
  v("init_from_mode", c.init_from_mode);
}

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------
int line_of(const YAML::Node& n) { return n.Mark().line >= 0 ? n.Mark().line + 1 : 0; }

ModelConfig load_model_file(const std::string& path, detail::Origin* origin, const std::string& prefix);

class Reader {
 public:
  Reader(const YAML::Node& node, detail::Origin& origin, std::string prefix, std::string base_dir)
      : node_(node), origin_(origin), prefix_(std::move(prefix)), base_dir_(std::move(base_dir)) {
    if (node_ && !node_.IsMap() && !node_.IsNull())
      origin_.fail(prefix_.empty() ? "<root>" : prefix_.substr(0, prefix_.size() - 1),
                   "expected a mapping of keys");
  }

  template <class T>
  void operator()(const char* key, T& out) {
    known_.push_back(key);
    if (!node_ || !node_.IsMap()) return;
    const YAML::Node n = node_[key];
    if (!n) return;
    std::string dotted = prefix_ + key;
    origin_.lines[dotted] = line_of(n);
    // yaml-cpp keeps the first of duplicated keys; a duplicate is reported by finish().
    read(n, dotted, out);
  }

  /// Errors on keys nobody asked for, suggesting the known ones.
  void finish() const {
    if (!node_ || !node_.IsMap()) return;
    std::set<std::string> seen;
    for (auto it = node_.begin(); it != node_.end(); ++it) {
      std::string k = it->first.as<std::string>();
      if (!seen.insert(k).second) {
        origin_.lines[prefix_ + k] = line_of(it->first);
        origin_.fail(prefix_ + k, "duplicate key");
      }
      if (std::find(known_.begin(), known_.end(), k) != known_.end()) continue;
      std::string dotted = prefix_ + k;
      origin_.lines[dotted] = line_of(it->first);
      std::string known;
      for (auto& s : known_) known += (known.empty() ? "" : ", ") + s;
      origin_.fail(dotted, "unknown key (known keys here: " + known + ")");
    }
  }

 private:
  void scalar_check(const YAML::Node& n, const std::string& key, const char* what) {
    if (!n.IsScalar()) origin_.fail(key, std::string("expected ") + what + ", got a " +
                                             (n.IsMap() ? "mapping" : n.IsSequence() ? "list" : "null"));
  }
  void read(const YAML::Node& n, const std::string& key, int64_t& out) {
    scalar_check(n, key, "an integer");
    // Accept 1e6-style integers too, but nothing fractional.
    try {
      out = n.as<int64_t>();
      return;
    } catch (const YAML::Exception&) {
    }
    double d = 0;
    try {
      d = n.as<double>();
    } catch (const YAML::Exception&) {
      origin_.fail(key, "expected an integer, got '" + n.Scalar() + "'");
    }
    if (std::floor(d) != d || std::fabs(d) > 9.0e18)
      origin_.fail(key, "expected an integer, got '" + n.Scalar() + "'");
    out = static_cast<int64_t>(d);
  }
  void read(const YAML::Node& n, const std::string& key, uint64_t& out) {
    int64_t v = 0;
    read(n, key, v);
    if (v < 0) origin_.fail(key, "expected a non-negative integer, got '" + n.Scalar() + "'");
    out = static_cast<uint64_t>(v);
  }
  void read(const YAML::Node& n, const std::string& key, double& out) {
    scalar_check(n, key, "a number");
    try {
      out = n.as<double>();
    } catch (const YAML::Exception&) {
      origin_.fail(key, "expected a number, got '" + n.Scalar() + "'");
    }
    if (!std::isfinite(out)) origin_.fail(key, "expected a finite number, got '" + n.Scalar() + "'");
  }
  void read(const YAML::Node& n, const std::string& key, bool& out) {
    scalar_check(n, key, "true or false");
    try {
      out = n.as<bool>();
    } catch (const YAML::Exception&) {
      origin_.fail(key, "expected true or false, got '" + n.Scalar() + "'");
    }
  }
  void read(const YAML::Node& n, const std::string& key, std::string& out) {
    if (n.IsNull()) {
      out.clear();
      return;
    }
    scalar_check(n, key, "a string");
    out = n.Scalar();
  }
  /// A list of {path, ...} entries (data.manifests, eval.val_data); a bare string is the path.
  template <class S>
  void read(const YAML::Node& n, const std::string& key, std::vector<S>& out) {
    if (!n.IsSequence()) origin_.fail(key, "expected a list of {path, ...} entries");
    out.clear();
    for (std::size_t i = 0; i < n.size(); ++i) {
      S s;
      std::string sub = key + "[" + std::to_string(i) + "]";
      origin_.lines[sub] = line_of(n[i]);
      if (n[i].IsScalar()) {  // a bare path
        s.path = n[i].Scalar();
        origin_.lines[sub + ".path"] = line_of(n[i]);
      } else {
        Reader r(n[i], origin_, sub + ".", base_dir_);
        fields(r, s);
        r.finish();
        if (s.path.empty()) origin_.fail(sub + ".path", "missing required key");
      }
      out.push_back(s);
    }
  }
  /// A list of strings; one string is a list of one, and "a,b" a list of two (OpenLM's
  /// --averagers ema_0.999,poly_8 pasted as it is).
  void read(const YAML::Node& n, const std::string& key, std::vector<std::string>& out) {
    out.clear();
    auto add = [&](const std::string& s, const std::string& where) {
      for (std::size_t b = 0, e; b <= s.size(); b = e + 1) {
        e = s.find(',', b);
        if (e == std::string::npos) e = s.size();
        std::string item = s.substr(b, e - b);
        if (item.empty()) origin_.fail(where, "empty entry in '" + s + "'");
        out.push_back(item);
      }
    };
    if (n.IsNull()) return;
    if (n.IsScalar()) return add(n.Scalar(), key);
    if (!n.IsSequence()) origin_.fail(key, "expected a list of strings");
    for (std::size_t i = 0; i < n.size(); ++i) {
      std::string sub = key + "[" + std::to_string(i) + "]";
      origin_.lines[sub] = line_of(n[i]);
      scalar_check(n[i], sub, "a string");
      add(n[i].Scalar(), sub);
    }
  }
  void read(const YAML::Node& n, const std::string& key, ModelConfig& out) {
    // `model: NAME_OR_PATH` or `model: {name: NAME, <overrides>}` or a full inline mapping.
    if (n.IsScalar()) {
      out = load_model_file(detail::find_model_recipe(n.Scalar(), base_dir_), nullptr, "");
      return;
    }
    if (n.IsMap() && n["name"] && n["name"].IsScalar()) {
      std::string path;
      try {
        path = detail::find_model_recipe(n["name"].Scalar(), base_dir_);
      } catch (const ConfigError&) {
        path.clear();  // an inline config may carry a name that has no recipe file
      }
      if (!path.empty()) out = load_model_file(path, nullptr, "");
    }
    read_struct(n, key, out);
  }
  template <class S>
  void read(const YAML::Node& n, const std::string& key, S& out) {
    read_struct(n, key, out);
  }
  template <class S>
  void read_struct(const YAML::Node& n, const std::string& key, S& out) {
    Reader r(n, origin_, key + ".", base_dir_);
    fields(r, out);
    r.finish();
  }

  YAML::Node node_;
  detail::Origin& origin_;
  std::string prefix_;
  std::string base_dir_;
  std::vector<std::string> known_;
};

ModelConfig load_model_file(const std::string& path, detail::Origin* origin, const std::string& prefix) {
  detail::Origin local{path, {}, {}};
  detail::Origin& o = origin ? *origin : local;
  YAML::Node root = detail::from_openlm_json(detail::load_yaml(path), o, prefix);
  ModelConfig m;
  Reader r(root, o, prefix, fs::path(path).parent_path().string());
  fields(r, m);
  r.finish();
  if (m.name.empty()) m.name = fs::path(path).stem().string();
  return m;
}

// ---------------------------------------------------------------------------------------------
// Dumping
// ---------------------------------------------------------------------------------------------
struct JsonWriter {
  nlohmann::json j = nlohmann::json::object();
  template <class T>
  void operator()(const char* key, T& v) {
    if constexpr (std::is_arithmetic_v<T> || std::is_same_v<T, std::string>) {
      j[key] = v;
    } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
      j[key] = v;
    } else if constexpr (std::is_same_v<T, std::vector<DataSourceConfig>> ||
                         std::is_same_v<T, std::vector<ValSourceConfig>>) {
      nlohmann::json a = nlohmann::json::array();
      for (auto& s : v) {
        JsonWriter w;
        fields(w, s);
        a.push_back(w.j);
      }
      j[key] = a;
    } else {
      JsonWriter w;
      fields(w, v);
      j[key] = w.j;
    }
  }
};

}  // namespace

int64_t ModelConfig::hidden_dim() const {
  if (ffn_hidden > 0) return ffn_hidden;
  if (ffn_type == "gelu") return 4 * dim;
  int64_t h = (8 * dim) / 3;  // int(8*d/3)
  return 256 * ((h + 255) / 256);
}

std::string recipes_dir() {
  const char* env = std::getenv("OPENLM_RECIPES");
  return env && *env ? std::string(env) : detail::source_recipes_dir();
}

std::vector<std::string> model_names() {
  std::vector<std::string> out;
  fs::path d = fs::path(recipes_dir()) / "models";
  std::error_code ec;
  for (auto& e : fs::directory_iterator(d, ec))
    if (e.path().extension() == ".yaml") out.push_back(e.path().stem().string());
  std::sort(out.begin(), out.end());
  return out;
}

void validate_model(const ModelConfig& m, const std::string& file) {
  detail::Origin o{file, {}, {}};
  detail::validate_model_fields(m, o, "");
}

int64_t accumulation_steps(const TrainConfig& c, int world_size) {
  int64_t per_step = c.batch.micro_batch_size * world_size;
  if (per_step <= 0 || c.batch.global_batch_size % per_step != 0)
    throw ConfigError(c.source_file, "batch.global_batch_size", 0,
                      "global batch " + std::to_string(c.batch.global_batch_size) +
                          " is not a multiple of micro_batch_size x world_size = " +
                          std::to_string(c.batch.micro_batch_size) + " x " + std::to_string(world_size));
  return c.batch.global_batch_size / per_step;
}

int64_t total_steps(const TrainConfig& c) {
  if (c.max_steps > 0) return c.max_steps;
  int64_t per_step = c.batch.global_batch_size * c.model.seq_len;
  return per_step > 0 ? c.train_num_tokens / per_step : 0;
}

ModelConfig load_model(const std::string& name_or_path, const std::vector<std::string>& overrides) {
  std::string path = detail::find_model_recipe(name_or_path, "");
  detail::Origin o{path, {}, {}};
  YAML::Node root = detail::from_openlm_json(detail::load_yaml(path), o, "");
  for (auto& s : overrides) detail::apply_override(root, s, o);
  ModelConfig m;
  Reader r(root, o, "", fs::path(path).parent_path().string());
  fields(r, m);
  r.finish();
  if (m.name.empty()) m.name = fs::path(path).stem().string();
  detail::validate_model_fields(m, o, "");
  return m;
}

namespace {
TrainConfig train_recipe_from(YAML::Node root, const std::string& path, const std::string& base,
                              const std::vector<std::string>& overrides) {
  detail::Origin o{path, {}, {}};
  if (!root.IsMap()) throw ConfigError(path, "", 0, "a train recipe must be a YAML mapping");
  for (auto& s : overrides) detail::apply_override(root, s, o);
  TrainConfig c;
  c.source_file = path;
  Reader r(root, o, "", base);
  fields(r, c);
  r.finish();
  c.vocab_size_set = o.present("model.vocab_size");
  // Without `model:`, a run that starts from init_from takes the source's model (the trainer
  // reads it); otherwise the model is required.
  if (!root["model"]) {
    if (c.init_from.empty()) o.fail("model", "missing required key (it may be left out only with init_from, whose model is then used)");
    c.model_from_init = true;
  }
  detail::resolve_recipe_paths(c, o, base);  // docs/RECIPES.md, "Relative paths"
  detail::validate_train_fields(c, o);
  return c;
}
}  // namespace

TrainConfig load_train_recipe(const std::string& path, const std::vector<std::string>& overrides) {
  return train_recipe_from(detail::load_yaml(path), path, fs::path(path).parent_path().string(), overrides);
}

TrainConfig load_train_recipe_text(const std::string& text, const std::string& source, const std::string& base_dir,
                                   const std::vector<std::string>& overrides) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    throw ConfigError(source, "", e.mark.line + 1, std::string("YAML syntax error: ") + e.msg);
  } catch (const YAML::Exception& e) {
    throw ConfigError(source, "", 0, std::string("cannot read YAML: ") + e.what());
  }
  return train_recipe_from(root, source, base_dir, overrides);
}

nlohmann::json to_json(const TrainConfig& c) {
  JsonWriter w;
  fields(w, const_cast<TrainConfig&>(c));
  return w.j;
}

nlohmann::json to_json(const ModelConfig& m) {
  JsonWriter w;
  fields(w, const_cast<ModelConfig&>(m));
  return w.j;
}

}  // namespace openlm
