#include "openlm_cpp/core/recipe.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>

#include "openlm_cpp/core/error.h"

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
  v("precision", c.precision);
  v("grad_checkpointing", c.grad_checkpointing);
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
  std::string file_of(const std::string& key) const {
    return from_cli.count(key) ? std::string("--set ") + key : file;
  }
  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw ConfigError(file_of(key), key, line(key), what);
  }
};

int line_of(const YAML::Node& n) { return n.Mark().line >= 0 ? n.Mark().line + 1 : 0; }

ModelConfig load_model_file(const std::string& path, Origin* origin, const std::string& prefix);
std::string find_model_recipe(const std::string& name_or_path, const std::string& relative_to);

class Reader {
 public:
  Reader(const YAML::Node& node, Origin& origin, std::string prefix, std::string base_dir)
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
  void read(const YAML::Node& n, const std::string& key, std::vector<DataSourceConfig>& out) {
    if (!n.IsSequence()) origin_.fail(key, "expected a list of {path, weight} entries");
    out.clear();
    for (std::size_t i = 0; i < n.size(); ++i) {
      DataSourceConfig s;
      std::string sub = key + "[" + std::to_string(i) + "]";
      if (n[i].IsScalar()) {  // a bare path
        s.path = n[i].Scalar();
      } else {
        Reader r(n[i], origin_, sub + ".", base_dir_);
        fields(r, s);
        r.finish();
        if (s.path.empty()) origin_.fail(sub + ".path", "missing required key");
      }
      origin_.lines[sub] = line_of(n[i]);
      out.push_back(s);
    }
  }
  void read(const YAML::Node& n, const std::string& key, ModelConfig& out) {
    // `model: NAME_OR_PATH` or `model: {name: NAME, <overrides>}` or a full inline mapping.
    if (n.IsScalar()) {
      out = load_model_file(find_model_recipe(n.Scalar(), base_dir_), nullptr, "");
      return;
    }
    if (n.IsMap() && n["name"] && n["name"].IsScalar()) {
      std::string path;
      try {
        path = find_model_recipe(n["name"].Scalar(), base_dir_);
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
  Origin& origin_;
  std::string prefix_;
  std::string base_dir_;
  std::vector<std::string> known_;
};

YAML::Node load_yaml(const std::string& path) {
  if (!fs::exists(path)) throw ConfigError(path, "", 0, "file not found");
  try {
    return YAML::LoadFile(path);
  } catch (const YAML::ParserException& e) {
    throw ConfigError(path, "", e.mark.line + 1, std::string("YAML syntax error: ") + e.msg);
  } catch (const YAML::Exception& e) {
    throw ConfigError(path, "", 0, std::string("cannot read YAML: ") + e.what());
  }
}

/// Applies "a.b.c=value" to the YAML tree (value parsed as YAML), creating maps as needed.
void apply_override(YAML::Node root, const std::string& spec, Origin& origin) {
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

ModelConfig load_model_file(const std::string& path, Origin* origin, const std::string& prefix) {
  Origin local{path, {}, {}};
  Origin& o = origin ? *origin : local;
  YAML::Node root = load_yaml(path);
  ModelConfig m;
  Reader r(root, o, prefix, fs::path(path).parent_path().string());
  fields(r, m);
  r.finish();
  if (m.name.empty()) m.name = fs::path(path).stem().string();
  return m;
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------
void one_of(const Origin& o, const std::string& key, const std::string& v,
            std::initializer_list<const char*> allowed) {
  std::string list;
  for (auto* a : allowed) {
    if (v == a) return;
    list += (list.empty() ? "" : " | ") + std::string(a);
  }
  o.fail(key, "invalid value '" + v + "' (expected " + list + ")");
}

void validate_model_impl(const ModelConfig& m, const Origin& o, const std::string& p) {
  auto positive = [&](const char* k, int64_t v) {
    if (v <= 0) o.fail(p + k, v == 0 ? "missing required key (must be > 0)" : "must be > 0");
  };
  positive("dim", m.dim);
  positive("n_layers", m.n_layers);
  positive("n_heads", m.n_heads);
  positive("seq_len", m.seq_len);
  positive("vocab_size", m.vocab_size);
  if (m.n_heads > m.dim) o.fail(p + "n_heads", "n_heads exceeds dim: head_dim = dim // n_heads would be 0");
  if (m.n_kv_heads < 0) o.fail(p + "n_kv_heads", "must be >= 0 (0 means n_heads)");
  if (m.n_kv_heads > 0 && m.n_heads % m.n_kv_heads != 0)
    o.fail(p + "n_kv_heads", "n_kv_heads must divide n_heads (" + std::to_string(m.n_heads) + ")");
  one_of(o, p + "norm_type", m.norm_type,
         {"default_layer_norm", "lp_layer_norm", "gain_only_lp_layer_norm", "gain_only_layer_norm",
          "no_wb_layer_norm", "rms_norm"});
  one_of(o, p + "positional_embedding_type", m.positional_embedding_type,
         {"rotary", "llama_rotary", "head_rotary", "none"});
  one_of(o, p + "ffn_type", m.ffn_type, {"swiglu", "swiglu_torch", "gelu"});
  if (m.positional_embedding_type != "none" && m.head_dim() % 2 != 0)
    o.fail(p + "positional_embedding_type", "rotary embeddings need an even head_dim (got " +
                                                std::to_string(m.head_dim()) + ")");
  if (!(m.norm_eps > 0)) o.fail(p + "norm_eps", "must be > 0");
  if (!(m.rope_theta > 0)) o.fail(p + "rope_theta", "must be > 0");
  if (m.ffn_hidden < 0) o.fail(p + "ffn_hidden", "must be >= 0 (0 = OpenLM's rule)");
}

void validate_train(const TrainConfig& c, const Origin& o) {
  validate_model_impl(c.model, o, "model.");
  one_of(o, "precision", c.precision, {"fp32", "amp_bfloat16", "amp_bf16", "pure_bf16"});
  one_of(o, "schedule.lr_scheduler", c.schedule.lr_scheduler, {"cosine", "const", "wsd"});
  one_of(o, "parallel.strategy", c.parallel.strategy,
         {"full_shard", "shard_grad_op", "no_shard", "hybrid_shard"});
  one_of(o, "parallel.reduce_dtype", c.parallel.reduce_dtype, {"fp32", "bf16"});
  one_of(o, "init_from_mode", c.init_from_mode, {"weights", "full"});
  one_of(o, "data.on_epoch_end", c.data.on_epoch_end, {"next_epoch", "stop"});
  one_of(o, "tokenizer.type", c.tokenizer.type, {"sentencepiece"});
  if (c.batch.global_batch_size <= 0) o.fail("batch.global_batch_size", "missing required key (must be > 0)");
  if (c.batch.micro_batch_size <= 0) o.fail("batch.micro_batch_size", "missing required key (must be > 0)");
  accumulation_steps(c, 1);
  if (c.max_steps < 0) o.fail("max_steps", "must be >= 0");
  if (c.train_num_tokens < 0) o.fail("train_num_tokens", "must be >= 0");
  if (c.max_steps == 0 && c.train_num_tokens == 0)
    o.fail("max_steps", "missing: set max_steps or train_num_tokens");
  int64_t steps = total_steps(c);
  if (steps <= 0) o.fail("train_num_tokens", "gives zero optimizer steps for this batch and seq_len");
  if (c.schedule.warmup < 0) o.fail("schedule.warmup", "must be >= 0");
  if (c.schedule.warmup > steps)
    o.fail("schedule.warmup", "warmup (" + std::to_string(c.schedule.warmup) +
                                  ") exceeds the total number of steps (" + std::to_string(steps) + ")");
  if (!(c.optim.lr > 0)) o.fail("optim.lr", "must be > 0");
  if (c.optim.wd < 0) o.fail("optim.wd", "must be >= 0");
  if (!(c.optim.beta1 >= 0 && c.optim.beta1 < 1)) o.fail("optim.beta1", "must be in [0, 1)");
  if (!(c.optim.beta2 >= 0 && c.optim.beta2 < 1)) o.fail("optim.beta2", "must be in [0, 1)");
  if (!(c.optim.eps > 0)) o.fail("optim.eps", "must be > 0");
  if (c.optim.z_loss < 0) o.fail("optim.z_loss", "must be >= 0");
  if (c.schedule.lr_cooldown_end < 0) o.fail("schedule.lr_cooldown_end", "must be >= 0");
  if (c.schedule.force_min_lr < 0) o.fail("schedule.force_min_lr", "must be >= 0");
  if (!(c.schedule.cooldown_fraction >= 0 && c.schedule.cooldown_fraction <= 1))
    o.fail("schedule.cooldown_fraction", "must be in [0, 1]");
  if (c.logging.every_steps <= 0) o.fail("logging.every_steps", "must be > 0");
  if (c.checkpoint.every_steps < 0) o.fail("checkpoint.every_steps", "must be >= 0");
  if (c.checkpoint.keep_last < 1) o.fail("checkpoint.keep_last", "must be >= 1");
  if (c.data.num_workers < 1) o.fail("data.num_workers", "must be >= 1");
  if (c.data.prefetch < 1) o.fail("data.prefetch", "must be >= 1");
  if (!c.data.instructions.empty()) {
    if (!c.data.manifests.empty())
      o.fail("data.instructions", "cannot be combined with data.manifests (fine-tuning reads only the instruction data)");
    if (c.data.default_corpus)
      o.fail("data.instructions", "cannot be combined with data.default_corpus: true");
    if (c.tokenizer.path.empty())
      o.fail("tokenizer.path", "missing: data.instructions needs a tokenizer to tokenise the records");
    if (c.data.prompt_field.empty()) o.fail("data.prompt_field", "must not be empty");
    if (c.data.response_field.empty()) o.fail("data.response_field", "must not be empty");
    if (c.data.prompt_field == c.data.response_field)
      o.fail("data.response_field", "must differ from data.prompt_field ('" + c.data.prompt_field + "')");
  } else if (c.data.manifests.empty() && !c.data.default_corpus) {
    o.fail("data.manifests", "missing: list at least one manifest.jsonl (or set data.default_corpus: true, "
                             "or data.instructions for fine-tuning)");
  }
  for (std::size_t i = 0; i < c.data.manifests.size(); ++i)
    if (!(c.data.manifests[i].weight > 0))
      o.fail("data.manifests[" + std::to_string(i) + "].weight", "must be > 0");
  if (c.parallel.shard_group_size < 0) o.fail("parallel.shard_group_size", "must be >= 0");
  if (!(c.parallel.timeout_s > 0)) o.fail("parallel.timeout_s", "must be > 0");
  if (c.generate.max_new_tokens < 0) o.fail("generate.max_new_tokens", "must be >= 0");
  if (c.generate.temperature < 0) o.fail("generate.temperature", "must be >= 0");
  if (!(c.generate.top_p > 0 && c.generate.top_p <= 1)) o.fail("generate.top_p", "must be in (0, 1]");
  if (c.run_dir.empty()) o.fail("run_dir", "must not be empty");
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
    } else if constexpr (std::is_same_v<T, std::vector<DataSourceConfig>>) {
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
  return env && *env ? std::string(env) : source_recipes_dir();
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
  Origin o{file, {}, {}};
  validate_model_impl(m, o, "");
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
  std::string path = find_model_recipe(name_or_path, "");
  Origin o{path, {}, {}};
  YAML::Node root = load_yaml(path);
  for (auto& s : overrides) apply_override(root, s, o);
  ModelConfig m;
  Reader r(root, o, "", fs::path(path).parent_path().string());
  fields(r, m);
  r.finish();
  if (m.name.empty()) m.name = fs::path(path).stem().string();
  validate_model_impl(m, o, "");
  return m;
}

TrainConfig load_train_recipe(const std::string& path, const std::vector<std::string>& overrides) {
  Origin o{path, {}, {}};
  YAML::Node root = load_yaml(path);
  if (!root.IsMap()) throw ConfigError(path, "", 0, "a train recipe must be a YAML mapping");
  for (auto& s : overrides) apply_override(root, s, o);
  TrainConfig c;
  c.source_file = path;
  std::string base = fs::path(path).parent_path().string();
  Reader r(root, o, "", base);
  fields(r, c);
  r.finish();
  if (!root["model"]) o.fail("model", "missing required key");
  // Relative data and tokenizer paths are as written (relative to the working directory).
  validate_train(c, o);
  return c;
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
