// Downstream (CORE-style) evaluation through the `openlm` binary: `eval --task/--suite` scores of a
// tiny model equal an independent computation from the model's plain forward (multiple_choice,
// schema, language_modeling; few-shot prompts, truncation, a byte-level BPE that needs a prefix
// space), a model trained on a letter cycle scores far above chance, bad task files are refused by
// FILE:LINE, few-shot draws are deterministic and never the example itself, 2 ranks give 1 rank's
// output, an exported HF directory gives the run's.
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
#include "train_fixtures.h"

namespace stdfs = std::filesystem;
using namespace openlm::testing;  // openlm_bin, sh, q, slurp, has, temp_dir
using nlohmann::json;

namespace {

const std::string kBin = openlm_bin();
constexpr int64_t kSeqLen = 24;

/// UTF-8 of a code point below 0x800.
std::string utf8(int cp) {
  if (cp < 0x80) return std::string(1, static_cast<char>(cp));
  return {static_cast<char>(0xC0 | (cp >> 6)), static_cast<char>(0x80 | (cp & 0x3F))};
}

/// A byte-level BPE tokenizer.json without merges whose id of every byte is the byte's value: text
/// "abc" is ids 97 98 99, and " a" is two tokens (no prefix space needed).
std::string write_bytes_tokenizer(const std::string& path) {
  std::vector<int> bs;  // GPT-2's byte -> printable code point table
  for (int b = 33; b <= 126; ++b) bs.push_back(b);
  for (int b = 161; b <= 172; ++b) bs.push_back(b);
  for (int b = 174; b <= 255; ++b) bs.push_back(b);
  std::vector<int> cp(256, -1);
  for (int b : bs) cp[b] = b;
  int extra = 0;
  for (int b = 0; b < 256; ++b)
    if (cp[b] < 0) cp[b] = 256 + extra++;
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[utf8(cp[b])] = b;
  json bl = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
  json t = {{"version", "1.0"}, {"truncation", nullptr}, {"padding", nullptr}, {"added_tokens", json::array()},
            {"normalizer", nullptr}, {"pre_tokenizer", bl}, {"post_processor", nullptr}, {"decoder", bl},
            {"model", {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr},
                       {"continuing_subword_prefix", nullptr}, {"end_of_word_suffix", nullptr}, {"fuse_unk", false},
                       {"byte_fallback", false}, {"vocab", vocab}, {"merges", json::array()}}}};
  std::ofstream(path) << t.dump();
  return path;
}

/// Sequences of kSeqLen + 1 letters cycling a..z (ids 97..122) from random starts.
std::string write_letter_shards(const std::string& dir, int64_t n) {
  stdfs::create_directories(dir);
  openlm::data::NativeShardWriter w(dir + "/letters" + openlm::data::kNativeExt, 2, kSeqLen + 1, "");
  uint64_t s = 99;
  for (int64_t i = 0; i < n; ++i) {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    std::vector<int64_t> seq(kSeqLen + 1);
    for (int64_t t = 0; t <= kSeqLen; ++t) seq[t] = 97 + static_cast<int64_t>((s >> 33) % 26 + t) % 26;
    w.append(seq.data(), seq.size());
  }
  openlm::data::write_manifest(dir + "/manifest.jsonl", {{"letters", w.count(), "", openlm::data::ShardFormat::Native}});
  w.finish();
  return dir + "/manifest.jsonl";
}

