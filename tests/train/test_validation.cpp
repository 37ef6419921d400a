// Issue 11 parts 1 and 5 and issue 13 B.4 through the `openlm` binary: validation during training
// equals `openlm eval` on the same sequences, is the same at world size 1 and 2, and leaves the
// training trajectory untouched; weight averages follow their formulas and survive resume
// bit-exactly; relative paths resolve against the recipe's folder (--set: the working directory),
// and a recipe with init_from may leave out the model.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>

#include "openlm_cpp/core/recipe.h"
#include "openlm_cpp/train/averaging.h"
#include "train_fixtures.h"

namespace stdfs = std::filesystem;

namespace {

using namespace openlm::testing;  // openlm_bin, sh, q, slurp, has, temp_dir, read_metrics, ...

const std::string kBin = openlm_bin();

struct Fixture {
  std::string root, manifest, val_manifest, val_tokens, recipe;
};

/// Counting-pattern shards for training and a separate held-out set (a manifest and a token file
/// of 17-token lines, some 9 tokens long so that batches of unequal lengths occur).
const Fixture& fx() {
  static const Fixture f = [] {
    Fixture x;
    x.root = temp_dir("validation");
    x.manifest = write_counting_shards(x.root + "/train", 64, 16, 64);
    x.val_manifest = write_counting_shards(x.root + "/val", 12, 16, 64, 3);
    x.val_tokens = x.root + "/val.txt";
    std::ofstream t(x.val_tokens);
    for (int s = 0; s < 7; ++s) {
      const int len = s % 3 == 2 ? 9 : 17;
      for (int i = 0; i < len; ++i) t << (s * 5 + i * 3) % 64 << (i + 1 < len ? " " : "\n");
    }
    openlm::TrainConfig c = tiny_recipe(x.manifest, x.root + "/unused", 6);
    std::ofstream(x.root + "/recipe.json") << openlm::to_json(c).dump(2);
    x.recipe = x.root + "/recipe.json";
    return x;
  }();
  return f;
}

std::string eval_sets() {
  return " --set 'eval.val_data=[{name: tok, path: " + fx().val_tokens + "}, {path: " + fx().val_manifest +
         "}]' --set eval.every_steps=3";
}

Result train(const std::string& run, const std::string& extra, int world = 1) {
  std::string cmd = "cd " + q(fx().root) + " && OMP_NUM_THREADS=1 ";
  if (world > 1) cmd += q(kBin) + " launch --standalone --nproc-per-node " + std::to_string(world) + " -- ";
  return sh(cmd + q(kBin) + " train " + q(fx().recipe) + " --run-dir " + q(run) + " " + extra, 300);
}

std::vector<nlohmann::json> records(const std::string& run, bool eval) {
  std::vector<nlohmann::json> out;
  for (auto& m : read_metrics(run))
    if ((m.value("kind", "") == "eval") == eval) out.push_back(m);
  return out;
}

nlohmann::json last_eval(const std::string& run, const std::string& source) {
  nlohmann::json found;
  for (auto& m : records(run, true))
    if (m["source"] == source) found = m;
  return found;
}

nlohmann::json eval_json(const std::string& args) {
  std::string out;
  Result r = sh("OMP_NUM_THREADS=1 " + q(kBin) + " eval " + args + " --json", 120, &out);
  EXPECT_EQ(r.rc, 0) << r.out;
  return nlohmann::json::parse(out);
}

}  // namespace

TEST(Validation, EqualsOpenlmEvalOnTheSameSequences) {
  const std::string run = temp_dir("val_eval") + "/run";
  Result r = train(run, eval_sets());
  ASSERT_EQ(r.rc, 0) << r.out;
  // Steps 3 and 6 (the final evaluation, once) for both sources; the manifest's name is its stem.
  auto evals = records(run, true);
  ASSERT_EQ(evals.size(), 4u) << r.out;
  EXPECT_EQ(evals[0]["step"], 3);
  EXPECT_EQ(evals[3]["step"], 6);
  EXPECT_EQ(evals[1]["source"], "manifest");
  EXPECT_TRUE(has(r.out, "eval") && has(r.out, "| tok |")) << r.out;

  const nlohmann::json tok = last_eval(run, "tok"), man = last_eval(run, "manifest");
  const nlohmann::json ref_tok = eval_json(q(run) + " --tokens " + q(fx().val_tokens));
  EXPECT_NEAR(tok["loss"].get<double>(), ref_tok["loss"].get<double>(), 1e-6 * ref_tok["loss"].get<double>());
  EXPECT_EQ(tok["tokens"], ref_tok["tokens"]);
  EXPECT_EQ(tok["sequences"], 7);
  EXPECT_NEAR(tok["ppl"].get<double>(), std::exp(tok["loss"].get<double>()), 1e-9 * tok["ppl"].get<double>());
  const nlohmann::json ref_man = eval_json(q(run) + " --data " + q(fx().val_manifest));
  EXPECT_NEAR(man["loss"].get<double>(), ref_man["loss"].get<double>(), 1e-6 * ref_man["loss"].get<double>());
  EXPECT_EQ(man["tokens"], 12 * 16);

  // max_sequences takes the first N of each source.
  const std::string run2 = temp_dir("val_eval_max") + "/run";
  ASSERT_EQ(train(run2, eval_sets() + " --set eval.max_sequences=5").rc, 0);
  EXPECT_EQ(last_eval(run2, "manifest")["sequences"], 5);
  const nlohmann::json ref5 =
      eval_json(q(run2) + " --data " + q(fx().val_manifest) + " --max-sequences 5");
  EXPECT_NEAR(last_eval(run2, "manifest")["loss"].get<double>(), ref5["loss"].get<double>(), 1e-6);
}

