// Downstream (CORE-style) evaluation through the `openlm` binary: a model trained on a letter cycle
// scores far above chance, bad task files are refused by FILE:LINE, few-shot draws are
// deterministic and never the example itself, 2 ranks give 1 rank's output, an exported HF
// directory gives the run's, the shipped CORE suite, has_categories. (Scores against a plain
// forward: test_downstream_scores.cpp.)
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "data_loader/manifest.h"
#include "data_loader/native_shard.h"
#include "openlm_cpp/core/recipe.h"
#include "openlm_cpp/tokenizer/tokenizer.h"
#include "openlm_cpp/train/icl_tasks.h"
#include "openlm_cpp/train/inference.h"
#include "downstream_fixtures.h"
#include "train_fixtures.h"


namespace stdfs = std::filesystem;
using namespace openlm::testing;              // openlm_bin, sh, q, slurp, has, temp_dir
using namespace openlm::testing::downstream;  // base(), eval(), letters(), ...
namespace {
const std::string& kBin = bin();
}  // namespace

namespace {

/// Tasks over the letter cycle the base run learned, with pseudo-random starts and gold positions.
struct PatternTasks {
  std::string dir, mc, schema, lm, suite;
};
const PatternTasks& pattern_tasks() {
  static const PatternTasks p_ = [] {
    PatternTasks p;
    p.dir = temp_dir("pattern");
    std::vector<json> mc, schema, lm;
    uint64_t s = 7;
    auto rnd = [&s](int n) {
      s = s * 6364136223846793005ULL + 1442695040888963407ULL;
      return static_cast<int>((s >> 33) % static_cast<uint64_t>(n));
    };
    for (int i = 0; i < 24; ++i) {
      const int a = rnd(26), gold = rnd(4);
      json choices = json::array();  // the next letter at `gold`, three others elsewhere
      for (int c = 0, off = 3; c < 4; ++c) choices.push_back(c == gold ? letters(a + 5, 1) : letters(a + 5 + off++ * 3, 1));
      mc.push_back({{"query", letters(a, 5)}, {"choices", choices}, {"gold", gold}});
      const int g3 = rnd(3);
      json opts = json::array();
      for (int c = 0; c < 3; ++c) opts.push_back(letters(c == g3 ? a : a + 6 + 5 * c, 4));
      schema.push_back({{"context_options", opts}, {"continuation", letters(a + 4, 3)}, {"gold", g3}});
      lm.push_back({{"context", letters(a, 6)}, {"continuation", letters(a + 6, 3)}});
    }
    p.mc = p.dir + "/letters_mc.jsonl";
    p.schema = p.dir + "/letters_schema.jsonl";
    p.lm = p.dir + "/letters_lm.jsonl";
    write_jsonl(p.mc, mc);
    write_jsonl(p.schema, schema);
    write_jsonl(p.lm, lm);
    p.suite = p.dir + "/suite.yaml";
    std::ofstream(p.suite) << "icl_tasks:\n"
                           << "- label: next_letter\n  dataset_uri: letters_mc.jsonl\n  num_fewshot: [0]\n"
                           << "  icl_task_type: multiple_choice\n  continuation_delimiter: ' '\n"
                           << "- label: which_prefix\n  dataset_uri: letters_schema.jsonl\n  num_fewshot: 0\n"
                           << "  icl_task_type: schema\n  random_baseline: 0.3\n  metric_names: [InContextLearningMultipleChoiceAccuracy]\n"
                           << "- label: continue\n  dataset_uri: " << p.lm << "\n  icl_task_type: language_modeling\n";
    return p;
  }();
  return p_;
}

}  // namespace

