// Helpers shared by the Hugging Face export and import tests (hf_test_support.h).
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
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
#include "hf_test_support.h"

using namespace openlm;
using namespace openlm::checkpoint;
namespace stdfs = std::filesystem;

namespace openlm::hf_test {

std::string tmpdir(const std::string& name) { return openlm::test_util::fresh_dir("hf", name); }

std::string run_python(const std::string& dir, const std::string& script, const std::string& args) {
  return openlm::test_util::run_python(dir, script, args, "script.py");
}

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

void expect_same_weights(Transformer& original, const TensorMap& back, bool bf16) {
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
const char* const kPyLlama = R"PY(
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

}  // namespace openlm::hf_test
