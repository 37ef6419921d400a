#include "openlm_cpp/checkpoint/hf_format.h"

#include <filesystem>
#include <string>
#include <vector>

#include "openlm_cpp/checkpoint/atomic_file.h"
#include "openlm_cpp/core/error.h"
#include "openlm_cpp/core/recipe.h"
#include "openlm_cpp/model/model_stats.h"

namespace stdfs = std::filesystem;

namespace openlm::hf {
namespace {

// OpenLM's command-line defaults for the architecture switches (what a named JSON config that
// does not mention a switch gets).
constexpr const char* kDefaultNorm = "default_layer_norm";
constexpr const char* kDefaultPos = "rotary";
constexpr const char* kDefaultFfn = "swiglu";

/// Typed access to config.json keys; errors name the file and the key.
class Fields {
 public:
  Fields(const nlohmann::json& j, std::string file, std::string prefix = "")
      : j_(j), file_(std::move(file)), prefix_(std::move(prefix)) {}

  bool has(const char* k) const { return j_.contains(k) && !j_.at(k).is_null(); }

  int64_t integer(const char* k) const {
    need(k);
    const auto& v = j_.at(k);
    if (!v.is_number_integer()) fail(k, "expected an integer, got " + v.dump());
    return v.get<int64_t>();
  }
  int64_t integer(const char* k, int64_t dflt) const { return has(k) ? integer(k) : dflt; }
  double number(const char* k, double dflt) const {
    if (!has(k)) return dflt;
    const auto& v = j_.at(k);
    if (!v.is_number()) fail(k, "expected a number, got " + v.dump());
    return v.get<double>();
  }
  bool boolean(const char* k, bool dflt) const {
    if (!has(k)) return dflt;
    const auto& v = j_.at(k);
    if (!v.is_boolean()) fail(k, "expected true or false, got " + v.dump());
    return v.get<bool>();
  }
  std::string string(const char* k, const std::string& dflt) const {
    if (!has(k)) return dflt;
    const auto& v = j_.at(k);
    if (!v.is_string()) fail(k, "expected a string, got " + v.dump());
    return v.get<std::string>();
  }
  /// bos/eos ids may be an integer or a list (first entry) in HF configs.
  int64_t token_id(const char* k) const {
    if (!has(k)) return -1;
    const auto& v = j_.at(k);
    if (v.is_number_integer()) return v.get<int64_t>();
    if (v.is_array() && !v.empty() && v[0].is_number_integer()) return v[0].get<int64_t>();
    fail(k, "expected a token id, got " + v.dump());
  }
  void need(const char* k) const {
    if (!has(k)) fail(k, "missing required key");
  }
  [[noreturn]] void fail(const std::string& k, const std::string& what) const {
    throw ConfigError(file_, prefix_ + k, 0, what);
  }

