// Fine-tuning on instruction data end to end: a tiny SentencePiece tokenizer, a JSONL file whose
// prompts are random word strings and whose responses are all the same sentence. Checks that the
// step-1 loss is the cross entropy over response targets only (computed here independently), that
// training learns the response but not the prompts, that stop + resume gives the uninterrupted
// run's losses, and the recipe rules of data.instructions.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "data_loader/instruction_source.h"
#include "openlm_cpp/checkpoint/tensor_file.h"
#include "openlm_cpp/core/error.h"
#include "openlm_cpp/core/recipe.h"
#include "openlm_cpp/model/transformer.h"
#include "openlm_cpp/tokenizer/tokenizer.h"
#include "openlm_cpp/train/trainer.h"
#include "train_fixtures.h"

namespace fs = std::filesystem;
using namespace openlm;
using namespace openlm::testing;

namespace {

const char* kLex[] = {"the", "model", "reads", "tokens", "from", "shards", "while", "ranks", "share",
                      "batches", "quickly", "and", "green", "river", "stone", "paper", "window"};
constexpr int kLexSize = sizeof kLex / sizeof *kLex;
const char* kResponse = "resume after a checkpoint";

std::string words(std::mt19937& rng, int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s += std::string(i ? " " : "") + kLex[rng() % kLexSize];
  return s;
}

struct Assets {
  std::string dir, tokenizer, recipe_dir;
};

/// Tokenizer (vocab 448; the model has 512 rows) and sft.jsonl: 20 records, random 5-9 word prompts, one fixed response.
const Assets& assets() {
  static Assets a = [] {
    Assets x;
    x.dir = temp_dir("sft_assets");
    std::mt19937 rng(3);
    {
      std::ofstream text(x.dir + "/text.txt");
      for (int i = 0; i < 3000; ++i) text << words(rng, 12) << (i % 7 == 0 ? std::string(" ") + kResponse : "") << ".\n";
    }
    train_sentencepiece(x.dir + "/text.txt", x.dir + "/sp", 448);
    x.tokenizer = x.dir + "/sp.model";
    std::ofstream out(x.dir + "/sft.jsonl");
    for (int i = 0; i < 20; ++i)
      out << nlohmann::json{{"instruction", words(rng, 5 + static_cast<int>(rng() % 5))}, {"output", kResponse}}.dump()
          << "\n";
    return x;
  }();
  return a;
}

/// A recipe file next to sft.jsonl naming it by a relative path.
TrainConfig sft_recipe(const std::string& run_dir, int64_t steps, const std::string& extra = "") {
  const Assets& a = assets();
  std::string p = a.dir + "/sft.yaml";
  std::ofstream(p) << "model:\n  name: t\n  dim: 32\n  n_layers: 2\n  n_heads: 4\n  seq_len: 32\n  vocab_size: 512\n"
                   << "tokenizer: {path: " << a.tokenizer << "}\n"
                   << "data: {instructions: sft.jsonl, prompt_field: instruction, response_field: output}\n"
                   << "batch: {global_batch_size: 8, micro_batch_size: 4}\n"
                   << "optim: {lr: 1.0e-2}\nschedule: {warmup: 2}\n"
                   << "max_steps: " << steps << "\nrun_dir: " << run_dir << "\nlogging: {tensorboard: false}\n"
                   << extra;
  return load_train_recipe(p);
}


TrainOptions quiet(int64_t stop_at = 0) {
  TrainOptions o;
  o.quiet = true;
  o.stop_at_step = stop_at;
  return o;
}

/// Mean next-token cross entropy of `model` on a micro-batch: over the targets whose mask is set
/// (masked = true), or over all targets. Written out here rather than through lm_loss.
double cross_entropy(Transformer& model, const at::Tensor& tokens, const at::Tensor& mask, bool masked) {
  at::NoGradGuard ng;
  at::Tensor logits = model.forward(tokens.slice(1, 0, -1)).to(at::kDouble);
  at::Tensor targets = tokens.slice(1, 1);
  at::Tensor nll = -logits.log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1);
  at::Tensor keep = masked ? mask.slice(1, 1).to(at::kDouble) : at::ones_like(nll);
  return ((nll * keep).sum() / keep.sum()).item<double>();
}

