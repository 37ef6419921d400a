// The `openlm` binary against hostile or mistaken inputs, run as a user runs it (issue 13, A.7-9):
// models too large to build are refused from their config before anything is allocated, gzip bombs
// in tar shards stop at a bound, bad weights and bad options are refused with messages that name the
// file, tensor or option.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cmath>
#include <cstring>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "../data_loader/test_util.h"
#include "data_loader/manifest.h"
#include "data_loader/tar_format.h"
#include "data_loader/token_codec.h"

using namespace openlm::data;
using namespace openlm::data::test;

namespace {

struct Result {
  int rc = -1;
  std::string out;      ///< stdout + stderr
  long max_rss_kb = 0;  ///< peak resident set of the command
};

/// Runs `openlm ARGS` through /bin/sh with extra environment assignments (`env`, e.g.
/// "OPENLM_MEMORY_LIMIT=8GiB"); returns exit status, output and the child's peak RSS (wait4).
Result run_openlm(const std::string& args, const std::string& env = "") {
  const std::string log = temp_dir("cli_out") + "/out.txt";
  const std::string cmd = "exec env " + env + " " + std::string(OPENLM_CLI) + " " + args + " >'" + log + "' 2>&1";
  Result r;
  pid_t pid = ::fork();
  if (pid == 0) {
    ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  int st = 0;
  struct rusage ru;
  std::memset(&ru, 0, sizeof ru);
  ::wait4(pid, &st, 0, &ru);
  r.rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  r.max_rss_kb = ru.ru_maxrss;
  r.out = read_file(log);
  return r;
}

bool has(const std::string& s, const std::string& what) { return s.find(what) != std::string::npos; }

/// A tiny train recipe (inline model) on `manifest`, written to dir/recipe.yaml.
std::string tiny_recipe(const std::string& dir, const std::string& manifest, const std::string& model_yaml,
                        const std::string& extra_data = "") {
  const std::string path = dir + "/recipe.yaml";
  write_file(path, "model: " + model_yaml + "\n" +
                       "data:\n  manifests: ['" + manifest + "']\n" + extra_data +
                       "batch: {global_batch_size: 2, micro_batch_size: 2}\n"
                       "max_steps: 1\nlogging: {tensorboard: false}\nrun_dir: " + dir + "/run\n");
  return path;
}

const char* const kTinyModel = "{name: tiny, dim: 16, n_layers: 1, n_heads: 2, seq_len: 16, vocab_size: 64}";

// ---- safetensors and HF directories written by hand (no torch in this test) -----------------

struct RawTensor {
  std::string name, dtype;  // "F32" or "I32"
  std::vector<int64_t> shape;
  std::vector<float> values;  // as float; I32 tensors are stored as int32
};

void write_safetensors(const std::string& path, const std::vector<RawTensor>& ts) {
  nlohmann::json h = nlohmann::json::object();
  std::string data;
  for (const auto& t : ts) {
    const size_t begin = data.size();
    for (float v : t.values) {
      if (t.dtype == "F32") {
        data.append(reinterpret_cast<const char*>(&v), 4);
      } else {
        int32_t i = static_cast<int32_t>(v);
        data.append(reinterpret_cast<const char*>(&i), 4);
      }
    }
    h[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {begin, data.size()}}};
  }
  std::string hs = h.dump();
  while (hs.size() % 8) hs.push_back(' ');
  uint64_t n = hs.size();
  std::string bytes(reinterpret_cast<const char*>(&n), 8);
  write_file(path, bytes + hs + data);
}

/// A Llama-format HF directory (d=8, 1 layer, 2 heads, vocab 16, ffn 16) with small finite
/// weights; `edit` may change the tensors before they are written.
void write_llama_dir(const std::string& dir, const std::function<void(std::vector<RawTensor>&)>& edit = {}) {
  run("mkdir -p '" + dir + "'");
  write_file(dir + "/config.json",
             R"({"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 8,
                 "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2,
                 "vocab_size": 16, "intermediate_size": 16, "max_position_embeddings": 32,
                 "rms_norm_eps": 1e-6, "tie_word_embeddings": false, "hidden_act": "silu"})");
  std::vector<RawTensor> ts;
  auto add = [&](const std::string& name, std::vector<int64_t> shape) {
    int64_t n = 1;
    for (auto s : shape) n *= s;
    RawTensor t{name, "F32", shape, {}};
    for (int64_t i = 0; i < n; ++i) t.values.push_back(0.01f * static_cast<float>((i * 7) % 13) - 0.05f);
    ts.push_back(t);
  };
  add("model.embed_tokens.weight", {16, 8});
  add("model.norm.weight", {8});
  add("lm_head.weight", {16, 8});
  const std::string l = "model.layers.0.";
  add(l + "self_attn.q_proj.weight", {8, 8});
  add(l + "self_attn.k_proj.weight", {8, 8});
  add(l + "self_attn.v_proj.weight", {8, 8});
  add(l + "self_attn.o_proj.weight", {8, 8});
  add(l + "mlp.gate_proj.weight", {16, 8});
  add(l + "mlp.up_proj.weight", {16, 8});
  add(l + "mlp.down_proj.weight", {8, 16});
  add(l + "input_layernorm.weight", {8});
  add(l + "post_attention_layernorm.weight", {8});
  if (edit) edit(ts);
  write_safetensors(dir + "/model.safetensors", ts);
}