struct Base {
  std::string root, run, bytes_tok, neox_tok;
};
/// One tiny run (d 32, 2 layers, seq 24, vocab 320: the byte tokenizer's 256 ids and the NeoX test
/// tokenizer's 297 fit) trained on the letter cycle, shared by every test.
const Base& base() {
  static const Base b_ = [] {
    Base b;
    b.root = temp_dir("downstream_base");
    b.run = b.root + "/run";
    b.bytes_tok = write_bytes_tokenizer(b.root + "/bytes_tokenizer.json");
    b.neox_tok = std::string(OPENLM_SOURCE_DIR) + "/tests/tokenizer/data/neox_tiny_tokenizer.json";
    const std::string manifest = write_letter_shards(b.root + "/data", 256);
    std::ofstream(b.root + "/recipe.yaml")
        << "model: {name: t, dim: 32, n_layers: 2, n_heads: 4, seq_len: " << kSeqLen << ", vocab_size: 320}\n"
        << "data: {manifests: [{path: " << manifest << "}]}\n"
        << "batch: {global_batch_size: 16, micro_batch_size: 16}\n"
        << "optim: {lr: 2.0e-2, z_loss: 1.0e-4}\nschedule: {warmup: 5}\n"
        << "max_steps: 60\nrun_dir: " << b.run << "\nlogging: {tensorboard: false}\ncheckpoint: {every_steps: 30}\n";
    Result r = sh(q(kBin) + " train " + q(b.root + "/recipe.yaml"), 300);
    EXPECT_EQ(r.rc, 0) << r.out;
    return b;
  }();
  return b_;
}

void write_jsonl(const std::string& path, const std::vector<json>& recs) {
  std::ofstream f(path);
  for (const auto& r : recs) f << r.dump() << "\n";
}

std::vector<json> read_jsonl(const std::string& path) {
  std::vector<json> out;
  std::istringstream in(slurp(path));
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(json::parse(line));
  return out;
}

/// The last line of `out` parsed as JSON (null when it is not).
json last_json(const std::string& out) {
  std::string s = out;
  while (!s.empty() && s.back() == '\n') s.pop_back();
  auto j = json::parse(s.substr(s.rfind('\n') == std::string::npos ? 0 : s.rfind('\n') + 1), nullptr, false);
  return j.is_discarded() ? json() : j;
}

Result eval(const std::string& source, const std::string& args, std::string* out = nullptr) {
  return sh(q(kBin) + " eval " + q(source) + " " + args, 120, out);
}

std::string letters(int64_t start, int64_t n) {
  std::string s;
  for (int64_t i = 0; i < n; ++i) s += static_cast<char>('a' + (start + i) % 26);
  return s;
}

}  // namespace

