// A trained run with a SentencePiece tokenizer, exported to Hugging Face llama format: eval and
// generation from the HF directory and from its import-hf output equal the run's own, the
// tokenizer travels along, and `init_from: <hf dir>` starts training from exactly those weights.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "../train/train_fixtures.h"
#include "openlm_cpp/checkpoint/atomic_file.h"
#include "openlm_cpp/checkpoint/hf_export.h"
#include "openlm_cpp/checkpoint/hf_import.h"
#include "openlm_cpp/core/error.h"
#include "openlm_cpp/core/recipe.h"
#include "openlm_cpp/tokenizer/tokenizer.h"
#include "openlm_cpp/train/generate.h"
#include "openlm_cpp/train/inference.h"
#include "openlm_cpp/train/trainer.h"

using namespace openlm;
using namespace openlm::checkpoint;
namespace stdfs = std::filesystem;

namespace {

std::string word_salad(uint32_t seed, int words) {
  static const char* lex[] = {"the",   "model", "reads",   "tokens",  "from",  "shards", "while", "ranks",     "share",
                              "batch", "fast",  "and",     "resume",  "exact", "after",  "a",     "checkpoint"};
  std::mt19937 rng(seed);
  std::string s;
  for (int i = 0; i < words; ++i) {
    s += lex[rng() % (sizeof lex / sizeof *lex)];
    s += (i % 13 == 12) ? ".\n" : " ";
  }
  return s;
}

std::vector<int64_t> greedy(LoadedModel& m, const std::string& prompt) {
  auto ids32 = m.tokenizer->encode(prompt);
  SampleOptions o;
  o.max_new_tokens = 8;
  o.temperature = 0;
  return generate(*m.model, std::vector<int64_t>(ids32.begin(), ids32.end()), o);
}

}  // namespace

TEST(HfInference, ExportedRunEvaluatesGeneratesAndInitialisesTraining) {
  const std::string root = openlm::testing::temp_dir("hf_inference");
  std::ofstream(root + "/text.txt") << word_salad(1, 20000);
  train_sentencepiece(root + "/text.txt", root + "/sp", 300);
  const std::string manifest = openlm::testing::write_counting_shards(root + "/data", 64, 16, 300);
  TrainConfig cfg = openlm::testing::tiny_recipe(manifest, root + "/run", 4);
  cfg.model.vocab_size = 300;
  cfg.model.norm_type = "rms_norm";  // Llama-representable, with GQA
  cfg.model.n_kv_heads = 2;
  cfg.tokenizer.path = root + "/sp.model";
  TrainOptions quiet;
  quiet.quiet = true;
  run_training(cfg, quiet);

  auto tok = load_tokenizer("sentencepiece", cfg.tokenizer.path);
  ExportOptions o;
  o.format = hf::Format::Llama;
  o.bos_id = tok->bos_id();
  o.eos_id = tok->eos_id();
  auto r = export_hf(root + "/run", root + "/hf", o);
  EXPECT_TRUE(stdfs::exists(root + "/hf/tokenizer.model"));
  EXPECT_TRUE(stdfs::exists(root + "/hf/tokenizer_config.json"));
  EXPECT_EQ(fs::read_file(root + "/hf/tokenizer.model"), fs::read_file(root + "/sp.model"));
  auto gen = nlohmann::json::parse(fs::read_file(root + "/hf/generation_config.json"));
  EXPECT_EQ(gen["eos_token_id"], tok->eos_id());

  // a checkpoint directory (metadata.json {"config": ...}) exports the same weights
  export_hf(root + "/run/checkpoints/step_4", root + "/hf_ckpt", o);
  EXPECT_EQ(fs::read_file(root + "/hf_ckpt/model.safetensors"), fs::read_file(root + "/hf/model.safetensors"));

  import_to_native(root + "/hf", root + "/native");
  TrainConfig imported = load_train_recipe(root + "/native/config.json");
  EXPECT_EQ(imported.tokenizer.path, stdfs::absolute(root + "/native/tokenizer.model").lexically_normal().string());
  EXPECT_FALSE(imported.data.default_corpus);

  auto run = load_for_inference(root + "/run");
  auto hfm = load_for_inference(root + "/hf");
  auto nat = load_for_inference(root + "/native");
  ASSERT_TRUE(hfm.tokenizer && nat.tokenizer);
  std::vector<std::vector<int64_t>> seqs = {{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, {40, 41, 42, 43, 44, 45}};
  const double loss = evaluate_sequences(*run.model, seqs).loss;
  EXPECT_EQ(evaluate_sequences(*hfm.model, seqs).loss, loss);
  EXPECT_EQ(evaluate_sequences(*nat.model, seqs).loss, loss);
  run.tokenizer = load_tokenizer("sentencepiece", cfg.tokenizer.path);
  auto g = greedy(run, "the model reads");
  EXPECT_EQ(greedy(hfm, "the model reads"), g);
  EXPECT_EQ(greedy(nat, "the model reads"), g);

  // init_from: <hf dir> loads exactly the exported weights (a vanishing LR keeps them)
  TrainConfig fine = cfg;
  fine.run_dir = root + "/fine";
  fine.init_from = root + "/hf";
  fine.max_steps = 1;
  fine.schedule.warmup = 0;
  fine.optim.lr = 1e-30;
  auto res = run_training(fine, quiet);
  TensorMap before = load_safetensors(root + "/run/model.safetensors");
  TensorMap after = load_safetensors(res.weights_path);
  for (auto& [n, t] : before) EXPECT_LT((after.at(n) - t).abs().max().item<double>(), 1e-6) << n;

  // ...and refuses an HF model whose architecture differs from the recipe's
  TrainConfig wrong = fine;
  wrong.run_dir = root + "/wrong";
  wrong.model.qk_norm = true;
  try {
    run_training(wrong, quiet);
    ADD_FAILURE() << "init_from accepted a different architecture";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("qk_norm"), std::string::npos) << e.what();
  }
}
