// Hugging Face export/import: native -> HF (openlm, llama) -> native round trips are bit-exact,
// imported models give the original logits, an independent plain-torch Llama forward (Debian's
// python3-torch, no transformers) reproduces our logits from the exported llama directory,
// refusals name the feature, the old params_args_dict config, sharded sets, raw OpenLM .pt files.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "openlm_cpp/checkpoint/atomic_file.h"
#include "openlm_cpp/checkpoint/hf_export.h"
#include "openlm_cpp/checkpoint/hf_format.h"
#include "openlm_cpp/checkpoint/hf_import.h"
#include "openlm_cpp/core/error.h"
#include "openlm_cpp/core/recipe.h"
#include "openlm_cpp/model/transformer.h"
#include "../common/test_util.h"
#include "../common/tensor_util.h"

using namespace openlm;
using namespace openlm::checkpoint;
namespace stdfs = std::filesystem;

namespace {

std::string tmpdir(const std::string& name) { return openlm::test_util::fresh_dir("hf", name); }

std::string run_python(const std::string& dir, const std::string& script, const std::string& args) {
  return openlm::test_util::run_python(dir, script, args, "script.py");
}

using openlm::test_util::same_bytes;

/// A small Llama-shaped model: RMSNorm, SwiGLU, rotary, GQA 4 heads / 2 kv heads.
ModelConfig llama_like() {
  ModelConfig m;
  m.name = "tiny_llama";
  m.dim = 32;
  m.n_layers = 2;
  m.n_heads = 4;
  m.n_kv_heads = 2;
  m.seq_len = 16;
  m.vocab_size = 64;
  m.norm_type = "rms_norm";
  m.rope_theta = 500000.0;
  return m;
}

/// A DCLM-style model: gain-only LP LayerNorm, qk-norm, no GQA.
ModelConfig dclm_like() {
  ModelConfig m;
  m.name = "tiny_dclm";
  m.dim = 32;
  m.n_layers = 2;
  m.n_heads = 4;
  m.seq_len = 16;
  m.vocab_size = 64;
  m.norm_type = "gain_only_lp_layer_norm";
  m.qk_norm = true;
  m.ffn_type = "swiglu_torch";
  return m;
}

/// A native run directory as the trainer writes it: config.json (resolved recipe) + model.safetensors.
std::unique_ptr<Transformer> make_native(const std::string& dir, const ModelConfig& m, uint64_t seed) {
  auto model = std::make_unique<Transformer>(m, seed);
  {  // perturb the norm gains so that a swapped norm cannot pass unnoticed
    at::NoGradGuard g;
    for (auto& [n, t] : model->named_parameters())
      if (t.dim() == 1) t.add_(at::randn(t.sizes()) * 0.1);
  }
  TrainConfig c;
  c.model = m;
  c.data.default_corpus = true;
  c.batch.global_batch_size = 1;
  c.batch.micro_batch_size = 1;
  c.max_steps = 1;
  stdfs::create_directories(dir);
  fs::write_file_atomic(dir + "/config.json", to_json(c).dump(2));
  NamedTensors ts;
  for (auto& [n, t] : model->named_parameters()) ts.emplace_back(n, t.detach());
  save_safetensors(dir + "/model.safetensors", ts);
  return model;
}

at::Tensor tokens(const ModelConfig& m) {
  return at::arange(0, 12, at::kLong).mul(7).remainder(m.vocab_size).view({1, 12});
}

at::Tensor logits_of(const ModelConfig& m, const TensorMap& t) {
  Transformer model(m, 99);
  model.load_named(NamedTensors(t.begin(), t.end()));
  model.train(false);
  at::NoGradGuard g;
  return model.forward(tokens(m));
}

void expect_same_weights(Transformer& original, const TensorMap& back, bool bf16 = false) {
  auto params = original.named_parameters();
  ASSERT_EQ(params.size(), back.size());
  for (auto& [n, t] : params) {
    ASSERT_TRUE(back.count(n)) << n;
    at::Tensor want = bf16 ? t.detach().to(at::kBFloat16).to(at::kFloat) : t.detach();
    EXPECT_TRUE(same_bytes(want, back.at(n))) << n;
  }
}

void expect_same_arch(ModelConfig a, ModelConfig b) {
  a.name = b.name = "";
  EXPECT_EQ(to_json(a), to_json(b));
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

// Plain-torch Llama forward from an HF llama directory (json + struct safetensors reader).
const char* kPyLlama = R"PY(
import json, os, struct, sys
import torch
d, toks = sys.argv[1], [int(x) for x in sys.argv[2].split(',')]
cfg = json.load(open(os.path.join(d, 'config.json')))
assert cfg['model_type'] == 'llama' and cfg['architectures'] == ['LlamaForCausalLM']
def load(path):
    b = open(path, 'rb').read()
    n, = struct.unpack('<Q', b[:8])
    hdr = json.loads(b[8:8 + n])
    out = {}
    for k, v in hdr.items():
        if k == '__metadata__':
            continue
        assert v['dtype'] == 'F32', v['dtype']
        s, e = v['data_offsets']
        out[k] = torch.frombuffer(bytearray(b[8 + n + s:8 + n + e]), dtype=torch.float32).reshape(v['shape'])
    return out
idx = os.path.join(d, 'model.safetensors.index.json')
files = sorted(set(json.load(open(idx))['weight_map'].values())) if os.path.exists(idx) else ['model.safetensors']
W = {}
for f in files:
    W.update(load(os.path.join(d, f)))
H, KV, D = cfg['num_attention_heads'], cfg['num_key_value_heads'], cfg['hidden_size']
hd = cfg.get('head_dim', D // H)
eps, theta = cfg['rms_norm_eps'], cfg['rope_theta']
T = len(toks)
x = W['model.embed_tokens.weight'][torch.tensor(toks)]
def rms(x, w):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))
inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
ang = torch.outer(torch.arange(T, dtype=torch.float32), inv)
cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()
def rope(t):
    t1, t2 = t[..., :hd // 2], t[..., hd // 2:]
    return t * cos + torch.cat([-t2, t1], -1) * sin
mask = torch.full((T, T), float('-inf')).triu(1)
for i in range(cfg['num_hidden_layers']):
    p = 'model.layers.%d.' % i
    h = rms(x, W[p + 'input_layernorm.weight'])
    q = (h @ W[p + 'self_attn.q_proj.weight'].T).view(T, H, hd).transpose(0, 1)
    k = (h @ W[p + 'self_attn.k_proj.weight'].T).view(T, KV, hd).transpose(0, 1)
    v = (h @ W[p + 'self_attn.v_proj.weight'].T).view(T, KV, hd).transpose(0, 1)
    q, k = rope(q), rope(k)
    k, v = k.repeat_interleave(H // KV, 0), v.repeat_interleave(H // KV, 0)
    a = torch.softmax(q @ k.transpose(-1, -2) / hd ** 0.5 + mask, -1) @ v
    x = x + a.transpose(0, 1).reshape(T, H * hd) @ W[p + 'self_attn.o_proj.weight'].T
    h = rms(x, W[p + 'post_attention_layernorm.weight'])
    g = torch.nn.functional.silu(h @ W[p + 'mlp.gate_proj.weight'].T)
    x = x + (g * (h @ W[p + 'mlp.up_proj.weight'].T)) @ W[p + 'mlp.down_proj.weight'].T
x = rms(x, W['model.norm.weight'])
lm = W['model.embed_tokens.weight'] if cfg['tie_word_embeddings'] else W['lm_head.weight']
assert cfg['tie_word_embeddings'] == ('lm_head.weight' not in W)
print(' '.join('%.9g' % v for v in (x @ lm.T).flatten().tolist()))
)PY";

std::vector<float> parse_floats(const std::string& s) {
  std::istringstream in(s);
  std::vector<float> v;
  float f;
  while (in >> f) v.push_back(f);
  return v;
}

}  // namespace

TEST(HfFormat, ParameterShapesMatchTheModel) {
  std::vector<ModelConfig> cfgs = {llama_like(), dclm_like()};
  ModelConfig g = dclm_like();
  g.ffn_type = "gelu";
  g.norm_type = "default_layer_norm";
  g.post_embed_norm = true;
  g.weight_tying = true;
  cfgs.push_back(g);
  ModelConfig nw = llama_like();
  nw.norm_type = "no_wb_layer_norm";
  nw.qk_norm = true;
  cfgs.push_back(nw);
  for (const auto& m : cfgs) {
    Transformer t(m, 1);
    std::map<std::string, std::vector<int64_t>> want;
    for (auto& [n, p] : t.named_parameters()) want[n] = p.sizes().vec();
    std::map<std::string, std::vector<int64_t>> got;
    for (auto& [n, s] : hf::parameter_shapes(m)) got[n] = s;
    EXPECT_EQ(got, want) << m.norm_type << " " << m.ffn_type;
  }
}

TEST(HfExport, OpenLMRoundTripIsBitExact) {
  auto dir = tmpdir("openlm_rt");
  ModelConfig m = dclm_like();
  auto model = make_native(dir + "/run", m, 7);
  ExportOptions o;
  o.format = hf::Format::OpenLM;
  export_hf(dir + "/run", dir + "/hf", o);

  auto cfg = nlohmann::json::parse(fs::read_file(dir + "/hf/config.json"));
  EXPECT_EQ(cfg["model_type"], "openlm");
  EXPECT_EQ(cfg["architectures"], nlohmann::json::array({"OpenLMForCausalLM"}));
  EXPECT_EQ(cfg["dim"], 32);
  EXPECT_EQ(cfg["apply_qk_norm"], true);
  EXPECT_EQ(cfg["norm_type"], "gain_only_lp_layer_norm");
  EXPECT_EQ(cfg["ffn_type"], "swiglu_torch");
  EXPECT_EQ(cfg["torch_dtype"], "float32");
  EXPECT_TRUE(stdfs::exists(dir + "/hf/generation_config.json"));
  SafetensorsFile st(dir + "/hf/model.safetensors");
  EXPECT_TRUE(st.contains("model.layers.1.attention.q_norm.weight"));
  EXPECT_TRUE(st.contains("model.output.weight"));
  EXPECT_EQ(st.metadata().at("format"), "pt");

  import_to_native(dir + "/hf", dir + "/back");
  TrainConfig back = load_train_recipe(dir + "/back/config.json");
  expect_same_arch(back.model, m);
  expect_same_weights(*model, load_safetensors(dir + "/back/model.safetensors"));
  // logits of the imported model equal the original's exactly
  at::NoGradGuard g;
  model->train(false);
  EXPECT_TRUE(same_bytes(model->forward(tokens(m)), logits_of(back.model, load_safetensors(dir + "/back/model.safetensors"))));
  // and the imported directory exports again (import-hf OUT is a valid export source)
  export_hf(dir + "/back", dir + "/hf2", o);
  EXPECT_EQ(fs::read_file(dir + "/hf/model.safetensors"), fs::read_file(dir + "/hf2/model.safetensors"));
}

TEST(HfExport, OpenLMFormatCarriesEveryOpenLMVariant) {
  // gelu FFN (feed_forward.0 / .2), default LayerNorm with biases, post-embedding norm, tying, head_rotary
  ModelConfig m = dclm_like();
  m.ffn_type = "gelu";
  m.norm_type = "default_layer_norm";
  m.post_embed_norm = true;
  m.weight_tying = true;
  m.positional_embedding_type = "head_rotary";
  auto dir = tmpdir("variants");
  auto model = make_native(dir + "/run", m, 4);
  export_hf(dir + "/run", dir + "/hf", ExportOptions{});
  SafetensorsFile st(dir + "/hf/model.safetensors");
  EXPECT_TRUE(st.contains("model.layers.0.feed_forward.0.weight"));
  EXPECT_TRUE(st.contains("model.post_embed_norm.bias"));
  auto im = load_hf(dir + "/hf");
  expect_same_arch(im.model, m);
  expect_same_weights(*model, im.tensors);
  at::NoGradGuard g;
  model->train(false);
  EXPECT_TRUE(same_bytes(model->forward(tokens(m)), logits_of(im.model, im.tensors)));
}

TEST(HfExport, LlamaRoundTripWithGqaIsBitExact) {
  auto dir = tmpdir("llama_rt");
  ModelConfig m = llama_like();
  auto model = make_native(dir + "/run", m, 8);
  ExportOptions o;
  o.format = hf::Format::Llama;
  export_hf(dir + "/run", dir + "/hf", o);
  auto cfg = nlohmann::json::parse(fs::read_file(dir + "/hf/config.json"));
  EXPECT_EQ(cfg["model_type"], "llama");
  EXPECT_EQ(cfg["num_key_value_heads"], 2);
  EXPECT_EQ(cfg["num_attention_heads"], 4);
  EXPECT_EQ(cfg["intermediate_size"], m.hidden_dim());
  EXPECT_EQ(cfg["rope_theta"], 500000.0);
  EXPECT_EQ(cfg["tie_word_embeddings"], false);
  SafetensorsFile st(dir + "/hf/model.safetensors");
  EXPECT_EQ(st.info("model.layers.0.self_attn.k_proj.weight").shape, (std::vector<uint64_t>{16, 32}));
  EXPECT_TRUE(st.contains("lm_head.weight"));

  import_to_native(dir + "/hf", dir + "/back");
  TrainConfig back = load_train_recipe(dir + "/back/config.json");
  expect_same_arch(back.model, m);
  expect_same_weights(*model, load_safetensors(dir + "/back/model.safetensors"));
}

TEST(HfExport, LlamaTiedAndInterleavedRotaryRoundTrip) {
  auto dir = tmpdir("llama_tied");
  ModelConfig m = llama_like();
  m.weight_tying = true;
  m.positional_embedding_type = "llama_rotary";
  auto model = make_native(dir + "/run", m, 9);
  ExportOptions o;
  o.format = hf::Format::Llama;
  export_hf(dir + "/run", dir + "/hf", o);
  SafetensorsFile st(dir + "/hf/model.safetensors");
  EXPECT_FALSE(st.contains("lm_head.weight"));  // tied: HF reuses embed_tokens
  auto cfg = nlohmann::json::parse(fs::read_file(dir + "/hf/config.json"));
  EXPECT_EQ(cfg["tie_word_embeddings"], true);
  // q/k rows were permuted from interleaved pairs to HF halves: not the raw rows any more
  at::Tensor q = st.get("model.layers.0.self_attn.q_proj.weight");
  at::Tensor in = model->named_parameters()[1].second.detach();
  EXPECT_FALSE(same_bytes(q, in.slice(0, 0, 32).contiguous()));

  import_to_native(dir + "/hf", dir + "/back");
  TrainConfig back = load_train_recipe(dir + "/back/config.json");
  expect_same_arch(back.model, m);
  expect_same_weights(*model, load_safetensors(dir + "/back/model.safetensors"));
}

TEST(HfExport, IndependentTorchLlamaForwardMatchesOurLogits) {
  // GQA + rotary (halves), and tied + llama_rotary (checks the Meta->HF row permutation).
  for (int variant = 0; variant < 2; ++variant) {
    auto dir = tmpdir("pyref" + std::to_string(variant));
    ModelConfig m = llama_like();
    if (variant == 1) {
      m.weight_tying = true;
      m.positional_embedding_type = "llama_rotary";
      m.n_kv_heads = 0;
      m.ffn_hidden = 96;
    }
    auto model = make_native(dir + "/run", m, 11 + variant);
    ExportOptions o;
    o.format = hf::Format::Llama;
    o.max_shard_bytes = 40000;  // several shards + index
    export_hf(dir + "/run", dir + "/hf", o);
    EXPECT_TRUE(stdfs::exists(dir + "/hf/model.safetensors.index.json"));
    at::Tensor t = tokens(m);
    std::string toks;
    for (int64_t i = 0; i < t.size(1); ++i) toks += (i ? "," : "") + std::to_string(t[0][i].item<int64_t>());
    auto ref = parse_floats(run_python(dir, kPyLlama, dir + "/hf " + toks));
    at::NoGradGuard g;
    model->train(false);
    at::Tensor ours = model->forward(t).contiguous();
    ASSERT_EQ(static_cast<int64_t>(ref.size()), ours.numel());
    at::Tensor theirs = at::tensor(ref).view(ours.sizes());
    double diff = (ours - theirs).abs().max().item<double>();
    EXPECT_LT(diff, 1e-4) << "variant " << variant;
    std::printf("[variant %d] max |ours - plain torch llama| = %.3g\n", variant, diff);
  }
}

TEST(HfExport, Bf16ExportImportsAsRoundedWeights) {
  auto dir = tmpdir("bf16");
  ModelConfig m = llama_like();
  auto model = make_native(dir + "/run", m, 12);
  for (auto f : {hf::Format::OpenLM, hf::Format::Llama}) {
    if (f == hf::Format::OpenLM) {
      m.n_kv_heads = 0;
      m.rope_theta = 10000.0;
    }
    auto src = dir + "/run" + hf::format_name(f);
    auto mm = make_native(src, m, 12);
    ExportOptions o;
    o.format = f;
    o.dtype = at::kBFloat16;
    export_hf(src, dir + "/hf" + hf::format_name(f), o);
    auto cfg = nlohmann::json::parse(fs::read_file(dir + "/hf" + hf::format_name(f) + "/config.json"));
    EXPECT_EQ(cfg["torch_dtype"], "bfloat16");
    SafetensorsFile st(dir + "/hf" + hf::format_name(f) + "/model.safetensors");
    for (auto& n : st.names()) EXPECT_EQ(st.info(n).dtype, safetensors::DType::BF16) << n;
    auto im = load_hf(dir + "/hf" + hf::format_name(f));
    expect_same_weights(*mm, im.tensors, /*bf16=*/true);
  }
}

TEST(HfExport, RefusesWhatTheFormatCannotRepresent) {
  auto dir = tmpdir("refuse");
  make_native(dir + "/dclm", dclm_like(), 1);
  ExportOptions llama;
  llama.format = hf::Format::Llama;
  std::string e = error_of([&] { export_hf(dir + "/dclm", dir + "/out1", llama); });
  EXPECT_NE(e.find("norm_type is gain_only_lp_layer_norm"), std::string::npos) << e;
  EXPECT_FALSE(stdfs::exists(dir + "/out1/config.json"));

  ModelConfig qk = llama_like();
  qk.qk_norm = true;
  make_native(dir + "/qk", qk, 1);
  e = error_of([&] { export_hf(dir + "/qk", dir + "/out2", llama); });
  EXPECT_NE(e.find("qk-norm"), std::string::npos) << e;
  EXPECT_FALSE(stdfs::exists(dir + "/out2/model.safetensors"));

  make_native(dir + "/gqa", llama_like(), 1);
  ExportOptions openlm_fmt;
  e = error_of([&] { export_hf(dir + "/gqa", dir + "/out3", openlm_fmt); });
  EXPECT_NE(e.find("grouped-query attention"), std::string::npos) << e;

  ModelConfig hr = llama_like();
  hr.n_kv_heads = 0;
  hr.positional_embedding_type = "head_rotary";
  EXPECT_NE(hf::unsupported_reason(hr, hf::Format::OpenLM).find("rope_theta"), std::string::npos);
  hr.rope_theta = 10000.0;
  EXPECT_NE(hf::unsupported_reason(hr, hf::Format::Llama).find("head_rotary"), std::string::npos);
  EXPECT_EQ(hf::unsupported_reason(hr, hf::Format::OpenLM), "");
  ModelConfig gelu = hr;
  gelu.positional_embedding_type = "rotary";
  gelu.ffn_type = "gelu";
  EXPECT_NE(hf::unsupported_reason(gelu, hf::Format::Llama).find("SwiGLU"), std::string::npos);
  ModelConfig pe = hr;
  pe.positional_embedding_type = "rotary";
  pe.post_embed_norm = true;
  EXPECT_NE(hf::unsupported_reason(pe, hf::Format::Llama).find("post_embed_norm"), std::string::npos);
}

TEST(HfImport, OldParamsArgsDictConfig) {
  // OpenLM's older uploads: switches under params_args_dict, size named through .model.
  nlohmann::json j = {{"architectures", {"OpenLMModel"}},
                      {"model_type", "openlm"},
                      {"params_args_dict",
                       {{"model", "open_lm_test_tiny"},
                        {"model_norm", "gain_only_layer_norm"},
                        {"qk_norm", true},
                        {"positional_embedding_type", "rotary"},
                        {"ffn_type", "swiglu"},
                        {"lr", 0.003}}}};
  hf::HfConfig c = hf::parse_config(j, "config.json");
  EXPECT_TRUE(c.old_openlm);
  EXPECT_EQ(c.model.dim, 16);
  EXPECT_EQ(c.model.n_layers, 2);
  EXPECT_EQ(c.model.vocab_size, 16);
  EXPECT_EQ(c.model.norm_type, "gain_only_layer_norm");
  EXPECT_TRUE(c.model.qk_norm);
  // open_lm_1b_old: head_rotary and default LayerNorm come from the named config
  j["params_args_dict"] = {{"model", "open_lm_1b_old"}, {"positional_embedding_type", "rotary"}, {"qk_norm", false}};
  c = hf::parse_config(j, "config.json");
  EXPECT_EQ(c.model.dim, 2048);
  EXPECT_EQ(c.model.n_layers, 24);
  EXPECT_EQ(c.model.positional_embedding_type, "head_rotary");
  EXPECT_EQ(c.model.norm_type, "default_layer_norm");
  j["params_args_dict"] = {{"model", "open_lm_does_not_exist"}};
  std::string e = error_of([&] { hf::parse_config(j, "cfg.json"); });
  EXPECT_NE(e.find("params_args_dict.model"), std::string::npos) << e;

  // a whole directory in the old layout imports (weights under "model." names)
  auto dir = tmpdir("old");
  j["params_args_dict"] = {{"model", "open_lm_test_tiny"}, {"model_norm", "gain_only_layer_norm"}, {"qk_norm", true}};
  ModelConfig m = load_model("open_lm_test_tiny");
  m.norm_type = "gain_only_layer_norm";
  m.qk_norm = true;
  Transformer t(m, 3);
  NamedTensors ts;
  for (auto& [n, p] : t.named_parameters()) ts.emplace_back("model." + n, p.detach().to(at::kHalf));
  ts.emplace_back("model.layers.0.attention.pos_embed.inv_freq", at::ones({4}));  // ignored buffer
  save_safetensors(dir + "/model.safetensors", ts);
  fs::write_file_atomic(dir + "/config.json", j.dump());
  auto im = load_hf(dir);
  EXPECT_EQ(im.origin, "openlm");
  EXPECT_EQ(im.model.name, "open_lm_test_tiny");
  for (auto& [n, p] : t.named_parameters())
    EXPECT_TRUE(same_bytes(im.tensors.at(n), p.detach().to(at::kHalf).to(at::kFloat))) << n;
}

TEST(HfImport, MismatchesListEveryOffendingTensor) {
  auto dir = tmpdir("mismatch");
  ModelConfig m = llama_like();
  make_native(dir + "/run", m, 2);
  ExportOptions o;
  o.format = hf::Format::Llama;
  export_hf(dir + "/run", dir + "/hf", o);
  TensorMap t = load_safetensors(dir + "/hf/model.safetensors");
  t["model.layers.1.mlp.up_proj.weight"] = at::zeros({7, 32});
  t.erase("model.layers.0.self_attn.o_proj.weight");
  t["model.layers.0.self_attn.rotary_emb.inv_freq"] = at::ones({4});  // ignored
  t["model.extra.weight"] = at::zeros({2});
  save_safetensors(dir + "/hf/model.safetensors", t);
  std::string e = error_of([&] { load_hf(dir + "/hf"); });
  EXPECT_NE(e.find("model.layers.1.mlp.up_proj.weight"), std::string::npos) << e;
  EXPECT_NE(e.find("model.layers.0.self_attn.o_proj.weight"), std::string::npos) << e;
  EXPECT_NE(e.find("model.extra.weight"), std::string::npos) << e;
  EXPECT_EQ(e.find("inv_freq"), std::string::npos) << e;
  EXPECT_NE(e.find(dir + "/hf"), std::string::npos) << e;

  // transformers 5 writes rope_parameters instead of rope_theta
  auto cfg = nlohmann::json::parse(fs::read_file(dir + "/hf/config.json"));
  cfg.erase("rope_theta");
  cfg["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 123456.0}};
  EXPECT_EQ(hf::parse_config(cfg, "c.json").model.rope_theta, 123456.0);
  cfg["rope_parameters"]["rope_type"] = "llama3";
  e = error_of([&] { hf::parse_config(cfg, "c.json"); });
  EXPECT_NE(e.find("rope_parameters.rope_type"), std::string::npos) << e;

  // config problems name the file and key
  cfg = nlohmann::json::parse(fs::read_file(dir + "/hf/config.json"));
  cfg["hidden_act"] = "gelu";
  fs::write_file_atomic(dir + "/hf/config.json", cfg.dump());
  e = error_of([&] { load_hf(dir + "/hf"); });
  EXPECT_NE(e.find("hidden_act"), std::string::npos) << e;
  EXPECT_NE(e.find("config.json"), std::string::npos) << e;
}

TEST(HfImport, RawOpenLMTorchSaveCheckpoint) {
  auto dir = tmpdir("pt");
  ModelConfig m = load_model("open_lm_test_tiny");
  // Python writes every parameter as arange-based values under DDP / torch.compile prefixes.
  std::string names;
  for (auto& [n, s] : hf::parameter_shapes(m)) {
    std::string shape;
    for (auto v : s) shape += (shape.empty() ? "" : "x") + std::to_string(v);
    names += " " + n + ":" + shape;
  }
  const char* py = R"PY(
import sys, collections, torch
out, kind = sys.argv[1], sys.argv[2]
sd = {}
for i, spec in enumerate(sys.argv[3:]):
    name, shape = spec.split(':')
    shape = [int(x) for x in shape.split('x')]
    n = 1
    for s in shape:
        n *= s
    t = (torch.arange(n, dtype=torch.float32) * 0.001 + i).reshape(shape)
    prefix = 'module.' if i % 2 == 0 else '_orig_mod.module.'
    sd[prefix + name] = t.bfloat16() if name == 'norm.weight' else t
sd['module.layers.0.attention.pos_embed.inv_freq'] = torch.ones(4)
if kind == 'ordered':
    sd = collections.OrderedDict(sd)
ckpt = {'epoch': 3, 'name': 'tiny', 'state_dict': sd, 'optimizer': {'param_groups': [{'lr': 0.1, 'betas': (0.9, 0.95)}]}}
torch.save(ckpt, out, _use_new_zipfile_serialization=(kind != 'legacy'))
)PY";
  run_python(dir, py, dir + "/epoch_3.pt plain" + names);
  auto im = load_openlm_pt(dir + "/epoch_3.pt", m);
  EXPECT_EQ(im.origin, "pt");
  int i = 0;
  for (auto& [n, s] : hf::parameter_shapes(m)) {
    int64_t numel = 1;
    for (auto v : s) numel *= v;
    at::Tensor want = (at::arange(numel, at::kFloat) * 0.001 + i++).reshape(s);
    if (n == "norm.weight") want = want.to(at::kBFloat16).to(at::kFloat);
    EXPECT_TRUE(same_bytes(im.tensors.at(n), want)) << n;
  }
  // the import-hf path writes a native directory that loads as a recipe
  import_to_native(dir + "/epoch_3.pt", dir + "/native", &m);
  TrainConfig back = load_train_recipe(dir + "/native/config.json");
  expect_same_arch(back.model, m);
  // without a model config a .pt is refused with the option to use
  std::string e = error_of([&] { load_any(dir + "/epoch_3.pt"); });
  EXPECT_NE(e.find("--model"), std::string::npos) << e;
  // a model that does not match lists the offending tensors
  ModelConfig wrong = m;
  wrong.vocab_size = 32;
  e = error_of([&] { load_openlm_pt(dir + "/epoch_3.pt", wrong); });
  EXPECT_NE(e.find("tok_embeddings.weight"), std::string::npos) << e;
  EXPECT_NE(e.find("output.weight"), std::string::npos) << e;

  // What LibTorch's restricted unpickler cannot read gives an actionable message.
  run_python(dir, py, dir + "/legacy.pt legacy" + names);
  e = error_of([&] { load_openlm_pt(dir + "/legacy.pt", m); });
  EXPECT_NE(e.find("legacy.pt"), std::string::npos) << e;
  EXPECT_NE(e.find("legacy format"), std::string::npos) << e;
  // model.state_dict() is an OrderedDict (LibTorch 1.13's torch::pickle_load turns it into None)
  run_python(dir, py, dir + "/ordered.pt ordered" + names);
  auto od = load_openlm_pt(dir + "/ordered.pt", m);
  for (auto& [n, t] : im.tensors) EXPECT_TRUE(same_bytes(od.tensors.at(n), t)) << n;
}

TEST(HfImport, PytorchModelBinDirectory) {
  // An HF directory whose weights are pytorch_model.bin (torch.save of an OrderedDict, bf16).
  auto dir = tmpdir("bin");
  make_native(dir + "/run", llama_like(), 5);
  ExportOptions o;
  o.format = hf::Format::Llama;
  export_hf(dir + "/run", dir + "/hf", o);
  stdfs::create_directories(dir + "/bin");
  stdfs::copy_file(dir + "/hf/config.json", dir + "/bin/config.json");
  const char* py = R"PY(
import collections, json, struct, sys, torch
b = open(sys.argv[1], 'rb').read()
n, = struct.unpack('<Q', b[:8])
sd = collections.OrderedDict()
for k, v in json.loads(b[8:8 + n]).items():
    if k != '__metadata__':
        s, e = v['data_offsets']
        sd[k] = torch.frombuffer(bytearray(b[8 + n + s:8 + n + e]), dtype=torch.float32).reshape(v['shape']).bfloat16()
torch.save(sd, sys.argv[2])
)PY";
  run_python(dir, py, dir + "/hf/model.safetensors " + dir + "/bin/pytorch_model.bin");
  auto a = load_hf(dir + "/hf");
  auto b = load_hf(dir + "/bin");
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (auto& [n, t] : a.tensors) EXPECT_TRUE(same_bytes(t.to(at::kBFloat16).to(at::kFloat), b.tensors.at(n))) << n;
  stdfs::remove(dir + "/bin/pytorch_model.bin");
  std::string e = error_of([&] { load_hf(dir + "/bin"); });
  EXPECT_NE(e.find("pytorch_model.bin"), std::string::npos) << e;
}