/// gzip of "[" followed by `mib` MiB of spaces, as concatenated gzip members of 1 MiB each (a
/// bomb: about 1 KiB per MiB).
std::vector<uint8_t> gzip_bomb(int mib) {
  std::string chunk(size_t(1) << 20, ' ');
  chunk[0] = '[';
  auto first = gzip_compress(chunk.data(), chunk.size(), 12);
  chunk[0] = ' ';
  auto rest = gzip_compress(chunk.data(), chunk.size(), 12);
  std::vector<uint8_t> out(first);
  for (int i = 1; i < mib; ++i) out.insert(out.end(), rest.begin(), rest.end());
  return out;
}

/// dir/bomb.tar holding one member bomb_00000000.json.gz, and its manifest.
std::string bomb_shard(const std::string& dir, const std::vector<uint8_t>& gz) {
  TarWriter w(dir + "/bomb.tar");
  w.add("bomb_00000000.json.gz", gz.data(), gz.size());
  w.finish();
  ManifestEntry e;
  e.shard = "bomb";
  e.num_sequences = 1;
  write_manifest(dir + "/manifest.jsonl", {e});
  return dir + "/manifest.jsonl";
}

}  // namespace

// ---- A.7: sizes from untrusted configs --------------------------------------------------------

TEST(ModelSize, HfConfigTooLargeIsRefusedBeforeAllocatingNamingConfigJson) {
  auto dir = temp_dir("hf_huge");
  run("mkdir -p '" + dir + "/hf'");
  write_file(dir + "/hf/config.json",
             R"({"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 100000000,
                 "num_attention_heads": 4, "vocab_size": 256, "intermediate_size": 128})");
  for (const std::string args : {"import-hf '" + dir + "/hf' '" + dir + "/out'",
                                 "export-hf '" + dir + "/hf' '" + dir + "/exp' --format llama",
                                 "generate '" + dir + "/hf' --prompt hi"}) {
    SCOPED_TRACE(args);
    auto r = run_openlm(args);
    EXPECT_EQ(r.rc, 1) << r.out;
    EXPECT_TRUE(has(r.out, dir + "/hf/config.json")) << r.out;
    EXPECT_TRUE(has(r.out, "needs an estimated")) << r.out;
    EXPECT_TRUE(has(r.out, "n_layers 100000000")) << r.out;
    EXPECT_LT(r.max_rss_kb, 1 << 20) << "allocated before refusing";
  }
}