/// The first global batch of the run `cfg` as the trainer sees it (same options and seed).
std::vector<std::pair<at::Tensor, at::Tensor>> first_micro_batches(const TrainConfig& cfg) {
  auto tok = load_tokenizer("sentencepiece", assets().tokenizer);
  data::LoaderOptions lo;
  lo.cfg = cfg.data;
  lo.cfg.instructions = assets().dir + "/sft.jsonl";
  lo.seq_len = cfg.model.seq_len;
  lo.vocab_size = cfg.model.vocab_size;
  lo.global_batch_size = cfg.batch.global_batch_size;
  lo.micro_batch_size = cfg.batch.micro_batch_size;
  lo.seed = cfg.seed;
  auto src = data::make_instruction_source(lo, [&](const std::string& s) { return tok->encode(s); }, tok->eos_id());
  std::vector<std::pair<at::Tensor, at::Tensor>> out;
  for (int64_t i = 0; i < cfg.batch.global_batch_size / cfg.batch.micro_batch_size; ++i) {
    at::Tensor t, m;
    EXPECT_TRUE(src->next(t, m));
    out.emplace_back(t, m);
  }
  return out;
}

}  // namespace

TEST(InstructionTuning, TokenizerAndDataFitTheTest) {
  auto tok = load_tokenizer("sentencepiece", assets().tokenizer);
  ASSERT_GE(tok->eos_id(), 0);
  auto cfg = sft_recipe(temp_dir("sft_probe"), 4);
  auto mb = first_micro_batches(cfg);
  for (auto& [t, m] : mb) {
    // Every sequence holds a prompt (unmasked), the whole response and its eos (masked).
    auto n_resp = static_cast<int64_t>(tok->encode(kResponse).size()) + 1;
    EXPECT_TRUE(at::equal(m.sum(1), at::full({t.size(0)}, n_resp, at::kLong))) << m.sum(1) << " vs " << n_resp;
    EXPECT_TRUE(at::equal(m.slice(1, 0, 1), at::zeros({t.size(0), 1}, at::kBool)));
  }
}

TEST(InstructionTuning, FirstStepLossIsTheMaskedCrossEntropy) {
  std::string run = temp_dir("sft_first");
  auto cfg = sft_recipe(run, 20);
  run_training(cfg, quiet(1));
  auto m = read_metrics(run);
  ASSERT_EQ(m.size(), 1u);
  const double reported = m[0]["loss"].get<double>();

  Transformer model(cfg.model, cfg.seed);  // the trainer's initial weights (same config and seed)
  double masked = 0, unmasked = 0, targets = 0;  // token-weighted over the global batch
  auto mb = first_micro_batches(cfg);
  for (auto& [t, mask] : mb) {
    const double n = mask.slice(1, 1).sum().item<double>();
    masked += cross_entropy(model, t, mask, true) * n;
    targets += n;
    unmasked += cross_entropy(model, t, mask, false) / static_cast<double>(mb.size());
  }
  masked /= targets;
  EXPECT_NEAR(reported, masked, 1e-4);
  // The check can tell the two apart: counting prompt and padding targets gives another value.
  EXPECT_GT(std::fabs(unmasked - masked), 1e-3) << "masked " << masked << " unmasked " << unmasked;

  // The resolved config names the instruction file by an absolute path.
  std::ifstream in(run + "/config.json");
  auto resolved = nlohmann::json::parse(in);
  EXPECT_EQ(resolved["data"]["instructions"], fs::absolute(assets().dir + "/sft.jsonl").lexically_normal().string());
  EXPECT_EQ(resolved["data"]["response_field"], "output");
}

TEST(InstructionTuning, LearnsTheResponseWhilePromptsStayRandom) {
  std::string run = temp_dir("sft_learn");
  auto cfg = sft_recipe(run, 60);
  run_training(cfg, quiet());
  auto m = read_metrics(run);
  ASSERT_EQ(m.size(), 60u);
  double last = 0;
  for (std::size_t i = 55; i < 60; ++i) last += m[i]["loss"].get<double>() / 5.0;
  // Only the fixed response is predicted: it is learnable to near zero.
  EXPECT_LT(last, 0.3) << "first " << m[0]["loss"] << " last " << last;

  Transformer model(cfg.model, 0);
  auto w = checkpoint::load_safetensors(run + "/model.safetensors");
  model.load_named(NamedTensors(w.begin(), w.end()));
  auto mb = first_micro_batches(cfg);
  double masked = cross_entropy(model, mb[0].first, mb[0].second, true);
  double unmasked = cross_entropy(model, mb[0].first, mb[0].second, false);
  EXPECT_LT(masked, 0.3);
  // The prompts were never targets, so the model cannot predict them. (Trained without the mask,
  // this tiny model memorises the 20 prompts and its loss over all targets is as low as the
  // response's: this check is the one that fails then.)
  EXPECT_GT(unmasked, masked + 0.5) << "masked " << masked << " unmasked " << unmasked;
}