TEST(Validation, LeavesTheTrainingTrajectoryUntouched) {
  const std::string with = temp_dir("val_with") + "/run", without = temp_dir("val_without") + "/run";
  ASSERT_EQ(train(with, eval_sets()).rc, 0);
  ASSERT_EQ(train(without, "").rc, 0);
  auto a = records(with, false), b = records(without, false);
  ASSERT_EQ(a.size(), 6u);
  ASSERT_EQ(b.size(), 6u);
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i]["loss"], b[i]["loss"]) << "step " << i + 1;
  EXPECT_EQ(slurp(with + "/model.safetensors"), slurp(without + "/model.safetensors"));
}

TEST(Validation, SameAtWorldSizeOneAndTwo) {
  const std::string one = temp_dir("val_w1") + "/run", two = temp_dir("val_w2") + "/run";
  ASSERT_EQ(train(one, eval_sets() + " --set batch.micro_batch_size=2").rc, 0);
  Result r = train(two, eval_sets() + " --set batch.micro_batch_size=2 --set parallel.strategy=full_shard", 2);
  ASSERT_EQ(r.rc, 0) << r.out;
  auto e1 = records(one, true), e2 = records(two, true);
  ASSERT_EQ(e1.size(), e2.size());
  for (std::size_t i = 0; i < e1.size(); ++i) {
    EXPECT_EQ(e1[i]["source"], e2[i]["source"]);
    EXPECT_EQ(e1[i]["tokens"], e2[i]["tokens"]);
    EXPECT_EQ(e1[i]["sequences"], e2[i]["sequences"]);
    // The weights themselves differ in the last bits between world sizes (reduction order).
    EXPECT_NEAR(e1[i]["loss"].get<double>(), e2[i]["loss"].get<double>(), 1e-5 * e1[i]["loss"].get<double>());
  }
  // The evaluation itself is world-size independent: the 2-rank run's final weights evaluated by
  // one process give exactly its final record.
  const nlohmann::json ref = eval_json(q(two) + " --tokens " + q(fx().val_tokens));
  EXPECT_NEAR(last_eval(two, "tok")["loss"].get<double>(), ref["loss"].get<double>(), 1e-6 * ref["loss"].get<double>());
}

TEST(Validation, BadSourcesFailBeforeStepOne) {
  const std::string dir = temp_dir("val_bad");
  std::ofstream(dir + "/long.txt") << std::string(20 * 3, ' ') << "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19\n";
  Result r = train(dir + "/run", "--set 'eval.val_data=[" + dir + "/long.txt]'");
  EXPECT_NE(r.rc, 0);
  EXPECT_TRUE(has(r.out, "long.txt") && has(r.out, "sequence 1") && has(r.out, "seq_len + 1")) << r.out;
  EXPECT_FALSE(stdfs::exists(dir + "/run/metrics.jsonl"));
  r = train(dir + "/run2", "--set 'eval.val_data=[missing.txt]'");
  EXPECT_NE(r.rc, 0);
  EXPECT_TRUE(has(r.out, "eval.val_data[0].path") && has(r.out, "does not exist")) << r.out;
  r = train(dir + "/run3", "--set 'eval.val_data=[default_corpus:heldout]'");
  EXPECT_NE(r.rc, 0);
  EXPECT_TRUE(has(r.out, "data.default_corpus")) << r.out;
}

// ---- weight averages ---------------------------------------------------------------------------

TEST(WeightAverages, FollowOpenLMsUpdateRules) {
  at::Tensor w = at::zeros({3});
  openlm::WeightAverages avg({"ema_0.9", "poly_0", "poly_2"}, {w});
  double ema = 0, mean = 0, poly2 = 0;
  for (int t = 1; t <= 5; ++t) {
    w.fill_(static_cast<double>(t * t));
    avg.update(t);
    const double p = t * t;
    ema = 0.9 * ema + 0.1 * p;
    mean = mean + (p - mean) / t;  // poly_0: the running mean of the updated weights
    const double a = 3.0 / (2.0 + t);
    poly2 = (1 - a) * poly2 + a * p;
    EXPECT_NEAR(avg.average(0, 0)[1].item<double>(), ema, 1e-5) << t;
    EXPECT_NEAR(avg.average(1, 0)[1].item<double>(), mean, 1e-5) << t;
    EXPECT_NEAR(avg.average(2, 0)[1].item<double>(), poly2, 1e-5) << t;
  }
}

