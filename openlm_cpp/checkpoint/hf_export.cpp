#include "openlm_cpp/checkpoint/hf_export.h"

#include <ATen/ATen.h>

#include <filesystem>

#include "openlm_cpp/checkpoint/atomic_file.h"
#include "openlm_cpp/core/error.h"
#include "openlm_cpp/core/log.h"

namespace stdfs = std::filesystem;

namespace openlm::checkpoint {
namespace {

/// Interleaved (2i, 2i+1) rotary pairs -> HF halves (i, i + hd/2), per head: OpenLM row 2i + p
/// becomes HF row p*hd/2 + i. w: [heads*hd, d].
at::Tensor permute_rows(const at::Tensor& w, int64_t heads, int64_t hd) {
  return w.view({heads, hd / 2, 2, w.size(1)}).transpose(1, 2).reshape({heads * hd, w.size(1)});
}

const char* dtype_name(c10::ScalarType t) {
  if (t == at::kFloat) return "float32";
  if (t == at::kBFloat16) return "bfloat16";
  throw Error(std::string("export dtype must be fp32 or bf16, got ") + c10::toString(t));
}

}  // namespace

NamedTensors to_hf_tensors(const ModelConfig& m, const TensorMap& openlm, hf::Format format, c10::ScalarType dtype) {
  dtype_name(dtype);
  check_tensors(m, openlm, "model '" + m.name + "'");
  auto cast = [&](const at::Tensor& t) { return t.to(dtype).contiguous(); };
  NamedTensors out;
  if (format == hf::Format::OpenLM) {
    for (const auto& [name, shape] : hf::parameter_shapes(m)) out.emplace_back("model." + name, cast(openlm.at(name)));
    return out;
  }
  std::string why = hf::unsupported_reason(m, format);
  if (!why.empty()) throw Error("model '" + m.name + "' cannot be exported in the llama format: " + why);
  const int64_t A = m.attn_width(), Akv = m.kv_width(), h = m.hidden_dim(), hd = m.head_dim();
  const bool interleaved = m.positional_embedding_type == "llama_rotary";
  out.emplace_back("model.embed_tokens.weight", cast(openlm.at("tok_embeddings.weight")));
  for (int64_t i = 0; i < m.n_layers; ++i) {
    const std::string o = "layers." + std::to_string(i) + ".", l = "model.layers." + std::to_string(i) + ".";
    const at::Tensor& in = openlm.at(o + "attention.in_proj.weight");  // [A + 2*Akv, d]
    at::Tensor q = in.slice(0, 0, A), k = in.slice(0, A, A + Akv), v = in.slice(0, A + Akv, A + 2 * Akv);
    if (interleaved) {
      q = permute_rows(q, m.n_heads, hd);
      k = permute_rows(k, m.kv_heads(), hd);
    }
    out.emplace_back(l + "self_attn.q_proj.weight", cast(q));
    out.emplace_back(l + "self_attn.k_proj.weight", cast(k));
    out.emplace_back(l + "self_attn.v_proj.weight", cast(v));
    out.emplace_back(l + "self_attn.o_proj.weight", cast(openlm.at(o + "attention.out_proj.weight")));
    const at::Tensor& w12 = openlm.at(o + "feed_forward.w12.weight");  // [2h, d]
    out.emplace_back(l + "mlp.gate_proj.weight", cast(w12.slice(0, 0, h)));
    out.emplace_back(l + "mlp.up_proj.weight", cast(w12.slice(0, h, 2 * h)));
    out.emplace_back(l + "mlp.down_proj.weight", cast(openlm.at(o + "feed_forward.w3.weight")));
    out.emplace_back(l + "input_layernorm.weight", cast(openlm.at(o + "attention_norm.weight")));
    out.emplace_back(l + "post_attention_layernorm.weight", cast(openlm.at(o + "ffn_norm.weight")));
  }
  out.emplace_back("model.norm.weight", cast(openlm.at("norm.weight")));
  if (!m.weight_tying) out.emplace_back("lm_head.weight", cast(openlm.at("output.weight")));
  return out;
}

ExportResult write_hf(const ImportedModel& model, const std::string& out_dir, const ExportOptions& opt) {
  const ModelConfig& m = model.model;
  hf::ExportMeta meta;
  meta.torch_dtype = dtype_name(opt.dtype);
  meta.bos_id = opt.bos_id >= 0 ? opt.bos_id : model.bos_id;
  meta.eos_id = opt.eos_id >= 0 ? opt.eos_id : model.eos_id;
  // Everything that can refuse runs before anything is written.
  nlohmann::json config = hf::make_config(m, opt.format, meta);
  NamedTensors tensors = to_hf_tensors(m, model.tensors, opt.format, opt.dtype);

  stdfs::create_directories(out_dir);
  ExportResult r;
  r.weights = save_sharded(out_dir, tensors, opt.max_shard_bytes,
                           {{"source", "openlm-cpp"}, {"hf_format", hf::format_name(opt.format)}});
  tensors.clear();
  const stdfs::path out(out_dir);
  bool has_tok_config = false, has_spm = false, has_json = false;
  for (const auto& f : model.tokenizer_files) {
    std::string name = stdfs::path(f).filename().string();
    // A run's tokenizer file may be called anything; HF expects tokenizer.model / tokenizer.json.
    if (f == model.tokenizer.path)
      name = stdfs::path(f).extension() == ".json" ? "tokenizer.json"
             : model.tokenizer.type == "sentencepiece" ? "tokenizer.model" : name;
    const stdfs::path dst = out / name;
    if (!(stdfs::exists(dst) && stdfs::equivalent(f, dst))) fs::copy_file_atomic(f, dst.string());
    r.tokenizer_files.push_back(name);
    has_tok_config |= name == "tokenizer_config.json";
    has_spm |= name == "tokenizer.model";
    has_json |= name == "tokenizer.json";
  }
  if (has_json && !has_spm && !has_tok_config) {
    // transformers loads a tokenizer.json through PreTrainedTokenizerFast (the special tokens are
    // in the file's added_tokens).
    nlohmann::json tc = {{"tokenizer_class", "PreTrainedTokenizerFast"},
                         {"clean_up_tokenization_spaces", false},
                         {"model_max_length", m.seq_len}};
    fs::write_file_atomic((out / "tokenizer_config.json").string(), tc.dump(2) + "\n");
    r.tokenizer_files.push_back("tokenizer_config.json");
    has_tok_config = true;
  }
  if (has_spm && !has_tok_config) {
    // LlamaTokenizer reads tokenizer.model; our SentencePiece encode adds no BOS/EOS, so neither does it.
    nlohmann::json tc = {{"tokenizer_class", "LlamaTokenizer"},
                         {"add_bos_token", false},
                         {"add_eos_token", false},
                         {"model_max_length", m.seq_len}};
    fs::write_file_atomic((out / "tokenizer_config.json").string(), tc.dump(2) + "\n");
    r.tokenizer_files.push_back("tokenizer_config.json");
  }
  if (model.tokenizer_files.empty()) log::warn("export-hf: the source has no tokenizer files; {} holds weights and config only", out_dir);
  fs::write_file_atomic((out / "generation_config.json").string(), hf::make_generation_config(meta).dump(2) + "\n");
  // config.json last: a directory with a config is a complete export.
  fs::write_file_atomic((out / "config.json").string(), config.dump(2) + "\n");
  return r;
}

ExportResult export_hf(const std::string& source, const std::string& out_dir, const ExportOptions& opt) {
  ImportedModel model = load_any(source);
  // Refuse before writing anything (write_hf checks again, cheaply).
  std::string why = hf::unsupported_reason(model.model, opt.format);
  if (!why.empty())
    throw Error("'" + source + "' cannot be exported in the " + hf::format_name(opt.format) + " format: " + why);
  return write_hf(model, out_dir, opt);
}

}  // namespace openlm::checkpoint
