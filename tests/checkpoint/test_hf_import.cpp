// Hugging Face import: the old params_args_dict config, mismatches listing every offending tensor,
// raw OpenLM torch.save (.pt) checkpoints, and pytorch_model.bin directories.
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
#include "hf_test_support.h"

using namespace openlm;
using namespace openlm::checkpoint;
using namespace openlm::hf_test;
namespace stdfs = std::filesystem;

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
