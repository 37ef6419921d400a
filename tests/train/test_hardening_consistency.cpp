// Issue 13 B.3, B.5, B.8, B.10 through the CLI, as a user runs `openlm`: tokenizer, data and model
// must agree before step 1 (vocab_size from the tokenizer, a smaller explicit vocab_size refused,
// shards made with another tokenizer refused, ids >= vocab_size refused by shard and sequence,
// LibTorch errors as one line); conflicting settings are errors (max_steps with train_num_tokens,
// resuming with another run length, warmup longer than the run names the fixes); `generate` takes
// the run's generate: settings and --seed; `tokenizer decode` with a SentencePiece model; export
// of a DCLM-settings model as llama names the offending keys.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "openlm_cpp/checkpoint/atomic_file.h"
#include "openlm_cpp/core/recipe.h"
#include "openlm_cpp/tokenizer/tokenizer.h"
#include "train_fixtures.h"

namespace stdfs = std::filesystem;
using openlm::testing::read_metrics;
using openlm::testing::temp_dir;

namespace {

using namespace openlm::testing;  // openlm_bin, sh, q, slurp, has, snapshot, temp_dir, ...

const std::string kBin = openlm_bin();

const char* const kWords[] = {"the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "far", "away", "from",
                              "home", "under", "blue", "sky", "while", "birds", "sang", "songs", "of", "old", "times",
                              "river", "stone", "light", "night", "green", "field", "quiet", "morning", "bread"};

/// Text of `docs` documents (blank-line separated) drawn from kWords with seed `seed`.
void write_text(const std::string& path, unsigned seed, int docs) {
  std::mt19937 rng(seed);
  std::ofstream out(path);
  for (int d = 0; d < docs; ++d) {
    for (int s = 0; s < 4; ++s) {
      for (int w = 0; w < 12; ++w) out << (w ? " " : "") << kWords[rng() % (sizeof kWords / sizeof *kWords)];
      out << ".\n";
    }
    out << "\n";
  }
}

/// A tokenizer trained with the CLI, and native shards of seq 16 tokenized with it (`openlm prepare-data`).
struct Corpus {
  std::string tokenizer, manifest;
};

Corpus make_corpus(const std::string& dir, unsigned seed, int vocab) {
  stdfs::create_directories(dir);
  write_text(dir + "/text.txt", seed, 400);
  Result t = sh(q(kBin) + " tokenizer train --input " + q(dir + "/text.txt") + " --model-prefix " + q(dir + "/sp") +
                " --vocab-size " + std::to_string(vocab));
  EXPECT_EQ(t.rc, 0) << t.out;
  Result d = sh(q(kBin) + " prepare-data --input " + q(dir + "/text.txt") + " --tokenizer " + q(dir + "/sp.model") +
                " --format native --seq-len 16 --seed 0 --no-pad --output " + q(dir + "/shards"));
  EXPECT_EQ(d.rc, 0) << d.out;
  return {dir + "/sp.model", dir + "/shards/manifest.jsonl"};
}

const Corpus& corpus_a() {
  static const Corpus c = make_corpus(temp_dir("corpus_a"), 1, 300);
  return c;
}
const Corpus& corpus_b() {
  static const Corpus c = make_corpus(temp_dir("corpus_b"), 2, 320);
  return c;
}

/// A recipe file in `dir`: DCLM model settings (as the demo), no vocab_size unless `model_extra`
/// gives one, the given tokenizer and manifest, and `extra` top-level lines.
std::string write_recipe(const std::string& dir, const std::string& tokenizer, const std::string& manifest,
                         const std::string& model_extra = "", const std::string& extra = "max_steps: 2\n") {
  stdfs::create_directories(dir);
  const std::string p = dir + "/recipe.yaml";
  std::ofstream(p) << "model:\n  name: t\n  dim: 32\n  n_layers: 2\n  n_heads: 4\n  seq_len: 16\n"
                   << "  norm_type: gain_only_lp_layer_norm\n  qk_norm: true\n  ffn_type: swiglu_torch\n"
                   << model_extra << (tokenizer.empty() ? "" : "tokenizer: {path: " + q(tokenizer) + "}\n")
                   << "data: {manifests: [{path: " << q(manifest) << "}], num_workers: 1}\n"
                   << "batch: {global_batch_size: 4, micro_batch_size: 4}\n"
                   << "optim: {lr: 1.0e-2}\nschedule: {warmup: 1}\nlogging: {tensorboard: false}\n"
                   << "generate: {prompt: 'the cat sat', max_new_tokens: 24, temperature: 1.0, top_k: 0}\n"
                   << "run_dir: " << q(dir + "/run") << "\n"
                   << extra;
  return p;
}

nlohmann::json run_config(const std::string& run) { return nlohmann::json::parse(slurp(run + "/config.json")); }

/// One finished 2-step run on corpus A with no vocab_size in its recipe (trained once).
const std::string& base_run() {
  static const std::string run = [] {
    const std::string dir = temp_dir("consistency_base");
    const std::string recipe = write_recipe(dir, corpus_a().tokenizer, corpus_a().manifest);
    Result r = sh(q(kBin) + " train " + q(recipe));
    EXPECT_EQ(r.rc, 0) << r.out;
    return dir + "/run";
  }();
  return run;
}

}  // namespace

