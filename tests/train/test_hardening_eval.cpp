// Issue 13 B.7 through the `openlm` binary: `eval` scores every token of a long line in
// sliding windows (checked against the logits of each window computed here), refuses empty and
// 1-token lines by line number, and `--data MANIFEST` scores a manifest's sequences like `--tokens`.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ATen/ATen.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "data_loader/manifest.h"
#include "data_loader/shard_reader.h"
#include "openlm_cpp/checkpoint/atomic_file.h"
#include "openlm_cpp/core/recipe.h"
#include "openlm_cpp/train/inference.h"
#include "train_fixtures.h"

namespace stdfs = std::filesystem;
using openlm::testing::temp_dir;

namespace {

using namespace openlm::testing;  // openlm_bin, sh, q, slurp, has, snapshot, temp_dir, ...

const std::string kBin = openlm_bin();

/// The last line of `out` parsed as JSON (null when it is not).
nlohmann::json last_json(const std::string& out) {
  std::string s = out;
  while (!s.empty() && s.back() == '\n') s.pop_back();
  auto j = nlohmann::json::parse(s.substr(s.rfind('\n') == std::string::npos ? 0 : s.rfind('\n') + 1), nullptr, false);
  return j.is_discarded() ? nlohmann::json() : j;
}

/// A finished 3-step tiny run (seq_len 16, vocab 64) and its manifest, trained once.
struct Base {
  std::string root, manifest, run;
};
const Base& base() {
  static const Base base_ = [] {
    Base b;
    b.root = temp_dir("eval_base");
    b.manifest = openlm::testing::write_counting_shards(b.root + "/data", 12, 16, 64);
    openlm::TrainConfig c = openlm::testing::tiny_recipe(b.manifest, b.root + "/run", 3);
    std::ofstream(b.root + "/recipe.json") << openlm::to_json(c).dump(2);
    b.run = b.root + "/run";
    Result r = sh("OMP_NUM_THREADS=1 " + q(kBin) + " train " + q(b.root + "/recipe.json") + " --run-dir " + q(b.run));
    EXPECT_EQ(r.rc, 0) << r.out;
    return b;
  }();
  return base_;
}

void write_lines(const std::string& path, const std::vector<std::vector<int64_t>>& seqs) {
  std::ofstream f(path);
  for (const auto& s : seqs) {
    for (std::size_t i = 0; i < s.size(); ++i) f << (i ? " " : "") << s[i];
    f << "\n";
  }
}

Result eval(const std::string& args) { return sh("OMP_NUM_THREADS=1 " + q(kBin) + " eval " + q(base().run) + " " + args); }

/// Summed next-token cross entropy of targets [from, to) of `s` given inputs s[begin .. to-1),
/// from the model's logits of that window (sequence_logits: what `eval --logits-out` writes).
double window_nll(openlm::LoadedModel& m, const std::vector<int64_t>& s, int64_t begin, int64_t from, int64_t to) {
  std::vector<int64_t> in(s.begin() + begin, s.begin() + to - 1);
  at::Tensor logits = openlm::sequence_logits(*m.model, {in})[0];  // [to-1-begin, V]
  at::Tensor lp = at::log_softmax(logits.to(at::kDouble), -1);
  double sum = 0;
  for (int64_t j = from; j < to; ++j) sum -= lp[j - 1 - begin][s[j]].item<double>();
  return sum;
}

}  // namespace

// ---- B.7: eval never truncates or reports silently --------------------------------------------

TEST(EvalTokens, LongLineIsScoredOverAllItsTokensInWindows) {
  const std::string dir = temp_dir("eval_long");
  std::vector<int64_t> s;
  for (int64_t i = 0; i < 40; ++i) s.push_back((i * 7 + 3) % 64);  // 40 tokens, seq_len 16
  write_lines(dir + "/long.txt", {s});
  auto m = openlm::load_for_inference(base().run);

  // default stride = seq_len: windows [0,17) [16,33) [32,40): targets 1..16, 17..32, 33..39
  Result r = eval("--tokens " + q(dir + "/long.txt") + " --json");
  ASSERT_EQ(r.rc, 0) << r.out;
  auto j = last_json(r.out);
  ASSERT_TRUE(j.is_object()) << r.out;
  EXPECT_EQ(j["tokens"], 39) << r.out;
  EXPECT_EQ(j["windows"], 3) << r.out;
  const double want = (window_nll(m, s, 0, 1, 17) + window_nll(m, s, 16, 17, 33) + window_nll(m, s, 32, 33, 40)) / 39;
  EXPECT_NEAR(j["loss"].get<double>(), want, 1e-5) << r.out;

  // stride 8: windows start at 0, 8, 16, 24; each scores the targets past the previous window's end
  r = eval("--tokens " + q(dir + "/long.txt") + " --json --stride 8");
  ASSERT_EQ(r.rc, 0) << r.out;
  j = last_json(r.out);
  EXPECT_EQ(j["tokens"], 39) << r.out;
  EXPECT_EQ(j["windows"], 4) << r.out;
  const double want8 = (window_nll(m, s, 0, 1, 17) + window_nll(m, s, 8, 17, 25) + window_nll(m, s, 16, 25, 33) +
                        window_nll(m, s, 24, 33, 40)) / 39;
  EXPECT_NEAR(j["loss"].get<double>(), want8, 1e-5) << r.out;
  EXPECT_GT(std::abs(want8 - want), 1e-6);  // more context changes the score: the stride is applied

  // the windows' sum: the same tokens cut into lines of at most seq_len + 1 give the same total
  write_lines(dir + "/cut.txt", {std::vector<int64_t>(s.begin(), s.begin() + 17),
                                 std::vector<int64_t>(s.begin() + 16, s.begin() + 33),
                                 std::vector<int64_t>(s.begin() + 32, s.end())});
  Result c = eval("--tokens " + q(dir + "/cut.txt") + " --json");
  ASSERT_EQ(c.rc, 0) << c.out;
  EXPECT_EQ(last_json(c.out)["tokens"], 39);
  EXPECT_NEAR(last_json(c.out)["loss"].get<double>(), want, 1e-5);

  // a stride beyond seq_len would skip tokens: refused naming the option
  r = eval("--tokens " + q(dir + "/long.txt") + " --stride 17");
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_TRUE(has(r.out, "--stride")) << r.out;
}