TEST(ModelSize, TrainRefusesAModelThatCannotFitInMemory) {
  auto dir = temp_dir("train_huge");
  auto man = write_synthetic(dir, /*native=*/true, 1, 4, 2049);
  // open_lm_1b needs ~23 GB to train in fp32/AdamW; on an "8 GiB machine" that must be refused.
  auto recipe = tiny_recipe(dir, man, "open_lm_1b");
  auto r = run_openlm("train '" + recipe + "'", "OPENLM_MEMORY_LIMIT=8GiB");
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_TRUE(has(r.out, recipe)) << r.out;
  EXPECT_TRUE(has(r.out, "needs an estimated")) << r.out;
  EXPECT_TRUE(has(r.out, "training")) << r.out;
  EXPECT_TRUE(has(r.out, "OPENLM_MEMORY_LIMIT")) << r.out;
  EXPECT_LT(r.max_rss_kb, 2 << 20) << "allocated before refusing";
  // Async checkpoints on CPU keep a copy of the weights and moments (12 bytes a parameter in
  // fp32/AdamW): the estimate grows by that much and says why.
  auto ra = run_openlm("train '" + recipe + "' --set checkpoint.async=true --set checkpoint.every_steps=10",
                       "OPENLM_MEMORY_LIMIT=8GiB");
  EXPECT_EQ(ra.rc, 1) << ra.out;
  EXPECT_TRUE(has(ra.out, "async checkpoints' copy")) << ra.out;
  auto gib = [](const std::string& out) {
    const auto at = out.find("needs an estimated ");
    return at == std::string::npos ? 0.0 : std::stod(out.substr(at + 19));
  };
  EXPECT_GT(gib(ra.out) - gib(r.out), 12.0) << r.out << ra.out;  // ~1.4e9 parameters x 12 bytes
  // an absurd layer count, whatever the machine
  auto r2 = run_openlm("train '" + tiny_recipe(dir, man, "{name: open_lm_test_tiny, n_layers: 100000000}") + "'");
  EXPECT_EQ(r2.rc, 1) << r2.out;
  EXPECT_TRUE(has(r2.out, recipe)) << r2.out;
  EXPECT_TRUE(has(r2.out, "n_layers")) << r2.out;
}

TEST(ModelSize, ModelInfoValidatesOptionsAndRefusesOverflowingSizes) {
  struct Case {
    std::string args, expect;
  };
  for (const Case& c : {Case{"open_lm_1b --world-size 0", "--world-size: must be >= 1"},
                        Case{"open_lm_1b --micro-batch -1", "--micro-batch: must be >= 1"},
                        Case{"open_lm_1b --shard-group-size -2", "--shard-group-size: must be >= 0"},
                        Case{"open_lm_1b --strategy ddp", "--strategy: must be"},
                        Case{"open_lm_1b --set dim=1000000000", "key 'dim': the parameter count"},
                        Case{"open_lm_1b --set n_layers=100000000000", "key 'n_layers'"}}) {
    SCOPED_TRACE(c.args);
    auto r = run_openlm("model-info " + c.args + " --json");
    EXPECT_EQ(r.rc, 1) << r.out;
    EXPECT_TRUE(has(r.out, c.expect)) << r.out;
    EXPECT_FALSE(has(r.out, "inf")) << r.out;
    EXPECT_FALSE(has(r.out, "\"params_total\":-")) << r.out;
  }
  auto ok = run_openlm("model-info open_lm_1b --json");
  ASSERT_EQ(ok.rc, 0) << ok.out;
  EXPECT_TRUE(has(ok.out, "\"params_total\":1439895552")) << ok.out;
}

// ---- A.8: gzip bombs in tar shards ------------------------------------------------------------