// ---- B.3: tokenizer, data and model agree before step 1 -----------------------------------------

TEST(Consistency, VocabSizeNotSetTakesTheTokenizersRoundedUp) {
  const std::string run = base_run();
  ASSERT_TRUE(stdfs::exists(run + "/config.json"));
  // A 300-piece tokenizer: 512 rows (a multiple of 256), not the 50,432 default.
  EXPECT_EQ(run_config(run)["model"]["vocab_size"], 512);
  EXPECT_EQ(read_metrics(run).size(), 2u);
}

TEST(Consistency, ExplicitVocabSizeSmallerThanTokenizerIsRefusedBeforeStep1) {
  const std::string dir = temp_dir("vocab_small");
  const std::string recipe = write_recipe(dir, corpus_a().tokenizer, corpus_a().manifest, "  vocab_size: 128\n");
  Result r = sh(q(kBin) + " train " + q(recipe));
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_TRUE(has(r.out, "model.vocab_size")) << r.out;
  EXPECT_TRUE(has(r.out, "tokenizer.path")) << r.out;
  EXPECT_TRUE(has(r.out, "300")) << r.out;
  EXPECT_FALSE(stdfs::exists(dir + "/run/metrics.jsonl")) << r.out;
}

TEST(Consistency, ShardsMadeWithAnotherTokenizerAreRefusedBeforeStep1) {
  const std::string dir = temp_dir("other_tokenizer");
  const std::string recipe = write_recipe(dir, corpus_b().tokenizer, corpus_a().manifest, "  vocab_size: 512\n");
  Result r = sh(q(kBin) + " train " + q(recipe));
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_TRUE(has(r.out, "shard_00000000.olmtok")) << r.out;
  EXPECT_TRUE(has(r.out, openlm::load_tokenizer("sentencepiece", corpus_a().tokenizer)->id())) << r.out;
  EXPECT_TRUE(has(r.out, openlm::load_tokenizer("sentencepiece", corpus_b().tokenizer)->id())) << r.out;
  EXPECT_FALSE(stdfs::exists(dir + "/run/metrics.jsonl")) << r.out;
  EXPECT_FALSE(has(r.out, "frame #")) << r.out;
}

TEST(Consistency, TokenIdsOutsideTheVocabularyAreRefusedByShardAndSequence) {
  const std::string dir = temp_dir("ids_over_vocab");
  // Counting shards over 64 ids, a model of 32 rows, no tokenizer: ids 32..63 reach the loader.
  const std::string manifest = openlm::testing::write_counting_shards(dir + "/data", 32, 16, 64);
  const std::string recipe = write_recipe(dir, "", manifest, "  vocab_size: 32\n");
  Result r = sh(q(kBin) + " train " + q(recipe));
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_TRUE(has(r.out, "native shard '")) << r.out;
  EXPECT_TRUE(has(r.out, "sequence ")) << r.out;
  EXPECT_TRUE(has(r.out, ">= vocab_size 32")) << r.out;
  EXPECT_FALSE(has(r.out, "frame #")) << r.out;
  EXPECT_TRUE(read_metrics(dir + "/run").empty()) << "a step ran on ids outside the vocabulary";
}

