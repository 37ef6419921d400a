// Instruction data (fine-tuning): record layout and loss mask, truncation, padding, skipped
// records, errors naming file and line, global batches independent of world size and micro batch,
// exact resume. The encoder is one id per byte, so no tokenizer is needed.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "data_loader/instruction_source.h"
#include "openlm_cpp/core/error.h"
#include "test_util.h"

using namespace openlm::data;
using namespace openlm::data::test;
using openlm::ConfigError;
using openlm::DataError;

namespace {

constexpr int32_t kEos = 1;

std::vector<int32_t> bytes(const std::string& s) {
  std::vector<int32_t> out;
  for (unsigned char c : s) out.push_back(c);
  return out;
}

LoaderOptions options(const std::string& path, int64_t seq_len, int64_t global, int64_t micro, int rank = 0,
                      int world = 1) {
  LoaderOptions o;
  o.cfg.instructions = path;
  o.seq_len = seq_len;
  o.vocab_size = 256;
  o.global_batch_size = global;
  o.micro_batch_size = micro;
  o.rank = rank;
  o.world_size = world;
  o.seed = 5;
  return o;
}

std::unique_ptr<BatchSource> open(const LoaderOptions& o) { return make_instruction_source(o, bytes, kEos); }

std::string jsonl(const std::vector<std::pair<std::string, std::string>>& recs) {
  std::string s;
  for (auto& [p, r] : recs) s += nlohmann::json{{"prompt", p}, {"response", r}}.dump() + "\n";
  return s;
}

std::vector<int64_t> row(const at::Tensor& t, int64_t i) {
  at::Tensor r = t[i].to(at::kLong).contiguous();
  return std::vector<int64_t>(r.data_ptr<int64_t>(), r.data_ptr<int64_t>() + r.numel());
}

/// One delivered sequence: its tokens followed by its mask (so both are compared).
using Seq = std::vector<int64_t>;

/// The next global batch as delivered to all W ranks (rank 0's micro-batches, then rank 1's, ...).
/// Returns false when any rank ran out.
bool global_batch(std::vector<std::unique_ptr<BatchSource>>& ranks, int64_t accum, std::vector<Seq>& out) {
  out.clear();
  for (auto& src : ranks)
    for (int64_t m = 0; m < accum; ++m) {
      at::Tensor t, mask;
      if (!src->next(t, mask)) return false;
      EXPECT_TRUE(mask.defined());
      for (int64_t i = 0; i < t.size(0); ++i) {
        Seq s = row(t, i);
        auto mk = row(mask, i);
        s.insert(s.end(), mk.begin(), mk.end());
        out.push_back(s);
      }
    }
  return true;
}

std::vector<std::unique_ptr<BatchSource>> ranks(const std::string& path, int64_t seq_len, int64_t global,
                                                int64_t micro, int world) {
  std::vector<std::unique_ptr<BatchSource>> v;
  for (int r = 0; r < world; ++r) v.push_back(open(options(path, seq_len, global, micro, r, world)));
  return v;
}

/// 20 distinct records "p<i>" -> "r<i>".
std::string many_records(const std::string& dir) {
  std::vector<std::pair<std::string, std::string>> recs;
  for (int i = 0; i < 20; ++i) recs.push_back({"p" + std::to_string(i), "r" + std::to_string(i)});
  write_file(dir + "/many.jsonl", jsonl(recs));
  return dir + "/many.jsonl";
}

}  // namespace

TEST(InstructionSource, RecordLayoutAndMask) {
  auto dir = temp_dir("sft_layout");
  write_file(dir + "/a.jsonl", "\n" + nlohmann::json{{"q", "ab"}, {"a", "xyz"}, {"other", 3}}.dump() + "\n  \n");
  auto o = options(dir + "/a.jsonl", 8, 1, 1);
  o.cfg.prompt_field = "q";
  o.cfg.response_field = "a";
  auto src = open(o);
  at::Tensor t, m;
  ASSERT_TRUE(src->next(t, m));
  EXPECT_EQ(t.scalar_type(), at::kLong);
  EXPECT_EQ(m.scalar_type(), at::kBool);
  EXPECT_EQ(t.sizes(), (std::vector<int64_t>{1, 9}));
  EXPECT_EQ(m.sizes(), t.sizes());
  // prompt a b, response x y z, eos, then eos padding; the mask covers response + its eos only.
  EXPECT_EQ(row(t, 0), (std::vector<int64_t>{'a', 'b', 'x', 'y', 'z', kEos, kEos, kEos, kEos}));
  EXPECT_EQ(row(m, 0), (std::vector<int64_t>{0, 0, 1, 1, 1, 1, 0, 0, 0}));
  // The plain next() hands out the same tokens (second epoch of a one-record file).
  at::Tensor t2;
  ASSERT_TRUE(src->next(t2));
  EXPECT_TRUE(at::equal(t, t2));
  EXPECT_EQ(src->stats()["records"], 1);
  EXPECT_EQ(src->wait_seconds(), 0.0);
}