TEST(WeightAverages, SurviveResumeBitExactlyAndAreEvaluable) {
  const std::string avg = " --set 'averagers=[ema_0.9, poly_1]' --set checkpoint.every_steps=2";
  const std::string whole = temp_dir("avg_whole") + "/run", split = temp_dir("avg_split") + "/run";
  ASSERT_EQ(train(whole, avg).rc, 0);
  ASSERT_EQ(train(split, avg + " --stop-at-step 3").rc, 0);
  Result r = train(split, avg + " --set resume=latest");
  ASSERT_EQ(r.rc, 0) << r.out;
  for (const char* f : {"model.safetensors", "model_ema_0.9.safetensors", "model_poly_1.safetensors"}) {
    ASSERT_TRUE(stdfs::exists(whole + "/" + f)) << f;
    EXPECT_EQ(slurp(whole + "/" + f), slurp(split + "/" + f)) << f;
  }
  EXPECT_NE(slurp(whole + "/model.safetensors"), slurp(whole + "/model_ema_0.9.safetensors"));
  // --weights NAME picks the average in eval, generate and export-hf.
  const nlohmann::json by_name = eval_json(q(whole) + " --weights ema_0.9 --tokens " + q(fx().val_tokens));
  const nlohmann::json by_file = eval_json(q(whole + "/model_ema_0.9.safetensors") + " --tokens " + q(fx().val_tokens));
  EXPECT_EQ(by_name["loss"], by_file["loss"]);
  EXPECT_NE(by_name["loss"], eval_json(q(whole) + " --tokens " + q(fx().val_tokens))["loss"]);
  Result bad = sh(q(kBin) + " eval " + q(whole) + " --weights ema_0.5 --tokens " + q(fx().val_tokens));
  EXPECT_NE(bad.rc, 0);
  EXPECT_TRUE(has(bad.out, "--weights") && has(bad.out, "ema_0.9") && has(bad.out, "poly_1")) << bad.out;
  const std::string hf = temp_dir("avg_hf") + "/hf";
  Result ex = sh(q(kBin) + " export-hf " + q(whole) + " " + q(hf) + " --weights poly_1");
  ASSERT_EQ(ex.rc, 0) << ex.out;
  EXPECT_EQ(eval_json(q(hf) + " --tokens " + q(fx().val_tokens))["loss"],
            eval_json(q(whole) + " --weights poly_1 --tokens " + q(fx().val_tokens))["loss"]);
  // Sharded runs keep the averages on their shards: 2 ranks write the same files (within rounding).
  const std::string two = temp_dir("avg_two") + "/run";
  ASSERT_EQ(train(two, avg + " --set parallel.strategy=full_shard", 2).rc, 0);
  const nlohmann::json a = eval_json(q(whole + "/model_ema_0.9.safetensors") + " --tokens " + q(fx().val_tokens));
  const nlohmann::json b = eval_json(q(two + "/model_ema_0.9.safetensors") + " --tokens " + q(fx().val_tokens));
  EXPECT_NEAR(a["loss"].get<double>(), b["loss"].get<double>(), 1e-5 * a["loss"].get<double>());
}

// ---- issue 13 B.4: one rule for relative paths ---------------------------------------------------