TEST(GzipBomb, StoredBombIsRefusedWithoutInflatingIt) {
  // 400 MiB of inflated text in ~400 KiB; two workers would inflate it once each.
  auto dir = temp_dir("bomb_big");
  auto man = bomb_shard(dir, gzip_bomb(400));
  auto recipe = tiny_recipe(dir, man, kTinyModel, "  num_workers: 2\n");
  auto r = run_openlm("train '" + recipe + "'");
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_TRUE(has(r.out, dir + "/bomb.tar")) << r.out;
  EXPECT_TRUE(has(r.out, "bomb_00000000.json.gz")) << r.out;
  EXPECT_TRUE(has(r.out, "limit")) << r.out;
  // Baseline: the same run on a small bomb whose inflation stops at ~64 KiB. The process's own
  // footprint differs by LibTorch build (a CUDA LibTorch maps ~450 MB more), the bomb's does not.
  auto small_dir = temp_dir("bomb_baseline");
  auto base = run_openlm("train '" + tiny_recipe(small_dir, bomb_shard(small_dir, gzip_bomb(60)), kTinyModel,
                                                 "  num_workers: 2\n") + "'");
  EXPECT_EQ(base.rc, 1) << base.out;
  EXPECT_LT(r.max_rss_kb, base.max_rss_kb + 150 * 1024)
      << "peak RSS " << r.max_rss_kb << " KiB vs " << base.max_rss_kb << " KiB without the bomb: it was inflated";
}

TEST(GzipBomb, InflationStopsAtTheBoundForSeqLen) {
  // Small enough when stored (~60 KiB) to pass the stored-size bound, 60 MiB when inflated: inflation
  // must stop at (seq_len + 1) * 24 + 64 KiB = 65944 bytes for seq_len 16.
  auto dir = temp_dir("bomb_small");
  auto gz = gzip_bomb(60);
  ASSERT_LT(gz.size(), 65944u);
  auto man = bomb_shard(dir, gz);
  auto recipe = tiny_recipe(dir, man, kTinyModel, "  num_workers: 2\n");
  auto r = run_openlm("train '" + recipe + "'");
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_TRUE(has(r.out, dir + "/bomb.tar")) << r.out;
  EXPECT_TRUE(has(r.out, "bomb_00000000.json.gz")) << r.out;
  EXPECT_TRUE(has(r.out, "inflates to more than 65944 bytes")) << r.out;
}

// ---- A.9: weights, config lookup, options, recipes --------------------------------------------

TEST(ImportHf, RefusesNanInfAndIntegerWeightsByName) {
  auto dir = temp_dir("hf_bad_weights");
  write_llama_dir(dir + "/good");
  auto good = run_openlm("import-hf '" + dir + "/good' '" + dir + "/good_out'");
  ASSERT_EQ(good.rc, 0) << good.out;

  write_llama_dir(dir + "/nan", [](std::vector<RawTensor>& ts) {
    ts[3].values[5] = std::nanf("");
    ts[4].values[0] = INFINITY;
  });
  auto r = run_openlm("import-hf '" + dir + "/nan' '" + dir + "/nan_out'");
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_TRUE(has(r.out, "NaN or Inf")) << r.out;
  EXPECT_TRUE(has(r.out, "attention.in_proj.weight")) << r.out;

  write_llama_dir(dir + "/int", [](std::vector<RawTensor>& ts) { ts[7].dtype = "I32"; });
  auto r2 = run_openlm("import-hf '" + dir + "/int' '" + dir + "/int_out'");
  EXPECT_EQ(r2.rc, 1) << r2.out;
  EXPECT_TRUE(has(r2.out, "model.layers.0.mlp.gate_proj.weight")) << r2.out;
  EXPECT_TRUE(has(r2.out, "floating point")) << r2.out;
}

