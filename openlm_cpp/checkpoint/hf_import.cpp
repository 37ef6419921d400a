#include "openlm_cpp/checkpoint/hf_import.h"

#include <ATen/ATen.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <optional>
#include <set>

#include "openlm_cpp/checkpoint/atomic_file.h"
#include "openlm_cpp/checkpoint/state_shards.h"
#include "openlm_cpp/checkpoint/torch_save.h"
#include "openlm_cpp/core/error.h"
#include "openlm_cpp/core/log.h"
#include "openlm_cpp/core/recipe.h"
#include "openlm_cpp/model/model_stats.h"

namespace stdfs = std::filesystem;

namespace openlm::checkpoint {
namespace {

/// Files a Hugging Face directory may carry for its tokenizer.
const char* const kTokenizerFiles[] = {"tokenizer.model",   "tokenizer.json",         "tokenizer_config.json",
                                       "special_tokens_map.json", "added_tokens.json", "vocab.json",
                                       "merges.txt"};

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

at::Tensor to_fp32(const at::Tensor& t) { return t.to(at::kFloat).contiguous(); }

/// True when `p` (canonical) lies inside directory `root` (canonical).
bool inside(const stdfs::path& p, const stdfs::path& root) {
  const stdfs::path rel = p.lexically_relative(root);
  return !rel.empty() && *rel.begin() != ".." && *rel.begin() != ".";
}

/// `dir`/`name` if it may be copied out of a Hugging Face directory, nullopt if absent. Allowed: a
/// regular file, or a symlink to a regular file inside `dir` (or, when `dir` is a hub cache snapshot
/// `.../models--X/snapshots/REV`, inside that repository's `blobs/`, where the cache keeps the
/// bytes). Anything else (a symlink leaving the directory, a FIFO, a device) is a DataError naming
/// the file: the copy would hand out data the directory's owner may not be able to read.
std::optional<std::string> tokenizer_source_file(const std::string& dir, const char* name) {
  const stdfs::path p = stdfs::path(dir) / name;
  std::error_code ec;
  const auto link = stdfs::symlink_status(p, ec);
  if (ec || link.type() == stdfs::file_type::not_found) return std::nullopt;
  if (link.type() == stdfs::file_type::symlink) {
    const stdfs::path target = stdfs::canonical(p, ec);
    if (ec) {
      log::warn("import-hf: skipping {}: a dangling symlink", p.string());
      return std::nullopt;
    }
    const stdfs::path root = stdfs::canonical(dir);
    bool ok = inside(target, root);
    if (!ok && root.parent_path().filename() == "snapshots" &&
        root.parent_path().parent_path().filename().string().rfind("models--", 0) == 0) {
      std::error_code ec2;
      const stdfs::path blobs = stdfs::canonical(root.parent_path().parent_path() / "blobs", ec2);
      ok = !ec2 && inside(target, blobs);
    }
    if (!ok)
      throw DataError(p.string() + " is a symlink to '" + target.string() +
                      "', outside the source directory: refusing to copy it (copy the file itself into " + dir +
                      " if it belongs to the model)");
    if (!stdfs::is_regular_file(target))
      throw DataError(p.string() + " links to '" + target.string() + "', which is not a regular file: refusing to copy it");
    return p.string();
  }
  if (link.type() != stdfs::file_type::regular)
    throw DataError(p.string() + " is not a regular file: refusing to copy it");
  return p.string();
}

std::string shape_str(at::IntArrayRef s) { return c10::str(s); }

/// Weights must be floating point: an integer or bool tensor (a quantised or mislabelled
/// checkpoint) is refused by name and dtype instead of being cast to fp32 silently.
void check_float_dtypes(const TensorMap& t, const std::string& where) {
  Problems p;
  for (const auto& [name, x] : t)
    if (!is_rotary_buffer(name) && !at::isFloatingType(x.scalar_type()))
      p.add("'" + name + "': dtype " + std::string(c10::toString(x.scalar_type())) +
            " (weights must be floating point: F32, F16, BF16 or F64)");
  p.raise_if_any(where, "weights that are not floating point");
}

/// Every weight finite: NaN or Inf values (a diverged or corrupt checkpoint) are refused, naming
/// each tensor and how many of its values are bad.
void check_finite(const TensorMap& t, const std::string& where) {
  Problems p;
  for (const auto& [name, x] : t) {
    if (!at::isFloatingType(x.scalar_type()) || at::isfinite(x).all().item<bool>()) continue;
    const int64_t nan = at::isnan(x).sum().item<int64_t>();
    const int64_t bad = x.numel() - at::isfinite(x).sum().item<int64_t>();
    p.add("'" + name + "': " + std::to_string(nan) + " NaN and " + std::to_string(bad - nan) + " Inf of " +
          std::to_string(x.numel()) + " values");
  }
  p.raise_if_any(where, "weights hold NaN or Inf");
}

/// If the model ties output to the embedding, make sure both names are present (as one tensor).
void complete_tied(const ModelConfig& m, TensorMap& t) {
  if (!m.weight_tying) return;
  auto e = t.find("tok_embeddings.weight"), o = t.find("output.weight");
  if (e != t.end() && o == t.end()) t["output.weight"] = e->second;
  if (e == t.end() && o != t.end()) t["tok_embeddings.weight"] = o->second;
}

/// llama_rotary rows were permuted per head on export (interleaved pairs -> halves); undo it.
/// w: [heads*hd, d]; HF row p*hd/2 + i holds OpenLM row 2i + p.
at::Tensor unpermute_rows(const at::Tensor& w, int64_t heads, int64_t hd) {
  return w.view({heads, 2, hd / 2, w.size(1)}).transpose(1, 2).reshape({heads * hd, w.size(1)}).contiguous();
}

TensorMap from_llama(const hf::HfConfig& c, const TensorMap& hf, const std::string& where) {
  const ModelConfig& m = c.model;
  const int64_t d = m.dim, A = m.attn_width(), Akv = m.kv_width(), h = m.hidden_dim(), hd = m.head_dim();
  const bool interleaved = m.positional_embedding_type == "llama_rotary";
  Problems p;
  std::set<std::string> used;
  auto get = [&](const std::string& name, std::vector<int64_t> shape) -> at::Tensor {
    used.insert(name);
    auto it = hf.find(name);
    if (it == hf.end()) {
      p.add("missing tensor '" + name + "' " + shape_str(shape));
      return {};
    }
    if (it->second.sizes() != at::IntArrayRef(shape)) {
      p.add("'" + name + "': shape " + shape_str(it->second.sizes()) + " but the config needs " + shape_str(shape));
      return {};
    }
    return to_fp32(it->second);
  };
  TensorMap out;
  auto put = [&](const std::string& name, const at::Tensor& t) {
    if (t.defined()) out[name] = t;
  };
  put("tok_embeddings.weight", get("model.embed_tokens.weight", {m.vocab_size, d}));
  put("norm.weight", get("model.norm.weight", {d}));
  if (!m.weight_tying) put("output.weight", get("lm_head.weight", {m.vocab_size, d}));
  else used.insert("lm_head.weight");  // tied: HF uses the embedding whatever is stored here
  for (int64_t i = 0; i < m.n_layers; ++i) {
    const std::string l = "model.layers." + std::to_string(i) + ".", o = "layers." + std::to_string(i) + ".";
    at::Tensor q = get(l + "self_attn.q_proj.weight", {A, d});
    at::Tensor k = get(l + "self_attn.k_proj.weight", {Akv, d});
    at::Tensor v = get(l + "self_attn.v_proj.weight", {Akv, d});
    if (q.defined() && k.defined() && v.defined()) {
      if (interleaved) {
        q = unpermute_rows(q, m.n_heads, hd);
        k = unpermute_rows(k, m.kv_heads(), hd);
      }
      out[o + "attention.in_proj.weight"] = at::cat({q, k, v}, 0);  // [A + 2*Akv, d]
    }
    put(o + "attention.out_proj.weight", get(l + "self_attn.o_proj.weight", {d, A}));
    at::Tensor gate = get(l + "mlp.gate_proj.weight", {h, d});
    at::Tensor up = get(l + "mlp.up_proj.weight", {h, d});
    if (gate.defined() && up.defined()) out[o + "feed_forward.w12.weight"] = at::cat({gate, up}, 0);  // [2h, d]
    put(o + "feed_forward.w3.weight", get(l + "mlp.down_proj.weight", {d, h}));
    put(o + "attention_norm.weight", get(l + "input_layernorm.weight", {d}));
    put(o + "ffn_norm.weight", get(l + "post_attention_layernorm.weight", {d}));
  }
  for (const auto& [name, t] : hf)
    if (!used.count(name) && !is_rotary_buffer(name))
      p.add("unexpected tensor '" + name + "' " + shape_str(t.sizes()));
  p.raise_if_any(where, "tensors do not match the llama config");
  complete_tied(m, out);
  return out;
}

TensorMap from_openlm(const hf::HfConfig& c, const TensorMap& hf, const std::string& where) {
  TensorMap out;
  Problems p;
  for (const auto& [name, t] : hf) {
    if (is_rotary_buffer(name)) continue;
    if (name.rfind("model.", 0) != 0) {
      p.add("unexpected tensor '" + name + "' (openlm-format names start with 'model.')");
      continue;
    }
    out[name.substr(6)] = to_fp32(t);
  }
  p.raise_if_any(where, "tensors do not match the openlm format");
  complete_tied(c.model, out);
  return out;
}

/// Resolved train config of a native source: <d>/metadata.json "config" or <d>/config.json,
/// searched from `start` upwards (a checkpoint inside a run dir finds the run's config).
TrainConfig find_native_config(const stdfs::path& start) {
  for (stdfs::path d = start; !d.empty(); d = d.parent_path()) {
    if (stdfs::exists(d / "metadata.json")) {
      auto meta = nlohmann::json::parse(fs::read_file((d / "metadata.json").string()), nullptr, false);
      if (meta.is_object() && meta.contains("config")) {
        // Parsed in memory (no temporary file); errors and source_file name metadata.json.
        return load_train_recipe_text(meta["config"].dump(), (d / "metadata.json").string(), d.string());
      }
    }
    if (stdfs::exists(d / "config.json")) return load_train_recipe((d / "config.json").string());
    if (d == d.parent_path()) break;
  }
  throw ConfigError(start.string(), "", 0, "no config.json or checkpoint metadata.json found here or above");
}

}  // namespace

bool is_hf_dir(const std::string& path) {
  const stdfs::path cfg = stdfs::path(path) / "config.json";
  if (!stdfs::is_directory(path) || !stdfs::exists(cfg)) return false;
  auto j = nlohmann::json::parse(fs::read_file(cfg.string()), nullptr, false);
  return hf::is_hf_config(j);
}

void require_own_config(const std::string& dir_s) {
  const stdfs::path dir(dir_s);
  if (!stdfs::is_directory(dir) || stdfs::exists(dir / "config.json") || stdfs::exists(dir / "metadata.json")) return;
  for (const char* f : {"model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                        "pytorch_model.bin.index.json"})
    if (stdfs::exists(dir / f))
      throw ConfigError((dir / "config.json").string(), "", 0,
                        std::string("missing: the directory holds ") + f +
                            " but no config.json (nor a checkpoint's metadata.json); a parent directory's config "
                            "is not used for it");
}

void check_tensors(const ModelConfig& m, const TensorMap& t, const std::string& where) {
  Problems p;
  std::set<std::string> expected;
  for (const auto& [name, shape] : hf::parameter_shapes(m)) {
    expected.insert(name);
    auto it = t.find(name);
    if (it == t.end()) p.add("missing tensor '" + name + "' " + shape_str(shape));
    else if (it->second.sizes() != at::IntArrayRef(shape))
      p.add("'" + name + "': shape " + shape_str(it->second.sizes()) + " but the config needs " + shape_str(shape));
  }
  for (const auto& [name, tensor] : t)
    if (!expected.count(name)) p.add("unexpected tensor '" + name + "' " + shape_str(tensor.sizes()));
  p.raise_if_any(where, "weights do not match the model config");
}

TensorMap from_hf_tensors(const hf::HfConfig& c, const TensorMap& hf, const std::string& where) {
  check_float_dtypes(hf, where);
  TensorMap out = c.format == hf::Format::Llama ? from_llama(c, hf, where) : from_openlm(c, hf, where);
  check_tensors(c.model, out, where);
  check_finite(out, where);
  return out;
}

ImportedModel load_hf(const std::string& dir) {
  hf::HfConfig c = hf::read_config(dir);
  ImportedModel im;
  im.model = c.model;
  if (im.model.name.empty()) im.model.name = stdfs::path(dir).lexically_normal().filename().string();
  if (im.model.name.empty()) im.model.name = stdfs::absolute(dir).parent_path().filename().string();
  im.origin = hf::format_name(c.format);
  im.bos_id = c.bos_id;
  im.eos_id = c.eos_id;
  const bool safetensors = stdfs::exists(stdfs::path(dir) / "model.safetensors") ||
                           stdfs::exists(stdfs::path(dir) / "model.safetensors.index.json");
  im.tensors = from_hf_tensors(c, safetensors ? load_sharded(dir) : load_torch_bin(dir), dir);
  for (const char* f : kTokenizerFiles)
    if (auto p = tokenizer_source_file(dir, f)) {
      im.tokenizer_files.push_back(*p);
      if (std::string(f) == "tokenizer.model") im.tokenizer = {"sentencepiece", *p};
      // A tokenizer.json alone (GPT-NeoX / DCLM): byte-level BPE (docs/TOKENIZERS.md).
      if (std::string(f) == "tokenizer.json" && im.tokenizer.path.empty()) im.tokenizer = {"bpe", *p};
    }
  return im;
}

ImportedModel load_openlm_pt(const std::string& file, const ModelConfig& model) {
  ImportedModel im;
  im.model = model;
  im.origin = "pt";
  for (auto& [name, t] : read_torch_save(file, /*strip=*/true))
    if (!is_rotary_buffer(name)) im.tensors[name] = t;
  complete_tied(model, im.tensors);
  check_tensors(model, im.tensors, file);
  check_finite(im.tensors, file);
  return im;
}

ImportedModel load_native(const std::string& source) {
  stdfs::path p(source);
  if (!stdfs::exists(p)) throw ConfigError(source, "", 0, "no such file or directory");
  const bool dir = stdfs::is_directory(p);
  if (dir) require_own_config(source);
  TrainConfig cfg = find_native_config(dir ? p : p.parent_path());
  check_weights_fit(cfg.model, cfg.source_file);  // before reading weights sized by that config
  ImportedModel im;
  im.model = cfg.model;
  im.origin = "native";
  TensorMap raw;
  if (dir && stdfs::exists(p / "model.safetensors.index.json")) raw = load_sharded(source);
  else raw = load_model_weights(source);  // a file, a run dir, a native checkpoint (per-rank shards or whole)
  check_float_dtypes(raw, source);
  for (auto& [name, t] : raw) im.tensors[name] = to_fp32(t);
  complete_tied(im.model, im.tensors);
  check_tensors(im.model, im.tensors, source);
  check_finite(im.tensors, source);
  im.tokenizer = cfg.tokenizer;
  if (!cfg.tokenizer.path.empty()) {
    // Recipes name it relative to the working directory; also try beside the run's config.
    stdfs::path beside = stdfs::path(cfg.source_file).parent_path() / cfg.tokenizer.path;
    if (!stdfs::exists(cfg.tokenizer.path) && stdfs::path(cfg.tokenizer.path).is_relative() && stdfs::exists(beside))
      im.tokenizer.path = beside.string();
    if (stdfs::exists(im.tokenizer.path)) im.tokenizer_files.push_back(im.tokenizer.path);
    else log::warn("tokenizer '{}' named by the config of {} not found; continuing without it", cfg.tokenizer.path, source);
  }
  return im;
}

ImportedModel load_any(const std::string& source, const ModelConfig* model_for_pt) {
  if (is_hf_dir(source)) return load_hf(source);
  if (stdfs::is_regular_file(source) && (ends_with(source, ".pt") || ends_with(source, ".pth") || ends_with(source, ".bin"))) {
    if (!model_for_pt)
      throw ConfigError(source, "--model", 0, "a torch.save checkpoint carries no model config: pass --model NAME_OR_RECIPE");
    return load_openlm_pt(source, *model_for_pt);
  }
  return load_native(source);
}

std::string architecture_difference(const ModelConfig& a, const ModelConfig& b) {
  ModelConfig x = a, y = b;
  x.name = y.name = "";
  x.seq_len = y.seq_len = 0;
  x.n_kv_heads = x.kv_heads();
  y.n_kv_heads = y.kv_heads();
  x.ffn_hidden = x.hidden_dim();
  y.ffn_hidden = y.hidden_dim();
  nlohmann::json jx = to_json(x), jy = to_json(y);
  for (auto it = jx.begin(); it != jx.end(); ++it)
    if (!jy.contains(it.key()) || jy[it.key()] != it.value())
      return it.key() + ": " + it.value().dump() + " vs " + (jy.contains(it.key()) ? jy[it.key()].dump() : "(absent)");
  return "";
}

TrainConfig native_config(const ImportedModel& im, const std::string& out_dir) {
  TrainConfig c;
  c.model = im.model;
  for (const auto& f : im.tokenizer_files)
    if (stdfs::path(f).filename() == "tokenizer.model" || f == im.tokenizer.path) {
      c.tokenizer.type = ends_with(f, ".json") ? "bpe" : "sentencepiece";
      c.tokenizer.path = stdfs::absolute(stdfs::path(out_dir) / stdfs::path(f).filename()).lexically_normal().string();
      break;
    }
  // Loadable as a recipe (the validator needs data and a batch); not meant to train as is.
  c.data.default_corpus = false;
  c.data.manifests = {{"PLACEHOLDER/set-data.manifests-before-training/manifest.jsonl", 1.0}};
  c.batch.global_batch_size = 1;
  c.batch.micro_batch_size = 1;
  c.max_steps = 1;
  return c;
}

void write_native(const ImportedModel& im, const std::string& out_dir) {
  stdfs::create_directories(out_dir);
  for (const auto& f : im.tokenizer_files) {
    stdfs::path dst = stdfs::path(out_dir) / stdfs::path(f).filename();
    if (stdfs::exists(dst) && stdfs::equivalent(f, dst)) continue;
    fs::copy_file_atomic(f, dst.string());  // regular files only; never more readable than the source
  }
  NamedTensors named;
  for (const auto& [name, shape] : hf::parameter_shapes(im.model)) named.emplace_back(name, im.tensors.at(name));
  save_safetensors((stdfs::path(out_dir) / "model.safetensors").string(), named, {{"source", im.origin}});
  const std::string cfg_path = (stdfs::path(out_dir) / "config.json").string();
  fs::write_file_atomic(cfg_path, to_json(native_config(im, out_dir)).dump(2) + "\n");
  load_train_recipe(cfg_path);  // the layout's promise: the config loads as a recipe
}

ImportedModel import_to_native(const std::string& source, const std::string& out_dir, const ModelConfig* model_for_pt) {
  ImportedModel im = load_any(source, model_for_pt);
  write_native(im, out_dir);
  return im;
}

}  // namespace openlm::checkpoint
