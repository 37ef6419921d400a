// Issue 12 part 3, end to end through the `openlm` binary: a DCLM-style pipeline. prepare-data
// writes OpenLM tar shards (with a GPT-NeoX-layout tokenizer.json), `openlm data stats` reads them,
// a tiny model trains a few steps on them and `openlm generate` samples from the run.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>

namespace {

const std::string kNeox = std::string(OPENLM_SOURCE_DIR) + "/tests/tokenizer/data/neox_tiny_tokenizer.json";

std::string slurp(const std::string& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

/// `openlm ARGS` under OMP_NUM_THREADS=1; returns the exit status, stdout in `out`, stderr in `err`.
int openlm(const std::string& dir, const std::string& args, std::string* out, std::string* err = nullptr) {
  const std::string cmd = "OMP_NUM_THREADS=1 timeout 300 " + std::string(OPENLM_CLI) + " " + args + " >" + dir +
                          "/stdout 2>" + dir + "/stderr";
  const int st = std::system(cmd.c_str());
  *out = slurp(dir + "/stdout");
  if (err) *err = slurp(dir + "/stderr");
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

nlohmann::json last_json_line(const std::string& s) {
  std::istringstream in(s);
  std::string line, last;
  while (std::getline(in, line))
    if (!line.empty() && line[0] == '{') last = line;
  return last.empty() ? nlohmann::json() : nlohmann::json::parse(last);
}

}  // namespace

TEST(PrepareDataTrain, OpenLMTarShardsFromPrepareDataTrainAndGenerate) {
  char tmpl[] = "/tmp/openlm_prep_train_XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  {  // a JSONL corpus in DCLM's layout: {"text": ..., "url": ...} per line
    std::ofstream f(dir + "/corpus.jsonl");
    const char* lex[] = {"the", "model", "reads", "tokens", "from", "shards", "and", "ranks", "share", "batches"};
    std::mt19937 rng(3);
    for (int d = 0; d < 300; ++d) {
      std::string t;
      for (int w = 0, n = 5 + static_cast<int>(rng() % 30); w < n; ++w) t += std::string(w ? " " : "") + lex[rng() % 10];
      f << nlohmann::json{{"text", t + "."}, {"url", "doc" + std::to_string(d)}}.dump() << "\n";
    }
  }
  std::string out, err;
  ASSERT_EQ(openlm(dir, "prepare-data --input " + dir + "/corpus.jsonl --tokenizer " + kNeox + " --output " + dir +
                            "/shards --format openlm-tar --seq-len 32 --seed 17 --threads 2 --shard-sequences 64",
                   &out, &err),
            0)
      << out << err;
  auto prep = last_json_line(out);
  ASSERT_TRUE(prep.is_object()) << out;
  EXPECT_EQ(prep["documents"], 300);
  EXPECT_EQ(prep["eot_id"], 0);  // <|endoftext|> joins the documents

  ASSERT_EQ(openlm(dir, "data stats " + dir + "/shards/manifest.jsonl --json", &out, &err), 0) << out << err;
  auto st = last_json_line(out);
  EXPECT_EQ(st["format"], "openlm-tar");
  EXPECT_EQ(st["seq_len"], 33);
  EXPECT_EQ(st["num_sequences"], prep["sequences"]);

  const std::string recipe = dir + "/recipe.yaml";
  std::ofstream(recipe) << "model: {name: open_lm_test_tiny, seq_len: 32, vocab_size: 512}\n"
                        << "tokenizer: {path: '" << kNeox << "'}\n"
                        << "data: {manifests: [{path: '" << dir << "/shards/manifest.jsonl'}], num_workers: 1}\n"
                        << "batch: {global_batch_size: 4, micro_batch_size: 4}\n"
                        << "optim: {lr: 1.0e-2}\nschedule: {warmup: 1}\nlogging: {tensorboard: false}\n"
                        << "generate: {prompt: 'the model', max_new_tokens: 8, temperature: 1.0, top_k: 0}\n"
                        << "run_dir: '" << dir << "/run'\n";
  ASSERT_EQ(openlm(dir, "train " + recipe + " --set max_steps=3", &out, &err), 0) << out << err;
  std::istringstream metrics(slurp(dir + "/run/metrics.jsonl"));
  std::string line;
  int steps = 0;
  while (std::getline(metrics, line)) {
    auto m = nlohmann::json::parse(line);
    if (!m.contains("loss")) continue;
    ++steps;
    EXPECT_TRUE(std::isfinite(m["loss"].get<double>())) << line;
  }
  EXPECT_EQ(steps, 3);

  ASSERT_EQ(openlm(dir, "generate " + dir + "/run --prompt 'the model' --max-new-tokens 8 --seed 1", &out, &err), 0)
      << out << err;
  EXPECT_NE(out.find("the model"), std::string::npos) << out;
  std::system(("rm -rf '" + dir + "'").c_str());
}