 private:
  const nlohmann::json& j_;
  std::string file_, prefix_;
};

void validate(const ModelConfig& m, const std::string& file) { validate_model(m, file); }

HfConfig parse_openlm(const nlohmann::json& j, const std::string& file) {
  Fields f(j, file);
  HfConfig c;
  c.format = Format::OpenLM;
  ModelConfig& m = c.model;
  m.dim = f.integer("dim");
  m.n_layers = f.integer("n_layers");
  m.n_heads = f.integer("n_heads");
  m.vocab_size = f.integer("vocab_size");
  m.seq_len = f.integer("seq_len", 2048);
  m.norm_eps = f.number("norm_eps", 1e-5);
  m.post_embed_norm = f.boolean("post_embed_norm", false);
  m.weight_tying = f.boolean("weight_tying", false);
  m.qk_norm = f.boolean("apply_qk_norm", f.boolean("qk_norm", false));
  m.positional_embedding_type = f.string("positional_embedding_type", kDefaultPos);
  m.ffn_type = f.string("ffn_type", kDefaultFfn);
  m.norm_type = f.string("norm_type", kDefaultNorm);
  for (const char* k : {"n_heads_kv", "n_kv_heads", "num_key_value_heads"})
    if (f.has(k) && f.integer(k) != m.n_heads)
      f.fail(k, "the openlm format has no grouped-query attention (n_heads = " + std::to_string(m.n_heads) + ")");
  if (f.has("moe_num_experts") && f.integer("moe_num_experts") > 0)
    f.fail("moe_num_experts", "mixture-of-experts models are not supported");
  return c;
}

/// The older OpenLM upload: {"params_args_dict": {"model": "open_lm_1b", "model_norm": ..., ...}}.
/// Sizes come from the named config; a switch comes from the named config when that config sets
/// it away from OpenLM's command-line default (OpenLM's JSON wins over the arguments), else from
/// params_args_dict.
HfConfig parse_old_openlm(const nlohmann::json& j, const std::string& file) {
  const nlohmann::json& a = j.at("params_args_dict");
  if (!a.is_object()) throw ConfigError(file, "params_args_dict", 0, "expected a mapping");
  Fields f(a, file, "params_args_dict.");
  std::string name = f.string("model", "");
  if (name.empty()) f.fail("model", "missing required key (the named OpenLM config, e.g. open_lm_1b)");
  // OpenLM accepts "open_lm_1b" or a path to "<name>.json".
  std::string stem = stdfs::path(name).stem().string();
  HfConfig c;
  c.format = Format::OpenLM;
  c.old_openlm = true;
  try {
    c.model = load_model(stem);
  } catch (const ConfigError& e) {
    f.fail("model", std::string("cannot resolve the named config: ") + e.what());
  }
  ModelConfig& m = c.model;
  if (m.norm_type == kDefaultNorm) m.norm_type = f.string("model_norm", m.norm_type);
  if (!m.qk_norm) m.qk_norm = f.boolean("qk_norm", false);
  if (m.positional_embedding_type == kDefaultPos)
    m.positional_embedding_type = f.string("positional_embedding_type", m.positional_embedding_type);
  if (m.ffn_type == kDefaultFfn) m.ffn_type = f.string("ffn_type", m.ffn_type);
  if (f.has("moe_num_experts") && f.integer("moe_num_experts") > 0)
    f.fail("moe_num_experts", "mixture-of-experts models are not supported");
  return c;
}

HfConfig parse_llama(const nlohmann::json& j, const std::string& file) {
  Fields f(j, file);
  HfConfig c;
  c.format = Format::Llama;
  ModelConfig& m = c.model;
  m.dim = f.integer("hidden_size");
  m.n_layers = f.integer("num_hidden_layers");
  m.n_heads = f.integer("num_attention_heads");
  m.vocab_size = f.integer("vocab_size");
  int64_t kv = f.integer("num_key_value_heads", m.n_heads);
  m.n_kv_heads = kv == m.n_heads ? 0 : kv;
  m.seq_len = f.integer("max_position_embeddings", 2048);
  m.norm_eps = f.number("rms_norm_eps", 1e-6);
  m.rope_theta = f.number("rope_theta", 10000.0);
  if (f.has("rope_parameters")) {  // transformers 5 spelling: {"rope_type": "default", "rope_theta": ...}
    const nlohmann::json& rp = j.at("rope_parameters");
    if (!rp.is_object()) f.fail("rope_parameters", "expected a mapping");
    Fields r(rp, file, "rope_parameters.");
    if (r.string("rope_type", "default") != "default")
      r.fail("rope_type", "only the default RoPE is supported, got '" + r.string("rope_type", "") + "'");
    m.rope_theta = r.number("rope_theta", m.rope_theta);
  }
  m.weight_tying = f.boolean("tie_word_embeddings", false);
  m.norm_type = "rms_norm";
  m.qk_norm = false;
  m.post_embed_norm = false;
  m.ffn_type = "swiglu";
  m.positional_embedding_type = f.string("openlm_positional_embedding_type", "rotary");
  if (m.positional_embedding_type != "rotary" && m.positional_embedding_type != "llama_rotary")
    f.fail("openlm_positional_embedding_type", "expected rotary or llama_rotary");
  const int64_t hidden = f.integer("intermediate_size");
  ModelConfig rule = m;
  rule.ffn_hidden = 0;
  m.ffn_hidden = hidden == rule.hidden_dim() ? 0 : hidden;
  if (f.string("hidden_act", "silu") != "silu")
    f.fail("hidden_act", "only SiLU (SwiGLU) feed-forwards are supported, got '" + f.string("hidden_act", "") + "'");
  if (f.boolean("attention_bias", false)) f.fail("attention_bias", "biases are not supported (OpenLM has none)");
  if (f.boolean("mlp_bias", false)) f.fail("mlp_bias", "biases are not supported (OpenLM has none)");
  if (f.has("rope_scaling")) f.fail("rope_scaling", "RoPE scaling is not supported");
  if (f.number("partial_rotary_factor", 1.0) != 1.0)
    f.fail("partial_rotary_factor", "partial rotary embeddings are not supported");
  if (f.has("head_dim") && m.n_heads > 0 && f.integer("head_dim") != m.dim / m.n_heads)
    f.fail("head_dim", "head_dim " + std::to_string(f.integer("head_dim")) +
                           " != hidden_size // num_attention_heads = " + std::to_string(m.dim / m.n_heads));
  if (f.integer("pretraining_tp", 1) != 1) f.fail("pretraining_tp", "must be 1");
  return c;
}

}  // namespace

Format parse_format(const std::string& name, const std::string& key) {
  if (name == "openlm") return Format::OpenLM;
  if (name == "llama") return Format::Llama;
  throw ConfigError(key, key, 0, "unknown Hugging Face format '" + name + "' (expected openlm | llama)");
}

const char* format_name(Format f) { return f == Format::OpenLM ? "openlm" : "llama"; }

std::string unsupported_reason(const ModelConfig& m, Format f) {
  if (f == Format::OpenLM) {
    if (m.kv_heads() != m.n_heads)
      return "grouped-query attention (n_kv_heads = " + std::to_string(m.kv_heads()) + ", n_heads = " +
             std::to_string(m.n_heads) + "): the openlm format has no GQA; export with --format llama";
    if (m.rope_theta != 10000.0)
      return "rope_theta = " + std::to_string(m.rope_theta) + ": OpenLM's rotary embedding is fixed at theta 10000";
    ModelConfig rule = m;
    rule.ffn_hidden = 0;
    if (m.hidden_dim() != rule.hidden_dim())
      return "ffn_hidden = " + std::to_string(m.ffn_hidden) + ": OpenLM derives the feed-forward width from dim (" +
             std::to_string(rule.hidden_dim()) + ")";
    return "";
  }
  // Llama: every offending model key, each with the value that would export, then where the
  // docs explain it (a model trained with DCLM's settings cannot be converted after the fact).
  std::vector<std::string> why;
  if (m.norm_type != "rms_norm")
    why.push_back("model.norm_type is " + m.norm_type + ": LlamaForCausalLM uses RMSNorm (norm_type: rms_norm)");
  if (m.qk_norm) why.push_back("model.qk_norm is on: LlamaForCausalLM has no qk-norm (q/k normalisation; qk_norm: false)");
  if (m.post_embed_norm)
    why.push_back("model.post_embed_norm is on: LlamaForCausalLM has no norm after the embedding (post_embed_norm: false)");
  if (m.ffn_type != "swiglu" && m.ffn_type != "swiglu_torch")
    why.push_back("model.ffn_type is " + m.ffn_type + ": LlamaForCausalLM uses a SwiGLU feed-forward (ffn_type: swiglu)");
  if (m.positional_embedding_type != "rotary" && m.positional_embedding_type != "llama_rotary")
    why.push_back("model.positional_embedding_type is " + m.positional_embedding_type +
                  ": LlamaForCausalLM uses rotary embeddings over positions (rotary or llama_rotary)");
  if (why.empty()) return "";
  std::string out;
  for (const auto& w : why) out += (out.empty() ? "" : "; ") + w;
  return out + ". Export it with --format openlm instead, or train with the Llama-compatible settings of "
               "docs/HF_FORMAT.md (\"Which models export as llama\")";
}

nlohmann::json make_config(const ModelConfig& m, Format f, const ExportMeta& meta) {
  std::string why = unsupported_reason(m, f);
  if (!why.empty())
    throw Error(std::string("model '") + m.name + "' cannot be exported in the " + format_name(f) + " format: " + why);
  nlohmann::json j = nlohmann::json::object();
  if (f == Format::OpenLM) {
    j["architectures"] = {"OpenLMForCausalLM"};
    j["model_type"] = "openlm";
    j["dim"] = m.dim;
    j["n_layers"] = m.n_layers;
    j["n_heads"] = m.n_heads;
    j["vocab_size"] = m.vocab_size;
    j["norm_eps"] = m.norm_eps;
    j["seq_len"] = m.seq_len;
    j["post_embed_norm"] = m.post_embed_norm;
    j["weight_tying"] = m.weight_tying;
    j["tie_word_embeddings"] = m.weight_tying;
    j["apply_qk_norm"] = m.qk_norm;
    j["positional_embedding_type"] = m.positional_embedding_type;
    j["ffn_type"] = m.ffn_type;
    j["norm_type"] = m.norm_type;
    // OpenLM's get_attn_func: plain torch scaled-dot-product attention, available everywhere.
    j["attn_name"] = "torch_attn";
  } else {
    j["architectures"] = {"LlamaForCausalLM"};
    j["model_type"] = "llama";
    j["hidden_size"] = m.dim;
    j["intermediate_size"] = m.hidden_dim();
    j["num_hidden_layers"] = m.n_layers;
    j["num_attention_heads"] = m.n_heads;
    j["num_key_value_heads"] = m.kv_heads();
    j["head_dim"] = m.head_dim();
    j["hidden_act"] = "silu";
    j["max_position_embeddings"] = m.seq_len;
    j["rms_norm_eps"] = m.norm_eps;
    j["rope_theta"] = m.rope_theta;
    j["rope_scaling"] = nullptr;
    j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", m.rope_theta}};  // transformers >= 5
    j["attention_bias"] = false;
    j["mlp_bias"] = false;
    j["attention_dropout"] = 0.0;
    j["initializer_range"] = 0.02;
    j["pretraining_tp"] = 1;
    j["use_cache"] = true;
    j["vocab_size"] = m.vocab_size;
    j["tie_word_embeddings"] = m.weight_tying;
    if (m.positional_embedding_type == "llama_rotary") j["openlm_positional_embedding_type"] = "llama_rotary";
  }
  if (meta.bos_id >= 0) j["bos_token_id"] = meta.bos_id;
  if (meta.eos_id >= 0) j["eos_token_id"] = meta.eos_id;
  j["torch_dtype"] = meta.torch_dtype;
  return j;
}

nlohmann::json make_generation_config(const ExportMeta& meta) {
  nlohmann::json j = {{"_from_model_config", true}};
  if (meta.bos_id >= 0) j["bos_token_id"] = meta.bos_id;
  if (meta.eos_id >= 0) j["eos_token_id"] = meta.eos_id;
  return j;
}

bool is_hf_config(const nlohmann::json& j) {
  return j.is_object() && (j.contains("model_type") || j.contains("architectures") || j.contains("params_args_dict"));
}

HfConfig parse_config(const nlohmann::json& j, const std::string& file) {
  if (!j.is_object()) throw ConfigError(file, "", 0, "config.json must hold a JSON object");
  Fields f(j, file);
  HfConfig c;
  if (f.has("params_args_dict")) {
    c = parse_old_openlm(j, file);
  } else {
    std::string type = f.string("model_type", "");
    if (type.empty() && j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty()) {
      std::string arch = j["architectures"][0].is_string() ? j["architectures"][0].get<std::string>() : "";
      if (arch.rfind("OpenLM", 0) == 0) type = "openlm";
      if (arch == "LlamaForCausalLM") type = "llama";
    }
    if (type == "openlm") {
      c = parse_openlm(j, file);
    } else if (type == "llama") {
      c = parse_llama(j, file);
    } else {
      f.fail("model_type", "unsupported model_type '" + type + "' (expected openlm or llama)");
    }
  }
  c.torch_dtype = f.string("torch_dtype", "");
  c.bos_id = f.token_id("bos_token_id");
  c.eos_id = f.token_id("eos_token_id");
  validate(c.model, file);
  return c;
}

HfConfig read_config(const std::string& dir) {
  const std::string path = (stdfs::path(dir) / "config.json").string();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(fs::read_file(path));
  } catch (const nlohmann::json::exception& e) {
    throw ConfigError(path, "", 0, std::string("not valid JSON: ") + e.what());
  }
  HfConfig c = parse_config(j, path);
  // Everything that reads an HF directory goes on to allocate the model: refuse what cannot fit
  // (or whose size overflows) now, naming config.json, rather than fail deep inside an allocation.
  check_weights_fit(c.model, path);
  return c;
}