TEST(EvalTokens, EmptyAndOneTokenLinesAreRefusedByLineNumber) {
  const std::string dir = temp_dir("eval_short");
  std::ofstream(dir + "/one.txt") << "1 2 3\n5\n";
  Result r = eval("--tokens " + q(dir + "/one.txt"));
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_TRUE(has(r.out, dir + "/one.txt:2: 1 token")) << r.out;
  EXPECT_FALSE(has(r.out, "loss")) << r.out;

  std::ofstream(dir + "/empty.txt") << "1 2 3\n4 5 6\n\n7 8\n";
  r = eval("--tokens " + q(dir + "/empty.txt"));
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_TRUE(has(r.out, dir + "/empty.txt:3: empty line")) << r.out;

  std::ofstream(dir + "/none.txt") << "";
  r = eval("--tokens " + q(dir + "/none.txt"));
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_TRUE(has(r.out, "no token sequences")) << r.out;

  std::ofstream(dir + "/vocab.txt") << "1 2 3\n4 64\n";
  r = eval("--tokens " + q(dir + "/vocab.txt"));
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_TRUE(has(r.out, dir + "/vocab.txt:2: token id 64 outside the vocabulary")) << r.out;
}

TEST(EvalData, ManifestGivesTheLossOfTheSameSequencesAsTokens) {
  const std::string dir = temp_dir("eval_data");
  // the manifest's sequences, in manifest order, as a token file
  std::vector<std::vector<int64_t>> seqs;
  openlm::data::DecodeScratch scratch;
  for (const auto& e : openlm::data::read_manifest(base().manifest).entries) {
    auto rd = openlm::data::open_shard(e);
    for (int64_t i = 0; i < rd->size(); ++i) {
      seqs.emplace_back();
      rd->read(i, seqs.back(), scratch);
    }
  }
  ASSERT_EQ(seqs.size(), 12u);
  ASSERT_EQ(seqs[0].size(), 17u);
  write_lines(dir + "/all.txt", seqs);
  write_lines(dir + "/first5.txt", std::vector<std::vector<int64_t>>(seqs.begin(), seqs.begin() + 5));

  Result t = eval("--tokens " + q(dir + "/all.txt") + " --json");
  Result d = eval("--data " + q(base().manifest) + " --json");
  ASSERT_EQ(t.rc, 0) << t.out;
  ASSERT_EQ(d.rc, 0) << d.out;
  EXPECT_EQ(last_json(d.out)["sequences"], 12) << d.out;
  EXPECT_EQ(last_json(d.out)["tokens"], 12 * 16) << d.out;
  EXPECT_NEAR(last_json(d.out)["loss"].get<double>(), last_json(t.out)["loss"].get<double>(), 1e-9);

  t = eval("--tokens " + q(dir + "/first5.txt") + " --json");
  d = eval("--data " + q(base().manifest) + " --max-sequences 5 --json");
  ASSERT_EQ(t.rc, 0) << t.out;
  ASSERT_EQ(d.rc, 0) << d.out;
  EXPECT_EQ(last_json(d.out)["sequences"], 5) << d.out;
  EXPECT_NEAR(last_json(d.out)["loss"].get<double>(), last_json(t.out)["loss"].get<double>(), 1e-9);

  // --tokens and --data exclude each other; one of them is required
  EXPECT_EQ(eval("--data " + q(base().manifest) + " --tokens " + q(dir + "/all.txt")).rc, 2);
  Result none = eval("");
  EXPECT_NE(none.rc, 0);
  EXPECT_TRUE(has(none.out, "--tokens")) << none.out;
}