TEST(InstructionSource, TruncationPaddingAndSkippedRecords) {
  auto dir = temp_dir("sft_trunc");
  write_file(dir + "/t.jsonl", jsonl({{"abcdef", "ghijkl"},      // truncated: no eos left
                                      {"abcdefghi", "z"},        // prompt fills all 9 slots: skipped
                                      {"abcdefgh", "z"},         // one response token at the last slot
                                      {"", ""},                  // only an eos at position 0: skipped
                                      {"", "q"},                 // response from position 0
                                      {"ab", ""}}));             // empty response: the eos is the target
  auto o = options(dir + "/t.jsonl", 8, 4, 4);
  o.cfg.on_epoch_end = "stop";
  auto src = open(o);
  EXPECT_EQ(src->stats()["skipped_no_response"], 2);
  EXPECT_EQ(src->stats()["truncated"], 2);
  EXPECT_EQ(src->stats()["records"], 4);
  at::Tensor t, m;
  ASSERT_TRUE(src->next(t, m));
  std::map<std::vector<int64_t>, std::vector<int64_t>> got;  // tokens -> mask
  for (int64_t i = 0; i < 4; ++i) got[row(t, i)] = row(m, i);
  const int64_t E = kEos;
  std::map<std::vector<int64_t>, std::vector<int64_t>> want = {
      {{'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i'}, {0, 0, 0, 0, 0, 0, 1, 1, 1}},
      {{'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'z'}, {0, 0, 0, 0, 0, 0, 0, 0, 1}},
      {{'q', E, E, E, E, E, E, E, E}, {1, 1, 0, 0, 0, 0, 0, 0, 0}},
      {{'a', 'b', E, E, E, E, E, E, E}, {0, 0, 1, 0, 0, 0, 0, 0, 0}}};
  EXPECT_EQ(got, want);
  EXPECT_FALSE(src->next(t, m));  // on_epoch_end: stop, and the 4 records made one global batch
}

TEST(InstructionSource, ErrorsNameFileAndLine) {
  auto dir = temp_dir("sft_errors");
  struct Case {
    std::string body, needle;
  };
  const std::string good = jsonl({{"a", "b"}});
  std::vector<Case> cases = {
      {good + good + "{\"prompt\": \"a\", \"response\": \n", "bad JSON"},
      {good + "\n" + "[1, 2]\n", "expected a JSON object"},
      {good + good + "{\"prompt\": \"a\"}\n", "missing field 'response'"},
      {good + "{\"prompt\": 7, \"response\": \"b\"}\n", "field 'prompt' is not a string"},
      {good + good + jsonl({{"a", "\xc3\xbf"}}), "outside the model's vocab_size"},  // byte 0xc3 >= 128
  };
  const int lines[] = {3, 3, 3, 2, 3};
  for (std::size_t i = 0; i < cases.size(); ++i) {
    std::string path = dir + "/bad" + std::to_string(i) + ".jsonl";
    write_file(path, cases[i].body);
    auto o = options(path, 8, 1, 1);
    o.vocab_size = 128;
    try {
      open(o);
      ADD_FAILURE() << "no error for case " << i;
    } catch (const DataError& e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find(path), std::string::npos) << msg;
      EXPECT_NE(msg.find("line " + std::to_string(lines[i]) + ":"), std::string::npos) << msg;
      EXPECT_NE(msg.find(cases[i].needle), std::string::npos) << msg;
    }
  }
  write_file(dir + "/empty.jsonl", "\n\n");
  EXPECT_THROW(open(options(dir + "/empty.jsonl", 8, 1, 1)), DataError);
  write_file(dir + "/skipped.jsonl", jsonl({{"abcdefghijk", "x"}}));
  try {
    open(options(dir + "/skipped.jsonl", 8, 1, 1));
    ADD_FAILURE() << "no error for a file without usable records";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("no usable record"), std::string::npos) << e.what();
  }
  EXPECT_THROW(open(options(dir + "/missing.jsonl", 8, 1, 1)), DataError);
  EXPECT_THROW(make_instruction_source(options(dir + "/skipped.jsonl", 8, 1, 1), bytes, -1), ConfigError);
}

