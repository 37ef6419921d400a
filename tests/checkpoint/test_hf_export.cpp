// Hugging Face export: native -> HF (openlm, llama) -> native round trips are bit-exact, imported
// models give the original logits, an independent plain-torch Llama forward (Debian's python3-torch,
// no transformers) reproduces our logits from the exported llama directory, bf16 exports, and
// refusals name the feature the format cannot represent.
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
using namespace openlm::hf_test;
namespace stdfs = std::filesystem;

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