TEST(ImportHf, DirectoryWithoutConfigJsonDoesNotUseItsParents) {
  auto dir = temp_dir("hf_no_config");
  write_llama_dir(dir + "/hf");
  auto r0 = run_openlm("import-hf '" + dir + "/hf' '" + dir + "/native'");
  ASSERT_EQ(r0.rc, 0) << r0.out;
  // native/sub holds weights but no config.json; native/config.json belongs to another directory
  run("mkdir -p '" + dir + "/native/sub' && cp '" + dir + "/native/model.safetensors' '" + dir + "/native/sub/'");
  for (const std::string args : {"import-hf '" + dir + "/native/sub' '" + dir + "/out'",
                                 "generate '" + dir + "/native/sub' --prompt hi --tokenizer /nonexistent"}) {
    SCOPED_TRACE(args);
    auto r = run_openlm(args);
    EXPECT_EQ(r.rc, 1) << r.out;
    EXPECT_TRUE(has(r.out, dir + "/native/sub/config.json")) << r.out;
    EXPECT_TRUE(has(r.out, "no config.json")) << r.out;
  }
}

TEST(Generate, OptionsOutOfRangeAreRefusedNamingTheOption) {
  struct Case {
    std::string args, expect;
  };
  for (const Case& c : {Case{"--temperature -1", "--temperature: must be"}, Case{"--temperature nan", "--temperature: must be"},
                        Case{"--top-p 2", "--top-p: must be in (0, 1]"}, Case{"--top-p nan", "--top-p: must be"},
                        Case{"--top-k -5", "--top-k: must be >= 0"}, Case{"--max-new-tokens -1", "--max-new-tokens"}}) {
    SCOPED_TRACE(c.args);
    auto r = run_openlm("generate /nonexistent-run --prompt hi " + c.args);
    EXPECT_EQ(r.rc, 1) << r.out;
    EXPECT_TRUE(has(r.out, c.expect)) << r.out;
    EXPECT_FALSE(has(r.out, "Exception raised from")) << r.out;  // no c10 backtrace
  }
}

TEST(Recipes, DirectoryZeroValuesAndSetOverridesAreReportedPrecisely) {
  auto dir = temp_dir("recipe_errors");
  const std::string recipes = std::string(OPENLM_SOURCE_DIR) + "/recipes";
  auto r = run_openlm("train '" + recipes + "'");
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_TRUE(has(r.out, recipes + ": is a directory")) << r.out;
  EXPECT_FALSE(has(r.out, "basic_filebuf")) << r.out;

  auto man = write_synthetic(dir, /*native=*/true, 1, 4, 17);
  // a value that is present is not "missing"
  write_file(dir + "/zero.yaml", "model: {name: tiny, dim: 0, n_layers: 1, n_heads: 2, seq_len: 16, vocab_size: 64}\n"
                                 "data: {manifests: ['" + man + "']}\nbatch: {global_batch_size: 2, micro_batch_size: 2}\n"
                                 "max_steps: 1\nrun_dir: " + dir + "/run\n");
  auto z = run_openlm("train '" + dir + "/zero.yaml'");
  EXPECT_EQ(z.rc, 1) << z.out;
  EXPECT_TRUE(has(z.out, "key 'model.dim': must be > 0 (got 0)")) << z.out;
  EXPECT_FALSE(has(z.out, "missing")) << z.out;
  // a bad value inside a --set mapping names the --set, not the recipe file
  auto recipe = tiny_recipe(dir, man, kTinyModel);
  auto s = run_openlm("train '" + recipe + "' --set 'model={name: tiny, dim: 0, n_layers: 1, n_heads: 2, vocab_size: 64}'");
  EXPECT_EQ(s.rc, 1) << s.out;
  EXPECT_TRUE(has(s.out, "--set model")) << s.out;
  EXPECT_FALSE(has(s.out, recipe)) << s.out;
  auto m = run_openlm("train '" + recipe + "' --set 'data.manifests=[{path: x, weight: -1}]'");
  EXPECT_EQ(m.rc, 1) << m.out;
  EXPECT_TRUE(has(m.out, "--set data.manifests")) << m.out;
  EXPECT_FALSE(has(m.out, recipe)) << m.out;
}
