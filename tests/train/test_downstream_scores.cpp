// Downstream (CORE-style) evaluation scores through the `openlm` binary equal an independent
// computation from the model's plain forward: multiple_choice, schema and language_modeling, with
// few-shot prompts, truncation, and a byte-level BPE that needs a prefix space.
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