namespace {

std::string rstrip(std::string s) {
  while (!s.empty() && std::string(" \t\n\r\v\f").find(s.back()) != std::string::npos) s.pop_back();
  return s;
}
std::string strip(std::string s) {
  s = rstrip(s);
  while (!s.empty() && std::string(" \t\n\r\v\f").find(s.front()) != std::string::npos) s.erase(s.begin());
  return s;
}
std::vector<int64_t> ids(const openlm::Tokenizer& tok, const std::string& s) {
  auto v = tok.encode(s);
  return std::vector<int64_t>(v.begin(), v.end());
}

struct RefChoice {
  int64_t tokens = 0;
  double sum = 0;
  bool greedy = true;
};

/// Log-likelihood of `cont` after `ctx` (cut from the left to fit kSeqLen) from the logits of the
/// whole input sequence (sequence_logits: Transformer::forward, nothing batched or gathered).
RefChoice score(openlm::LoadedModel& m, std::vector<int64_t> ctx, const std::vector<int64_t>& cont) {
  const int64_t over = static_cast<int64_t>(ctx.size() + cont.size()) - kSeqLen;
  if (over > 0) ctx.erase(ctx.begin(), ctx.begin() + over);
  std::vector<int64_t> in = ctx;
  in.insert(in.end(), cont.begin(), cont.end() - 1);
  at::Tensor lp = at::log_softmax(openlm::sequence_logits(*m.model, {in})[0].to(at::kDouble), -1);
  RefChoice r;
  r.tokens = static_cast<int64_t>(cont.size());
  for (std::size_t j = 0; j < cont.size(); ++j) {
    at::Tensor row = lp[static_cast<int64_t>(ctx.size() + j) - 1];
    r.sum += row[cont[j]].item<double>();
    r.greedy = r.greedy && row.argmax().item<int64_t>() == cont[j];
  }
  return r;
}

/// The documented prompt rules (docs/EVALUATION.md), written out again: few-shot prefix, context
/// rstripped (schema: its own rule), continuation with a space before it when the tokenizer
/// encodes " a" as one token; every example's choices scored with score().
std::vector<std::vector<RefChoice>> reference(const std::vector<json>& recs, const std::string& type, int64_t k,
                                              const openlm::Tokenizer& tok, openlm::LoadedModel& m) {
  const bool space = tok.encode(" a").size() == 1;
  auto shown = [&](const json& r) {  // context and answer a few-shot example shows
    if (type == "multiple_choice") return strip(r["query"]) + " " + strip(r["choices"][r["gold"].get<int>()]);
    if (type == "schema") return strip(r["context_options"][r["gold"].get<int>()]) + " " + strip(r["continuation"]);
    return strip(r["context"]) + " " + strip(r["continuation"]);
  };
  std::vector<std::vector<RefChoice>> out;
  for (std::size_t i = 0; i < recs.size(); ++i) {
    std::string prefix;
    for (int64_t j : openlm::icl::fewshot_indices(static_cast<int64_t>(recs.size()), k, static_cast<int64_t>(i), 1234))
      prefix += (prefix.empty() ? "" : "\n") + shown(recs[static_cast<std::size_t>(j)]);
    const std::vector<int64_t> pre = prefix.empty() ? std::vector<int64_t>{} : ids(tok, prefix);
    const std::string lead = prefix.empty() ? "" : "\n";
    auto cont = [&](const std::string& c) { return ids(tok, space && c[0] != ' ' ? " " + c : c); };
    auto cat = [&](const std::string& c) {
      auto v = pre;
      auto w = ids(tok, c);
      v.insert(v.end(), w.begin(), w.end());
      return v;
    };
    std::vector<RefChoice> row;
    const json& r = recs[i];
    if (type == "multiple_choice") {
      for (const auto& c : r["choices"]) row.push_back(score(m, cat(rstrip(lead + strip(r["query"]) + " ")), cont(strip(c))));
    } else if (type == "schema") {
      for (const auto& c : r["context_options"])
        row.push_back(score(m, cat(prefix.empty() ? strip(c) : lead + strip(c)), cont(strip(r["continuation"]))));
    } else {
      row.push_back(score(m, cat(rstrip(lead + strip(r["context"]) + " ")), cont(strip(r["continuation"]))));
    }
    out.push_back(row);
  }
  return out;
}

/// Runs `eval --task` and checks every example and the summary against reference().
void check_against_reference(const std::vector<json>& recs, const std::string& type, int64_t k,
                             const std::string& tokenizer) {
  const std::string dir = temp_dir("ref_" + type + "_" + std::to_string(k));
  write_jsonl(dir + "/task.jsonl", recs);
  std::string out;
  Result r = eval(base().run, "--task " + q(dir + "/task.jsonl") + " --tokenizer " + q(tokenizer) + " --num-fewshot " +
                                  std::to_string(k) + " --json --no-record --batch-size 3 --per-example " +
                                  q(dir + "/per.jsonl"),
                  &out);
  ASSERT_EQ(r.rc, 0) << r.out;
  const json sum = last_json(out);
  ASSERT_TRUE(sum.is_object()) << r.out;
  auto m = openlm::load_for_inference(base().run);
  auto tok = openlm::load_tokenizer("auto", tokenizer);
  const auto ref = reference(recs, type, k, *tok, m);
  const auto per = read_jsonl(dir + "/per.jsonl");
  ASSERT_EQ(per.size(), recs.size());
  double acc = 0, acc_sum = 0, inv = 0;
  for (std::size_t i = 0; i < recs.size(); ++i) {
    SCOPED_TRACE(type + " " + std::to_string(k) + "-shot, example " + std::to_string(i));
    ASSERT_EQ(per[i]["choices"].size(), ref[i].size());
    int64_t best = 0, best_sum = 0;
    for (std::size_t c = 0; c < ref[i].size(); ++c) {
      const json& got = per[i]["choices"][c];
      EXPECT_EQ(got["tokens"], ref[i][c].tokens);
      EXPECT_NEAR(got["sum_logprob"].get<double>(), ref[i][c].sum, 1e-4);
      EXPECT_NEAR(got["mean_logprob"].get<double>(), ref[i][c].sum / ref[i][c].tokens, 1e-4);
      EXPECT_EQ(got["greedy_match"], ref[i][c].greedy);
      if (ref[i][c].sum / ref[i][c].tokens > ref[i][best].sum / ref[i][best].tokens) best = static_cast<int64_t>(c);
      if (ref[i][c].sum > ref[i][best_sum].sum) best_sum = static_cast<int64_t>(c);
    }
    const int64_t gold = type == "language_modeling" ? 0 : recs[i]["gold"].get<int64_t>();
    if (type == "language_modeling") best = best_sum = ref[i][0].greedy ? 0 : -1;
    EXPECT_EQ(per[i]["gold"], gold);
    EXPECT_EQ(per[i]["pred"], best);
    EXPECT_EQ(per[i]["pred_sum"], best_sum);
    acc += best == gold;
    acc_sum += best_sum == gold;
    inv += 1.0 / static_cast<double>(ref[i].size());
  }
  const double n = static_cast<double>(recs.size());
  const double rb = type == "language_modeling" ? 0.0 : inv / n;
  EXPECT_EQ(sum["n"], recs.size());
  EXPECT_NEAR(sum["acc"].get<double>(), acc / n, 1e-12);
  EXPECT_NEAR(sum["acc_sum"].get<double>(), acc_sum / n, 1e-12);
  EXPECT_NEAR(sum["random_baseline"].get<double>(), rb, 1e-12);
  EXPECT_NEAR(sum["centered_acc"].get<double>(), (acc / n - rb) / (1 - rb), 1e-12);
  EXPECT_EQ(sum["task"], "task");
}

/// Multiple-choice records over letters and words: choices of several lengths, 3 or 4 of them,
/// surrounding whitespace (stripped), and queries longer than seq_len (truncated from the left).
std::vector<json> mc_records() {
  std::vector<json> v;
  for (int i = 0; i < 7; ++i) {
    json choices = {letters(i + 5, 1), letters(i + 9, 2), "the " + letters(i, 1)};
    if (i % 2) choices.push_back(" ab ");
    std::string query = i == 3 ? letters(0, 40) : i == 5 ? "the cat: " + letters(i, 4) + "  " : letters(i, 5);
    v.push_back({{"query", query}, {"choices", choices}, {"gold", i % 3}});
  }
  return v;
}

}  // namespace