TEST(Consistency, LibTorchErrorsAreOneLineWithoutStackTrace) {
  // A model of 64 rows and a 300-piece tokenizer given to generate: the prompt's ids reach the
  // embedding, which LibTorch refuses (c10::Error). The CLI reports it as one line, status 1.
  const std::string dir = temp_dir("c10_error");
  const std::string manifest = openlm::testing::write_counting_shards(dir + "/data", 32, 16, 64);
  const std::string recipe = write_recipe(dir, "", manifest, "  vocab_size: 64\n");
  ASSERT_EQ(sh(q(kBin) + " train " + q(recipe)).rc, 0);
  Result r = sh(q(kBin) + " generate " + q(dir + "/run") + " --tokenizer " + q(corpus_a().tokenizer) +
                " --prompt 'morning bread quiet field river stone'");
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_FALSE(has(r.out, "frame #")) << r.out;
  EXPECT_FALSE(has(r.out, "Exception raised from")) << r.out;
  EXPECT_TRUE(has(r.out, "LibTorch")) << r.out;
}

// ---- B.5: conflicting settings are errors ---------------------------------------------------------

TEST(Consistency, MaxStepsWithTrainNumTokensIsRefusedNamingBoth) {
  const std::string dir = temp_dir("steps_and_tokens");
  const std::string recipe =
      write_recipe(dir, corpus_a().tokenizer, corpus_a().manifest, "", "max_steps: 2\ntrain_num_tokens: 6800\n");
  Result r = sh(q(kBin) + " train " + q(recipe));
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_TRUE(has(r.out, "max_steps")) << r.out;
  EXPECT_TRUE(has(r.out, "train_num_tokens")) << r.out;
  EXPECT_FALSE(stdfs::exists(dir + "/run/metrics.jsonl"));
  // --max-steps on the command line replaces the recipe's length, whichever key gives it.
  const std::string tokens_only =
      write_recipe(temp_dir("tokens_only"), corpus_a().tokenizer, corpus_a().manifest, "", "train_num_tokens: 6800\n");
  Result ok = sh(q(kBin) + " train " + q(tokens_only) + " --max-steps 1");
  EXPECT_EQ(ok.rc, 0) << ok.out;
}

TEST(Consistency, ResumingWithAnotherRunLengthIsRefusedUnlessAllowed) {
  const std::string dir = temp_dir("resume_length");
  const std::string recipe = write_recipe(dir, corpus_a().tokenizer, corpus_a().manifest, "",
                                          "max_steps: 4\nresume: latest\ncheckpoint: {every_steps: 2}\n");
  const std::string train = q(kBin) + " train " + q(recipe);
  ASSERT_EQ(sh(train + " --stop-at-step 2").rc, 0);
  Result r = sh(train + " --max-steps 6");
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_TRUE(has(r.out, "schedule.allow_change")) << r.out;
  EXPECT_TRUE(has(r.out, "--max-steps 4")) << r.out;
  EXPECT_EQ(read_metrics(dir + "/run").size(), 2u) << "the refused resume trained";
  // The same length resumes; allowing the change resumes with the new length and says so.
  Result ok = sh(train + " --max-steps 6 --set schedule.allow_change=true");
  EXPECT_EQ(ok.rc, 0) << ok.out;
  EXPECT_TRUE(has(ok.out, "spans 6 steps instead of the checkpoint's 4")) << ok.out;
  EXPECT_EQ(read_metrics(dir + "/run").size(), 6u);
}

