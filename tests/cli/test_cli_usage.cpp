// Issue 13 B.6 and B.9 through the `openlm` binary: `model-info` reads a train recipe's precision,
// strategy and micro-batch (options override them) and takes `--set` keys spelled as `train` does;
// `--version` prints one line, every `--help` shows defaults, an unknown command is named.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

namespace {

struct Result {
  int rc = -1;
  std::string out, err;
};

std::string slurp(const std::string& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string temp_dir() {
  char tmpl[] = "/tmp/openlm_cli_usage_XXXXXX";
  return ::mkdtemp(tmpl);
}

/// `openlm ARGS`, stdout and stderr apart.
Result run(const std::string& args) {
  const std::string dir = temp_dir();
  const std::string cmd = std::string(OPENLM_CLI) + " " + args + " >" + dir + "/out 2>" + dir + "/err";
  const int st = std::system(cmd.c_str());
  Result r;
  r.rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  r.out = slurp(dir + "/out");
  r.err = slurp(dir + "/err");
  std::system(("rm -rf '" + dir + "'").c_str());
  return r;
}

bool has(const std::string& s, const std::string& what) { return s.find(what) != std::string::npos; }

/// An fp32, no_shard train recipe with micro-batch 4 and a small inline model (removed at exit).
std::string fp32_recipe() {
  static struct Dir {
    std::string path = temp_dir();
    ~Dir() { std::system(("rm -rf '" + path + "'").c_str()); }
  } dir;
  static const std::string path = [] {
    const std::string p = dir.path + "/fp32.yaml";
    std::ofstream(p) << "model: {name: small, dim: 128, n_layers: 2, n_heads: 4, seq_len: 64, vocab_size: 512}\n"
                     << "data: {default_corpus: true}\n"
                     << "batch: {global_batch_size: 8, micro_batch_size: 4}\n"
                     << "parallel: {strategy: no_shard}\nprecision: fp32\nmax_steps: 1\n";
    return p;
  }();
  return path;
}

nlohmann::json info(const std::string& args) {
  Result r = run("model-info " + args + " --json");
  EXPECT_EQ(r.rc, 0) << r.out << r.err;
  return r.rc == 0 ? nlohmann::json::parse(r.out) : nlohmann::json::object();
}

}  // namespace

// ---- B.6: model-info and train speak the same language -----------------------------------------

TEST(ModelInfo, UsesTheRecipesPrecisionStrategyAndMicroBatch) {
  auto j = info(fp32_recipe());
  EXPECT_EQ(j["memory"]["precision"], "fp32") << j.dump();
  EXPECT_EQ(j["memory"]["strategy"], "no_shard") << j.dump();
  EXPECT_EQ(j["memory"]["micro_batch"], 4) << j.dump();
  EXPECT_EQ(j["memory"]["grad_checkpointing"], false) << j.dump();
  Result text = run("model-info " + fp32_recipe());
  EXPECT_TRUE(has(text.out, "no_shard, fp32, micro-batch 4")) << text.out << text.err;

  // Options override the recipe.
  auto o = info(fp32_recipe() + " --precision amp_bfloat16 --strategy full_shard --micro-batch 2 --world-size 2");
  EXPECT_EQ(o["memory"]["precision"], "amp_bfloat16") << o.dump();
  EXPECT_EQ(o["memory"]["strategy"], "full_shard") << o.dump();
  EXPECT_EQ(o["memory"]["micro_batch"], 2) << o.dump();
}

TEST(ModelInfo, SetTakesTrainsKeys) {
  auto base = info(fp32_recipe());
  auto j = info(fp32_recipe() + " --set model.dim=64 --set precision=pure_bf16 --set batch.micro_batch_size=2");
  EXPECT_EQ(j["memory"]["precision"], "pure_bf16") << j.dump();
  EXPECT_EQ(j["memory"]["micro_batch"], 2) << j.dump();
  EXPECT_LT(j["params_total"].get<int64_t>(), base["params_total"].get<int64_t>()) << j.dump();

  // A model name takes the same spelling (model.* and the training keys).
  auto n = info("open_lm_1b --set model.dim=64 --set precision=fp32 --set parallel.strategy=no_shard");
  EXPECT_EQ(n["memory"]["precision"], "fp32") << n.dump();
  EXPECT_EQ(n["memory"]["strategy"], "no_shard") << n.dump();
  EXPECT_EQ(n["head_dim"], 4) << n.dump();  // 64 / 16 heads
  // ... and the older bare model keys still work.
  auto old = info("open_lm_1b --set dim=64");
  EXPECT_EQ(old["params_total"], n["params_total"]) << old.dump();

  Result bad = run("model-info " + fp32_recipe() + " --set optim.nope=1");
  EXPECT_EQ(bad.rc, 1) << bad.out << bad.err;
  EXPECT_TRUE(has(bad.err, "optim.nope")) << bad.err;
}

// ---- B.9: --version, defaults in --help, unknown commands --------------------------------------

TEST(Cli, VersionIsOneLine) {
  Result r = run("--version");
  ASSERT_EQ(r.rc, 0) << r.out << r.err;
  ASSERT_FALSE(r.out.empty());
  EXPECT_EQ(r.out.find('\n'), r.out.size() - 1) << r.out;  // exactly one line
  EXPECT_TRUE(has(r.out, "openlm ")) << r.out;
  EXPECT_TRUE(has(r.out, "commit ")) << r.out;
  EXPECT_TRUE(has(r.out, "LibTorch ")) << r.out;
  EXPECT_TRUE(has(r.out, "CUDA ")) << r.out;
  EXPECT_TRUE(has(r.out, "NCCL ")) << r.out;
}

TEST(Cli, HelpShowsDefaults) {
  struct Case {
    std::string args, expect;
  };
  for (const Case& c : {Case{"generate --help", "--temperature FLOAT=0.8"},
                        Case{"generate --help", "--max-new-tokens INT=48"}, Case{"generate --help", "generate.top_k"},
                        Case{"train --help", "--max-steps INT=0"}, Case{"model-info --help", "--world-size INT=1"},
                        Case{"export-hf --help", "=openlm"}, Case{"launch --help", "--stop-grace FLOAT=5"},
                        Case{"tokenizer train --help", "--vocab-size INT=4096"}}) {
    Result r = run(c.args);
    EXPECT_EQ(r.rc, 0) << c.args << r.err;
    EXPECT_TRUE(has(r.out, c.expect)) << c.args << ": no '" << c.expect << "' in\n" << r.out;
  }
}

TEST(Cli, UnknownCommandIsNamedAndCommandsListed) {
  Result r = run("foo");
  EXPECT_EQ(r.rc, 2) << r.out << r.err;
  EXPECT_TRUE(has(r.err, "unknown command 'foo'")) << r.err;
  for (const char* cmd : {"train", "model-info", "generate", "eval", "launch", "export-hf", "import-hf", "data", "tokenizer"})
    EXPECT_TRUE(has(r.err, cmd)) << cmd << " missing from\n" << r.err;
  EXPECT_EQ(run("").rc, 2);  // no command: usage error
}