TEST(InstructionTuning, StopAndResumeGivesTheSameLosses) {
  std::string full = temp_dir("sft_full"), part = temp_dir("sft_part");
  run_training(sft_recipe(full, 10), quiet());
  auto cfg = sft_recipe(part, 10, "resume: latest\ncheckpoint: {every_steps: 2}\n");
  EXPECT_EQ(run_training(cfg, quiet(5)).steps_done, 5);  // 40 sequences: into the second epoch
  EXPECT_TRUE(fs::exists(part + "/checkpoints/step_5/metadata.json"));
  EXPECT_EQ(run_training(cfg, quiet()).steps_done, 10);
  auto mf = read_metrics(full), mp = read_metrics(part);
  ASSERT_EQ(mf.size(), 10u);
  ASSERT_EQ(mp.size(), 10u);
  for (std::size_t i = 0; i < 10; ++i) {
    EXPECT_EQ(mp[i]["step"], static_cast<int>(i) + 1);
    EXPECT_EQ(mf[i]["loss"], mp[i]["loss"]) << "step " << i + 1;
  }
  auto wf = checkpoint::load_safetensors(full + "/model.safetensors");
  auto wp = checkpoint::load_safetensors(part + "/model.safetensors");
  for (auto& [n, t] : wf) EXPECT_TRUE(torch::equal(t, wp.at(n))) << n;
}

TEST(InstructionTuning, RecipeRules) {
  const Assets& a = assets();
  auto expect_error = [&](const std::string& data, const std::string& tokenizer, const std::string& key) {
    std::string p = a.dir + "/bad.yaml";
    std::ofstream(p) << "model: {name: t, dim: 32, n_layers: 2, n_heads: 4, seq_len: 32, vocab_size: 512}\n"
                     << tokenizer << "data: " << data << "\nbatch: {global_batch_size: 8, micro_batch_size: 4}\n"
                     << "max_steps: 4\n";
    try {
      load_train_recipe(p);
      ADD_FAILURE() << "accepted: " << data;
    } catch (const ConfigError& e) {
      EXPECT_EQ(e.key(), key) << e.what();
      EXPECT_EQ(e.file(), p);
    }
  };
  const std::string tok = "tokenizer: {path: " + a.tokenizer + "}\n";
  expect_error("{instructions: sft.jsonl}", "", "tokenizer.path");
  expect_error("{instructions: sft.jsonl, manifests: [m.jsonl]}", tok, "data.instructions");
  expect_error("{instructions: sft.jsonl, default_corpus: true}", tok, "data.instructions");
  expect_error("{instructions: sft.jsonl, prompt_field: x, response_field: x}", tok, "data.response_field");
  expect_error("{}", tok, "data.manifests");  // neither: still an error
  // Instructions alone (no manifests) are accepted.
  EXPECT_NO_THROW(sft_recipe(temp_dir("sft_ok"), 4));
}

TEST(InstructionTuning, LossIsTokenWeightedSoTheSplitDoesNotMatter) {
  // Responses of 1..12 words: micro-batches hold different numbers of target tokens. The step's
  // loss (and gradient) is the mean over the global batch's target tokens, so accumulating 1, 2 or
  // 8 micro-batches gives the same run up to rounding. A mean of per-micro-batch means would not.
  std::string jsonl = assets().dir + "/sft_var.jsonl";
  {
    std::mt19937 rng(11);
    std::ofstream out(jsonl);
    for (int i = 0; i < 24; ++i)
      out << nlohmann::json{{"instruction", words(rng, 3)}, {"output", words(rng, 1 + static_cast<int>(rng() % 12))}}.dump()
          << "\n";
  }
  std::vector<std::vector<nlohmann::json>> runs;
  for (int64_t micro : {8, 4, 1}) {
    std::string run = temp_dir("sft_split_" + std::to_string(micro));
    auto cfg = sft_recipe(run, 6);
    cfg.data.instructions = jsonl;
    cfg.batch.micro_batch_size = micro;
    run_training(cfg, quiet());
    runs.push_back(read_metrics(run));
  }
  for (std::size_t k = 1; k < runs.size(); ++k) {
    ASSERT_EQ(runs[k].size(), runs[0].size());
    for (std::size_t i = 0; i < runs[0].size(); ++i) {
      const double a = runs[0][i]["loss"].get<double>(), b = runs[k][i]["loss"].get<double>();
      EXPECT_NEAR(a, b, 1e-5 * a) << "run " << k << " step " << i + 1;
    }
  }
}