TEST(DownstreamEval, TrainedPatternScoresFarAboveChanceAndIsRecorded) {
  const auto& p = pattern_tasks();
  const std::string results = base().run + "/results.jsonl";
  stdfs::remove(results);
  std::string out;
  Result r = eval(base().run, "--suite " + q(p.suite) + " --tokenizer " + q(base().bytes_tok) + " --json", &out);
  ASSERT_EQ(r.rc, 0) << r.out;
  const json j = last_json(out);
  ASSERT_TRUE(j.is_object()) << r.out;
  ASSERT_EQ(j["tasks"].size(), 3u) << r.out;
  const json& mc = j["tasks"][0];
  const json& schema = j["tasks"][1];
  const json& lm = j["tasks"][2];
  EXPECT_EQ(mc["task"], "next_letter");
  EXPECT_EQ(mc["n"], 24);
  EXPECT_NEAR(mc["random_baseline"].get<double>(), 0.25, 1e-12);
  EXPECT_GE(mc["acc"].get<double>(), 0.9) << mc;  // chance 0.25
  EXPECT_GE(mc["acc_sum"].get<double>(), 0.9) << mc;
  EXPECT_EQ(schema["type"], "schema");
  EXPECT_NEAR(schema["random_baseline"].get<double>(), 0.3, 1e-12);
  EXPECT_GE(schema["acc"].get<double>(), 0.9) << schema;  // chance 1/3
  EXPECT_EQ(lm["type"], "language_modeling");
  EXPECT_EQ(lm["random_baseline"], 0.0);
  EXPECT_GE(lm["acc"].get<double>(), 0.8) << lm;  // chance ~0
  double centered = 0;
  for (const auto& t : j["tasks"]) {
    const double rb = t["random_baseline"].get<double>();
    EXPECT_NEAR(t["centered_acc"].get<double>(), (t["acc"].get<double>() - rb) / (1 - rb), 1e-12);
    centered += t["centered_acc"].get<double>() / 3;
  }
  EXPECT_NEAR(j["mean_centered_acc"].get<double>(), centered, 1e-12);
  EXPECT_GT(centered, 0.7);

  // One line per task in RUN/results.jsonl, with the source, the step of model.safetensors, a time.
  auto rec = read_jsonl(results);
  ASSERT_EQ(rec.size(), 3u) << slurp(results);
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(rec[i]["task"], j["tasks"][i]["task"]);
    EXPECT_EQ(rec[i]["acc"], j["tasks"][i]["acc"]);
    EXPECT_EQ(rec[i]["step"], 60);
    EXPECT_TRUE(rec[i]["time"].is_string());
    EXPECT_TRUE(has(rec[i]["source"].get<std::string>(), "run")) << rec[i];
  }
  // A checkpoint inside the run: appended to the run's results with the checkpoint's step; the
  // untrained-at-step-30 model is still far above chance. Text output names the task.
  r = eval(base().run + "/checkpoints/step_30", "--task " + q(p.mc) + " --tokenizer " + q(base().bytes_tok), &out);
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_TRUE(has(out, "letters_mc (multiple_choice, 0-shot): n 24")) << out;
  rec = read_jsonl(results);
  ASSERT_EQ(rec.size(), 4u);
  EXPECT_EQ(rec[3]["step"], 30);
  EXPECT_EQ(rec[3]["task"], "letters_mc");
  // --no-record leaves results.jsonl alone.
  ASSERT_EQ(eval(base().run, "--task " + q(p.mc) + " --tokenizer " + q(base().bytes_tok) + " --no-record").rc, 0);
  EXPECT_EQ(read_jsonl(results).size(), 4u);
}