TEST(InstructionSource, GlobalBatchesIndependentOfWorldSizeAndMicroBatch) {
  auto path = many_records(temp_dir("sft_world"));
  auto w1 = ranks(path, 6, 4, 4, 1);
  auto w1m1 = ranks(path, 6, 4, 1, 1);
  auto w2 = ranks(path, 6, 4, 1, 2);
  auto w4 = ranks(path, 6, 4, 1, 4);
  std::vector<std::multiset<Seq>> epochs(2);
  std::vector<std::vector<Seq>> order(2);
  for (int g = 0; g < 10; ++g) {  // two epochs of 20 records
    std::vector<Seq> a, b, c, d;
    ASSERT_TRUE(global_batch(w1, 1, a));
    ASSERT_TRUE(global_batch(w1m1, 4, b));
    ASSERT_TRUE(global_batch(w2, 2, c));
    ASSERT_TRUE(global_batch(w4, 1, d));
    ASSERT_EQ(a.size(), 4u);
    EXPECT_EQ(a, b) << "global batch " << g;
    EXPECT_EQ(a, c) << "global batch " << g;
    EXPECT_EQ(a, d) << "global batch " << g;
    for (auto& s : a) {
      epochs[g / 5].insert(s);
      order[g / 5].push_back(s);
    }
  }
  // Each epoch holds every record once, in a different shuffled order.
  EXPECT_EQ(std::set<Seq>(epochs[0].begin(), epochs[0].end()).size(), 20u);
  EXPECT_EQ(epochs[0], epochs[1]);
  EXPECT_NE(order[0], order[1]);
}

TEST(InstructionSource, StopAtEpochEndDropsTheIncompleteBatch) {
  auto path = many_records(temp_dir("sft_stop"));
  auto o = options(path, 6, 8, 4);
  o.cfg.on_epoch_end = "stop";
  auto src = open(o);
  at::Tensor t;
  int n = 0;
  while (src->next(t)) ++n;
  EXPECT_EQ(n, 4);  // 20 records, 8 per global batch: 2 full batches of 2 micro-batches
}

TEST(InstructionSource, RestoreContinuesExactlyOnAnyWorldSize) {
  auto path = many_records(temp_dir("sft_restore"));
  auto ref = ranks(path, 6, 4, 2, 1);
  std::vector<Seq> b;
  for (int g = 0; g < 7; ++g) ASSERT_TRUE(global_batch(ref, 2, b));  // into the second epoch
  nlohmann::json st = ref[0]->state();
  EXPECT_EQ(st["global_batch"], 7);
  std::vector<std::vector<Seq>> want;
  for (int g = 0; g < 6; ++g) {
    ASSERT_TRUE(global_batch(ref, 2, b));
    want.push_back(b);
  }
  // Same world size, and a different one: both continue with the same global batches.
  for (int world : {1, 2}) {
    auto fresh = ranks(path, 6, 4, 2 / world, world);
    for (auto& s : fresh) s->restore(st);
    for (int g = 0; g < 6; ++g) {
      ASSERT_TRUE(global_batch(fresh, 2, b));  // W=1: 2 micro-batches of 2; W=2: 2 of 1 per rank
      EXPECT_EQ(b, want[g]) << "world " << world << " global batch " << g;
    }
  }
  // Mid-global-batch state (one of two micro-batches consumed) resumes on the same layout.
  auto a = ranks(path, 6, 4, 2, 1);
  at::Tensor t, m;
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(a[0]->next(t, m));
  auto mid = a[0]->state();
  ASSERT_TRUE(a[0]->next(t, m));
  auto c = ranks(path, 6, 4, 2, 1);
  c[0]->restore(mid);
  at::Tensor t2, m2;
  ASSERT_TRUE(c[0]->next(t2, m2));
  EXPECT_TRUE(at::equal(t, t2));
  EXPECT_TRUE(at::equal(m, m2));
  // ...and is refused on another layout; a state from another seed or data is refused too.
  auto w2 = open(options(path, 6, 4, 1, 0, 2));
  EXPECT_THROW(w2->restore(mid), DataError);
  auto other_seed = options(path, 6, 4, 2);
  other_seed.seed = 6;
  EXPECT_THROW(open(other_seed)->restore(st), DataError);
  nlohmann::json pretraining = st;
  pretraining.erase("kind");
  EXPECT_THROW(c[0]->restore(pretraining), DataError);
}

TEST(InstructionSource, PretrainingSourcesHaveNoMask) {
  auto dir = temp_dir("sft_nomask");
  auto manifest = write_synthetic(dir, true, 1, 8, 9);
  LoaderOptions o = options("", 8, 4, 2);
  o.cfg.instructions.clear();
  o.cfg.manifests = {{manifest, 1.0}};
  o.cfg.num_workers = 0;
  auto src = make_batch_source(o);
  at::Tensor t, m = at::ones({1});
  ASSERT_TRUE(src->next(t, m));
  EXPECT_EQ(t.sizes(), (std::vector<int64_t>{2, 9}));
  EXPECT_FALSE(m.defined());
}