TEST(RecipePaths, RelativeToTheRecipeFileAndToTheWorkingDirectoryForSet) {
  const std::string dir = temp_dir("paths");
  stdfs::create_directories(dir + "/recipes/sub");
  stdfs::create_directories(dir + "/elsewhere");
  stdfs::copy(stdfs::path(fx().manifest).parent_path(), dir + "/recipes/sub/data", stdfs::copy_options::recursive);
  auto cfg = nlohmann::json::parse(slurp(fx().recipe));
  cfg["data"]["manifests"] = {{{"path", "sub/data/manifest.jsonl"}, {"weight", 1.0}}};
  cfg["eval"] = {{"val_data", {"sub/data/manifest.jsonl"}}, {"max_sequences", 2}};
  cfg["max_steps"] = 2;
  cfg["schedule"]["warmup"] = 1;
  std::ofstream(dir + "/recipes/r.json") << cfg.dump(2);
  // From an unrelated working directory: the recipe's own relative paths still resolve.
  Result r = sh("cd " + q(dir + "/elsewhere") + " && OMP_NUM_THREADS=1 " + q(kBin) + " train ../recipes/r.json --run-dir run");
  ASSERT_EQ(r.rc, 0) << r.out;
  auto resolved = nlohmann::json::parse(slurp(dir + "/elsewhere/run/config.json"));  // run_dir: the working directory's
  EXPECT_EQ(resolved["data"]["manifests"][0]["path"], stdfs::canonical(dir + "/recipes/sub/data/manifest.jsonl").string());
  EXPECT_EQ(resolved["eval"]["val_data"][0]["path"], resolved["data"]["manifests"][0]["path"]);

  // --set paths are the user's: relative to the working directory.
  r = sh("cd " + q(dir + "/recipes") + " && OMP_NUM_THREADS=1 " + q(kBin) +
         " train r.json --run-dir ../run2 --set 'data.manifests=[sub/data/manifest.jsonl]'");
  ASSERT_EQ(r.rc, 0) << r.out;
  r = sh("cd " + q(dir) + " && OMP_NUM_THREADS=1 " + q(kBin) +
         " train recipes/r.json --run-dir run3 --set 'data.manifests=[sub/data/manifest.jsonl]'");
  EXPECT_NE(r.rc, 0);
  EXPECT_TRUE(has(r.out, "data.manifests[0].path") &&
              has(r.out, (stdfs::canonical(dir).string() + "/sub/data/manifest.jsonl")))
      << r.out;
  EXPECT_FALSE(stdfs::exists(dir + "/run3/metrics.jsonl"));
}

TEST(RecipePaths, InitFromWithoutAModelTakesTheSourcesModel) {
  const std::string dir = temp_dir("init_nomodel");
  const std::string src = dir + "/src";
  ASSERT_EQ(train(src, "--max-steps 2 --set schedule.warmup=1").rc, 0);
  std::ofstream(dir + "/ft.yaml") << "init_from: src\n"
                                  << "data: {manifests: [" << fx().manifest << "]}\n"
                                  << "batch: {global_batch_size: 4, micro_batch_size: 4}\n"
                                  << "max_steps: 2\nschedule: {warmup: 1}\nlogging: {tensorboard: false}\n";
  Result r = sh("cd / && OMP_NUM_THREADS=1 " + q(kBin) + " train " + q(dir + "/ft.yaml") + " --run-dir " + q(dir + "/ft"));
  ASSERT_EQ(r.rc, 0) << r.out;
  auto a = nlohmann::json::parse(slurp(src + "/config.json")), b = nlohmann::json::parse(slurp(dir + "/ft/config.json"));
  EXPECT_EQ(a["model"], b["model"]);
  EXPECT_EQ(b["init_from"], src);
  // Without init_from the model stays required, by name.
  std::ofstream(dir + "/bad.yaml") << "data: {manifests: [" << fx().manifest << "]}\nmax_steps: 2\n"
                                   << "batch: {global_batch_size: 4, micro_batch_size: 4}\n";
  r = sh(q(kBin) + " train " + q(dir + "/bad.yaml") + " --run-dir " + q(dir + "/bad"));
  EXPECT_NE(r.rc, 0);
  EXPECT_TRUE(has(r.out, "model") && has(r.out, "init_from")) << r.out;
}

// The shipped fine-tuning recipe runs from any working directory: its instruction file resolves
// beside the recipe, init_from (given with --set, relative to the working directory) brings the model.
TEST(RecipePaths, ShippedSftRecipeRunsFromAnyDirectory) {
  const std::string dir = temp_dir("sft_anywhere");
  const std::string src = std::string(OPENLM_SOURCE_DIR);
  Result r = sh("cd " + q(dir) + " && OMP_NUM_THREADS=1 " + q(kBin) + " train " + q(src + "/recipes/train/tiny_demo.yaml") +
                    " --run-dir demo --max-steps 2 --set schedule.warmup=1 --set generate.max_new_tokens=0",
                300);
  ASSERT_EQ(r.rc, 0) << r.out;
  const auto demo = nlohmann::json::parse(slurp(dir + "/demo/config.json"));
  r = sh("cd " + q(dir) + " && OMP_NUM_THREADS=1 " + q(kBin) + " train " + q(src + "/recipes/train/sft_example.yaml") +
             " --run-dir sft --max-steps 2 --set schedule.warmup=1 --set generate.max_new_tokens=0 --set init_from=demo" +
             " --set tokenizer.path=" + q(demo["tokenizer"]["path"].get<std::string>()),
         300);
  ASSERT_EQ(r.rc, 0) << r.out;
  const auto sft = nlohmann::json::parse(slurp(dir + "/sft/config.json"));
  EXPECT_EQ(sft["data"]["instructions"], src + "/recipes/train/sft_example.jsonl");
  EXPECT_EQ(sft["init_from"], dir + "/demo");
  EXPECT_EQ(sft["model"], demo["model"]);
}