TEST(DownstreamEval, BadTaskFilesAreRefusedByFileAndLine) {
  const std::string dir = temp_dir("bad_tasks");
  const std::string tok = " --tokenizer " + q(base().bytes_tok);
  auto refused = [&](const std::string& name, const std::string& text, const std::string& what) {
    const std::string f = dir + "/" + name + ".jsonl";
    std::ofstream(f) << text;
    Result r = eval(base().run, "--task " + q(f) + tok);
    EXPECT_EQ(r.rc, 1) << name << ": " << r.out;
    EXPECT_TRUE(has(r.out, f + ":" + what)) << name << ": " << r.out;
    EXPECT_FALSE(has(r.out, "acc")) << name << ": " << r.out;
  };
  const std::string ok = R"({"query": "abc", "choices": ["d", "e"], "gold": 0})" "\n";
  refused("not_json", ok + "{\"query\": \"abc\", \"choices\": [\"d\"\n", "2: not a JSON object");
  refused("no_gold", ok + "\n" + R"({"query": "abc", "choices": ["d", "e"]})" "\n", "3: no \"gold\"");
  refused("gold_range", ok + R"({"query": "abc", "choices": ["d", "e"], "gold": 2})" "\n", "2: \"gold\" 2 is out of range");
  refused("gold_negative", R"({"query": "abc", "choices": ["d", "e"], "gold": -1})" "\n", "1: \"gold\" -1 is out of range");
  refused("empty_choices", ok + ok + R"({"query": "abc", "choices": [], "gold": 0})" "\n", "3: \"choices\" is empty");
  refused("blank_choice", R"({"query": "abc", "choices": ["d", "  "], "gold": 0})" "\n", "1: choice 1 is empty");
  refused("no_query", R"({"choices": ["d"], "gold": 0})" "\n", "1: no \"query\"");
  refused("unknown_type", R"({"question": "abc"})" "\n", "1: cannot tell the task type");
  refused("schema_gold", R"({"context_options": ["a", "b"], "continuation": "c", "gold": 5})" "\n",
          "1: \"gold\" 5 is out of range");
  refused("lm_cont", R"({"context": "abc", "continuation": 3})" "\n", "1: \"continuation\" must be a string");
  refused("too_long", R"({"context": "a", "continuation": ")" + letters(0, 30) + "\"}\n",
          "1: a continuation of 30 tokens leaves no room");
  // An empty file has no line to name.
  std::ofstream(dir + "/empty.jsonl") << "\n";
  Result r = eval(base().run, "--task " + q(dir + "/empty.jsonl") + tok);
  EXPECT_EQ(r.rc, 1);
  EXPECT_TRUE(has(r.out, dir + "/empty.jsonl: no task records")) << r.out;
  // Suite errors name the suite file, the key and the line.
  std::ofstream(dir + "/suite.yaml") << "icl_tasks:\n- label: x\n  dataset_uri: a.jsonl\n  icl_task_type: question_answering\n";
  r = eval(base().run, "--suite " + q(dir + "/suite.yaml") + tok);
  EXPECT_EQ(r.rc, 1);
  EXPECT_TRUE(has(r.out, "icl_task_type") && has(r.out, "question_answering") && has(r.out, "suite.yaml")) << r.out;
  // Usage: --task with --tokens, --num-fewshot without --task.
  EXPECT_EQ(eval(base().run, "--task a.jsonl --tokens b.txt").rc, 2);
  EXPECT_EQ(eval(base().run, "--tokens b.txt --num-fewshot 2").rc, 2);
}

TEST(DownstreamEval, FewshotDrawsAreDeterministicAndNeverTheExampleItself) {
  using openlm::icl::fewshot_indices;
  for (int64_t n : {1, 2, 5, 50})
    for (int64_t k : {0, 1, 3, 10})
      for (int64_t i = 0; i < n; ++i) {
        auto a = fewshot_indices(n, k, i, 1234);
        EXPECT_EQ(a, fewshot_indices(n, k, i, 1234));
        EXPECT_EQ(static_cast<int64_t>(a.size()), std::min(k, n - 1));
        std::set<int64_t> u(a.begin(), a.end());
        EXPECT_EQ(u.size(), a.size());
        EXPECT_EQ(u.count(i), 0u) << n << " " << k << " " << i;
        EXPECT_TRUE(std::is_sorted(a.begin(), a.end()));
        for (auto x : a) EXPECT_TRUE(x >= 0 && x < n);
      }
  // Draws differ between examples and seeds (not one fixed set), and cover the file.
  std::set<std::vector<int64_t>> draws;
  std::set<int64_t> seen;
  for (int64_t i = 0; i < 50; ++i) {
    auto a = fewshot_indices(50, 3, i, 1234);
    draws.insert(a);
    seen.insert(a.begin(), a.end());
  }
  EXPECT_GT(draws.size(), 40u);
  EXPECT_GT(seen.size(), 40u);
  EXPECT_NE(fewshot_indices(50, 3, 0, 1234), fewshot_indices(50, 3, 0, 1235));
  // Through the CLI: the same command twice writes the same per-example file.
  const std::string dir = temp_dir("fewshot_cli");
  const std::string args = "--task " + q(pattern_tasks().mc) + " --tokenizer " + q(base().bytes_tok) +
                           " --num-fewshot 3 --no-record --per-example ";
  ASSERT_EQ(eval(base().run, args + q(dir + "/a.jsonl")).rc, 0);
  ASSERT_EQ(eval(base().run, args + q(dir + "/b.jsonl")).rc, 0);
  EXPECT_EQ(slurp(dir + "/a.jsonl"), slurp(dir + "/b.jsonl"));
  EXPECT_EQ(read_jsonl(dir + "/a.jsonl").size(), 24u);
}