std::vector<std::pair<std::string, std::vector<int64_t>>> parameter_shapes(const ModelConfig& m) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  const int64_t d = m.dim, A = m.attn_width(), Akv = m.kv_width(), h = m.hidden_dim();
  auto norm = [&](const std::string& prefix, int64_t width) {
    if (m.norm_type != "no_wb_layer_norm") out.push_back({prefix + ".weight", {width}});
    if (m.norm_type == "default_layer_norm" || m.norm_type == "lp_layer_norm")
      out.push_back({prefix + ".bias", {width}});
  };
  out.push_back({"tok_embeddings.weight", {m.vocab_size, d}});
  if (m.post_embed_norm) norm("post_embed_norm", d);
  for (int64_t i = 0; i < m.n_layers; ++i) {
    const std::string p = "layers." + std::to_string(i) + ".";
    out.push_back({p + "attention.in_proj.weight", {A + 2 * Akv, d}});
    out.push_back({p + "attention.out_proj.weight", {d, A}});
    if (m.qk_norm) {
      norm(p + "attention.q_norm", A);
      norm(p + "attention.k_norm", Akv);
    }
    if (m.ffn_type == "gelu") {
      out.push_back({p + "feed_forward.0.weight", {h, d}});
      out.push_back({p + "feed_forward.2.weight", {d, h}});
    } else {
      out.push_back({p + "feed_forward.w12.weight", {2 * h, d}});
      out.push_back({p + "feed_forward.w3.weight", {d, h}});
    }
    norm(p + "attention_norm", d);
    norm(p + "ffn_norm", d);
  }
  norm("norm", d);
  out.push_back({"output.weight", {m.vocab_size, d}});
  return out;
}

}  // namespace openlm::hf