TEST(Consistency, WarmupLongerThanTheRunNamesTheFixes) {
  const std::string dir = temp_dir("warmup_long");
  const std::string recipe = write_recipe(dir, corpus_a().tokenizer, corpus_a().manifest);
  Result r = sh(q(kBin) + " train " + q(recipe) + " --set schedule.warmup=10");
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_TRUE(has(r.out, "schedule.warmup")) << r.out;
  EXPECT_TRUE(has(r.out, "lower schedule.warmup")) << r.out;
  EXPECT_TRUE(has(r.out, "raise max_steps")) << r.out;
}

// ---- B.8: generate takes the run's generate: settings; --seed; tokenizer decode -------------------

TEST(Consistency, GenerateUsesTheRunsGenerateSettingsAndSeed) {
  const std::string run = base_run();
  auto gen = [&](const std::string& args) {
    std::string out;
    Result r = sh(q(kBin) + " generate " + q(run) + " --json " + args, 120, &out);
    EXPECT_EQ(r.rc, 0) << r.out;
    auto lines = out.empty() ? std::string("{}") : out.substr(out.rfind('{'));
    return nlohmann::json::parse(lines, nullptr, false);
  };
  // No --prompt: the recipe's generate.prompt; no --max-new-tokens: its 24 (not the old 64).
  nlohmann::json a = gen("--seed 1");
  ASSERT_TRUE(a.is_object() && a.contains("ids")) << a;
  auto tok = openlm::load_tokenizer("sentencepiece", corpus_a().tokenizer);
  const auto prompt = tok->encode("the cat sat");
  EXPECT_EQ(a["prompt_ids"].size(), prompt.size());
  EXPECT_LE(a["ids"].size(), 24u);
  EXPECT_GE(a["ids"].size(), 12u);  // eos (1 in 512 at temperature 1) does not stop it this early
  // Temperature 1 (the recipe's): another seed, another sample; the same seed, the same one.
  nlohmann::json b = gen("--seed 2"), a2 = gen("--seed 1");
  EXPECT_NE(a["ids"], b["ids"]);
  EXPECT_EQ(a["ids"], a2["ids"]);
  // An option given replaces the recipe's setting.
  nlohmann::json c = gen("--seed 1 --max-new-tokens 3 --prompt 'a dog ran'");
  EXPECT_LE(c["ids"].size(), 3u);
  EXPECT_EQ(c["prompt_ids"].size(), tok->encode("a dog ran").size());
}

TEST(Consistency, TokenizerDecodeWithSentencePieceModel) {
  std::string ids;
  Result e = sh("printf 'the cat sat on a mat' | " + q(kBin) + " tokenizer encode --tokenizer " +
                    q(corpus_a().tokenizer),
                60, &ids);
  ASSERT_EQ(e.rc, 0) << e.out;
  std::string text;
  Result d = sh("printf '%s' " + q(ids) + " | " + q(kBin) + " tokenizer decode --tokenizer " + q(corpus_a().tokenizer),
                60, &text);
  EXPECT_EQ(d.rc, 0) << d.out;
  EXPECT_TRUE(has(text, "the cat sat on a mat")) << text;
}

// ---- B.10: a DCLM-settings model is not a Llama ---------------------------------------------------

TEST(Consistency, ExportAsLlamaOfDclmSettingsNamesTheKeysAndTheDocs) {
  const std::string run = base_run();
  const std::string out = temp_dir("export_llama") + "/hf";
  Result r = sh(q(kBin) + " export-hf " + q(run) + " " + q(out) + " --format llama");
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_TRUE(has(r.out, "model.norm_type is gain_only_lp_layer_norm")) << r.out;
  EXPECT_TRUE(has(r.out, "norm_type: rms_norm")) << r.out;
  EXPECT_TRUE(has(r.out, "model.qk_norm")) << r.out;
  EXPECT_TRUE(has(r.out, "docs/HF_FORMAT.md")) << r.out;
  EXPECT_FALSE(stdfs::exists(out));
  // The openlm format takes it.
  Result ok = sh(q(kBin) + " export-hf " + q(run) + " " + q(out) + " --format openlm");
  EXPECT_EQ(ok.rc, 0) << ok.out;
}