TEST(DownstreamEval, TwoRanksGiveTheOutputOfOne) {
  const auto& p = pattern_tasks();
  const std::string dir = temp_dir("two_ranks");
  const std::string args = " eval " + q(base().run) + " --suite " + q(p.suite) + " --tokenizer " +
                           q(base().bytes_tok) + " --json --no-record --batch-size 5 --per-example ";
  std::string one, two;
  Result r1 = sh(q(kBin) + args + q(dir + "/one.jsonl"), 120, &one);
  ASSERT_EQ(r1.rc, 0) << r1.out;
  Result r2 = sh(q(kBin) + " launch --standalone --nproc-per-node 2 -- " + q(kBin) + args + q(dir + "/two.jsonl"), 180, &two);
  ASSERT_EQ(r2.rc, 0) << r2.out;
  // The launcher prefixes each rank's lines with "[rankN]: "; only rank 0 prints.
  EXPECT_FALSE(has(two, "[rank1]")) << two;
  const std::string tag = "[rank0]: ";
  for (auto at = two.find(tag); at != std::string::npos; at = two.find(tag)) two.erase(at, tag.size());
  json a = last_json(one), b = last_json(two);
  ASSERT_TRUE(a.is_object() && b.is_object()) << one << "\n" << two;
  for (auto* j : {&a, &b})
    for (auto& t : (*j)["tasks"]) t.erase("seconds");
  EXPECT_EQ(a, b);
  EXPECT_EQ(slurp(dir + "/one.jsonl"), slurp(dir + "/two.jsonl"));  // every log-likelihood bit for bit
  EXPECT_EQ(read_jsonl(dir + "/two.jsonl").size(), 72u);
}

TEST(DownstreamEval, ExportedHfDirectoryScoresLikeTheRun) {
  const std::string dir = temp_dir("hf_source");
  Result x = sh(q(kBin) + " export-hf " + q(base().run) + " " + q(dir + "/hf") + " --format openlm");
  ASSERT_EQ(x.rc, 0) << x.out;
  Result im = sh(q(kBin) + " import-hf " + q(dir + "/hf") + " " + q(dir + "/native"));
  ASSERT_EQ(im.rc, 0) << im.out;
  const std::string args = "--task " + q(pattern_tasks().schema) + " --tokenizer " + q(base().bytes_tok) +
                           " --no-record --per-example ";
  ASSERT_EQ(eval(base().run, args + q(dir + "/run.jsonl")).rc, 0);
  for (const std::string& src : {dir + "/hf", dir + "/native"}) {
    Result r = eval(src, args + q(dir + "/other.jsonl"));
    ASSERT_EQ(r.rc, 0) << r.out;
    auto a = read_jsonl(dir + "/run.jsonl"), b = read_jsonl(dir + "/other.jsonl");
    ASSERT_EQ(a.size(), b.size());
    for (std::size_t i = 0; i < a.size(); ++i) {
      EXPECT_EQ(a[i]["pred"], b[i]["pred"]) << src;
      for (std::size_t c = 0; c < a[i]["choices"].size(); ++c)
        EXPECT_NEAR(a[i]["choices"][c]["sum_logprob"].get<double>(), b[i]["choices"][c]["sum_logprob"].get<double>(),
                    1e-5)
            << src;
    }
    EXPECT_FALSE(stdfs::exists(src + "/results.jsonl"));  // not a run: nothing recorded
  }
}