TEST(DownstreamEval, MultipleChoiceScoresEqualThePlainForward) {
  for (int64_t k : {0, 2}) check_against_reference(mc_records(), "multiple_choice", k, base().bytes_tok);
  // A GPT-NeoX-style BPE (" a" is one token): the continuation gets its leading space.
  for (int64_t k : {0, 1}) check_against_reference(mc_records(), "multiple_choice", k, base().neox_tok);
}

TEST(DownstreamEval, SchemaAndLanguageModelingScoresEqualThePlainForward) {
  std::vector<json> schema, lm;
  for (int i = 0; i < 6; ++i) {
    schema.push_back({{"context_options", {letters(i, 4), letters(i + 7, 3), "so " + letters(i + 2, 2)}},
                      {"continuation", letters(i + 4, 3)},
                      {"gold", i % 3}});
    lm.push_back({{"context", i == 2 ? letters(0, 35) : letters(i, 6)}, {"continuation", letters(i + 6, 1 + i % 3)}});
  }
  lm.push_back({{"context", "the " + letters(1, 3)}, {"continuation", "xyz"}});
  for (const std::string& t : {base().bytes_tok, base().neox_tok})
    for (int64_t k : {0, 2}) {
      check_against_reference(schema, "schema", k, t);
      check_against_reference(lm, "language_modeling", k, t);
    }
}

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