TEST(DownstreamEval, ShippedCoreSuiteListsDclmsTwentyTwoTasks) {
  const std::string core = std::string(OPENLM_SOURCE_DIR) + "/recipes/eval/core.yaml";
  const auto tasks = openlm::icl::read_suite(core, "/bundle");
  ASSERT_EQ(tasks.size(), 22u);
  std::set<std::string> labels;
  for (const auto& t : tasks) {
    labels.insert(t.label);
    EXPECT_EQ(t.path.rfind("/bundle/local_data/", 0), 0u) << t.path;
    ASSERT_TRUE(t.type.has_value()) << t.label;
    ASSERT_TRUE(t.random_baseline.has_value()) << t.label;
    EXPECT_EQ(*t.random_baseline == 0, *t.type == openlm::icl::TaskType::LanguageModeling) << t.label;
    ASSERT_EQ(t.num_fewshot.size(), 1u);
    EXPECT_EQ(t.has_categories, t.label == "jeopardy") << t.label;
  }
  EXPECT_EQ(labels.size(), 22u);
  for (const char* l : {"hellaswag_zeroshot", "winograd", "winogrande", "lambada_openai", "boolq", "squad", "coqa",
                        "bigbench_language_identification", "agi_eval_lsat_ar"})
    EXPECT_EQ(labels.count(l), 1u) << l;
  // Through the CLI: the first missing file is named before any model is loaded.
  const std::string dir = temp_dir("core_suite");
  Result r = eval(base().run, "--suite " + q(core) + " --data-root " + q(dir) + " --tokenizer " + q(base().bytes_tok));
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_TRUE(has(r.out, dir + "/local_data/language_understanding/hellaswag.jsonl")) << r.out;
}

TEST(DownstreamEval, HasCategoriesAveragesTheCategoriesScoredApart) {
  // Category "a": 4 examples, 1 with a wrong gold (acc 0.75); "b": 8, 4 wrong (acc 0.5). The
  // merged acc is their mean 0.625 (pooled would be 7/12), as DCLM reports has_categories tasks.
  const std::string dir = temp_dir("categories");
  std::vector<json> all, a, b;
  for (int i = 0; i < 12; ++i) {
    const bool in_a = i % 3 == 0;
    const int k = in_a ? static_cast<int>(a.size()) : static_cast<int>(b.size());
    const bool wrong = in_a ? k == 0 : k % 2 == 1;
    json r = {{"query", letters(i, 5)}, {"choices", {letters(i + 5, 1), letters(i + 11, 1)}}, {"gold", wrong ? 1 : 0},
              {"category", in_a ? "a" : "b"}};
    all.push_back(r);
    (in_a ? a : b).push_back(r);
  }
  write_jsonl(dir + "/all.jsonl", all);
  write_jsonl(dir + "/a.jsonl", a);
  write_jsonl(dir + "/b.jsonl", b);
  std::ofstream(dir + "/suite.yaml") << "icl_tasks:\n- label: cats\n  dataset_uri: all.jsonl\n  num_fewshot: [1]\n"
                                     << "  has_categories: true\n";
  const std::string tok = " --tokenizer " + q(base().bytes_tok) + " --no-record --json";
  std::string out;
  Result r = eval(base().run, "--suite " + q(dir + "/suite.yaml") + tok + " --per-example " + q(dir + "/all.per"), &out);
  ASSERT_EQ(r.rc, 0) << r.out;
  const json t = last_json(out)["tasks"][0];
  EXPECT_EQ(t["categories"], 2);
  EXPECT_EQ(t["n"], 12);
  EXPECT_NEAR(t["acc"].get<double>(), 0.625, 1e-12) << t;
  EXPECT_NEAR(t["centered_acc"].get<double>(), (0.625 - 0.5) / 0.5, 1e-12) << t;
  // Each category is the task of its own file: the same prompts (few-shot from the category), scores.
  auto per = read_jsonl(dir + "/all.per");
  ASSERT_EQ(per.size(), 12u);
  std::size_t at = 0;
  for (const std::string c : {"a", "b"}) {
    ASSERT_EQ(eval(base().run, "--task " + q(dir + "/" + c + ".jsonl") + tok + " --num-fewshot 1 --per-example " +
                                   q(dir + "/" + c + ".per"))
                  .rc,
              0);
    for (const auto& e : read_jsonl(dir + "/" + c + ".per")) {
      EXPECT_EQ(per[at]["category"], c);
      EXPECT_EQ(per[at]["choices"], e["choices"]);
      ++at;
    }
  }
  // A record without a category is refused by line.
  std::ofstream(dir + "/all.jsonl", std::ios::app) << R"({"query": "abc", "choices": ["d"], "gold": 0})" << "\n";
  r = eval(base().run, "--suite " + q(dir + "/suite.yaml") + tok);
  EXPECT_EQ(r.rc, 1);
  EXPECT_TRUE(has(r.out, dir + "/all.jsonl:13: no \"category\"")) << r.out;
}
