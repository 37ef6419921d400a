// The loader: global order, per-rank shares, epochs, resume across world sizes, mixing, cropping,
// bad data. Sequences are identified by their first token (test_util.h token_of).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>

#include "data_loader/batch_source.h"
#include "data_loader/manifest.h"
#include "data_loader/tar_format.h"
#include "data_loader/token_codec.h"
#include "openlm_cpp/core/error.h"
#include "test_util.h"

using namespace openlm::data;
using namespace openlm::data::test;
using openlm::ConfigError;
using openlm::DataError;

namespace {

constexpr int kLen = 9;  // seq_len 8 + 1

LoaderOptions options(const std::string& manifest, int64_t global, int64_t micro, int rank = 0, int world = 1) {
  LoaderOptions o;
  o.cfg.manifests = {{manifest, 1.0}};
  o.cfg.num_workers = 0;
  o.seq_len = kLen - 1;
  o.vocab_size = 50432;
  o.global_batch_size = global;
  o.micro_batch_size = micro;
  o.rank = rank;
  o.world_size = world;
  o.seed = 17;
  return o;
}

/// First tokens of every row of the next `n` micro-batches.
std::vector<std::vector<int64_t>> take(BatchSource& src, int n) {
  std::vector<std::vector<int64_t>> out;
  at::Tensor t;
  for (int i = 0; i < n && src.next(t); ++i) {
    EXPECT_EQ(t.scalar_type(), at::kLong);
    EXPECT_EQ(t.dim(), 2);
    EXPECT_EQ(t.size(1), kLen);
    std::vector<int64_t> ids;
    for (int64_t r = 0; r < t.size(0); ++r) ids.push_back(t[r][0].item<int64_t>());
    out.push_back(ids);
  }
  return out;
}

/// Global batches (sorted id lists) seen by all ranks of a world of W, for `batches` batches.
std::vector<std::vector<int64_t>> global_batches(LoaderOptions o, int world, int64_t micro, int batches,
                                                 const nlohmann::json* resume = nullptr) {
  o.world_size = world;
  o.micro_batch_size = micro;
  int64_t accum = o.global_batch_size / (micro * world);
  std::vector<std::vector<int64_t>> g(static_cast<size_t>(batches));
  for (int r = 0; r < world; ++r) {
    o.rank = r;
    auto src = make_batch_source(o);
    if (resume) src->restore(*resume);
    auto mb = take(*src, static_cast<int>(accum * batches));
    EXPECT_EQ(mb.size(), static_cast<size_t>(accum * batches));
    for (size_t i = 0; i < mb.size(); ++i)
      for (auto id : mb[i]) g[i / static_cast<size_t>(accum)].push_back(id);
  }
  for (auto& b : g) std::sort(b.begin(), b.end());
  return g;
}

/// Ordered stream of ids a single rank sees over n micro-batches.
std::vector<int64_t> flat(const std::vector<std::vector<int64_t>>& mb) {
  std::vector<int64_t> v;
  for (auto& m : mb) v.insert(v.end(), m.begin(), m.end());
  return v;
}

}  // namespace

TEST(Loader, MicroBatchShapeAndContent) {
  auto dir = temp_dir("shape");
  auto man = write_synthetic(dir, true, 3, 8, kLen);
  auto src = make_batch_source(options(man, 4, 2));
  at::Tensor t;
  ASSERT_TRUE(src->next(t));
  ASSERT_EQ(t.sizes(), (at::IntArrayRef{2, kLen}));
  for (int64_t r = 0; r < 2; ++r) {
    int64_t g = t[r][0].item<int64_t>();
    for (int64_t c = 0; c < kLen; ++c) EXPECT_EQ(t[r][c].item<int64_t>(), token_of(g, c));
  }
}

TEST(Loader, RankSharesAreDisjointAndCoverEachGlobalBatch) {
  for (bool native : {true, false}) {
    auto dir = temp_dir("shares");
    auto man = write_synthetic(dir, native, 3, 7, kLen);  // 21 sequences, any shard count works
    auto o = options(man, 12, 1);
    auto ref = global_batches(o, 1, 12, 4);
    for (auto [w, micro] : std::vector<std::pair<int, int64_t>>{{1, 3}, {2, 2}, {2, 6}, {3, 1}, {4, 3}, {12, 1}}) {
      auto got = global_batches(o, w, micro, 4);
      EXPECT_EQ(got, ref) << "W=" << w << " micro=" << micro;
    }
    // the first batch lies inside epoch 0: no sequence repeats (later batches straddle epochs)
    EXPECT_EQ(std::set<int64_t>(ref[0].begin(), ref[0].end()).size(), ref[0].size());
  }
}

TEST(Loader, EpochsCoverEverySequenceOnceAndReshuffle) {
  auto dir = temp_dir("epochs");
  auto man = write_synthetic(dir, true, 4, 6, kLen);  // 24 sequences
  auto src = make_batch_source(options(man, 8, 4));
  auto ids = flat(take(*src, 12));  // two epochs
  ASSERT_EQ(ids.size(), 48u);
  std::vector<int64_t> e0(ids.begin(), ids.begin() + 24), e1(ids.begin() + 24, ids.end());
  std::vector<int64_t> all(24);
  for (int i = 0; i < 24; ++i) all[static_cast<size_t>(i)] = i;
  auto s0 = e0, s1 = e1;
  std::sort(s0.begin(), s0.end());
  std::sort(s1.begin(), s1.end());
  EXPECT_EQ(s0, all);
  EXPECT_EQ(s1, all);
  EXPECT_NE(e0, e1);       // reshuffled with seed + epoch
  EXPECT_NE(e0, all);      // shuffled at all
  EXPECT_EQ(src->state()["epoch"], 2);
}

TEST(Loader, StopAtEpochEndDropsTheIncompleteBatch) {
  auto dir = temp_dir("stop");
  auto man = write_synthetic(dir, false, 2, 10, kLen);  // 20 sequences, batches of 8
  auto o = options(man, 8, 4);
  o.cfg.on_epoch_end = "stop";
  for (int workers : {0, 2}) {
    o.cfg.num_workers = workers;
    auto src = make_batch_source(o);
    EXPECT_EQ(take(*src, 100).size(), 4u);  // 2 global batches x accum 2
    at::Tensor t;
    EXPECT_FALSE(src->next(t));
  }
}

TEST(Loader, WorkerThreadsGiveTheSameStream) {
  auto dir = temp_dir("threads");
  auto man = write_synthetic(dir, false, 3, 11, kLen);
  auto o = options(man, 6, 3);
  auto ref = take(*make_batch_source(o), 20);
  o.cfg.num_workers = 3;
  o.cfg.prefetch = 4;
  auto src = make_batch_source(o);
  EXPECT_EQ(take(*src, 20), ref);
  EXPECT_GE(src->wait_seconds(), 0.0);
}

TEST(Loader, ResumeEqualsUninterruptedStream) {
  auto dir = temp_dir("resume");
  auto man = write_synthetic(dir, true, 3, 9, kLen);  // 27 sequences: epochs cross batch boundaries
  auto o = options(man, 6, 3);
  o.cfg.num_workers = 2;
  auto full = flat(take(*make_batch_source(o), 20));
  for (int k : {0, 2, 5, 9}) {
    auto a = make_batch_source(o);
    auto first = flat(take(*a, k * 2));
    nlohmann::json st = nlohmann::json::parse(a->state().dump());  // through text, as a checkpoint would
    auto b = make_batch_source(o);
    b->restore(st);
    auto rest = flat(take(*b, 20 - k * 2));
    first.insert(first.end(), rest.begin(), rest.end());
    EXPECT_EQ(first, full) << "k=" << k;
  }
  // restoring a live loader mid-stream rewinds it
  auto c = make_batch_source(o);
  auto st0 = c->state();
  take(*c, 3);
  c->restore(st0);
  EXPECT_EQ(flat(take(*c, 20)), full);
}

TEST(Loader, ResumeAcrossWorldSizes) {
  auto dir = temp_dir("resume_w");
  auto man = write_synthetic(dir, false, 2, 13, kLen);
  auto o = options(man, 6, 1);
  auto ref = global_batches(o, 1, 6, 8);
  // W=2 trains 3 global batches; rank 0's state resumes a W=1 run and a W=3 run
  o.world_size = 2;
  o.micro_batch_size = 3;
  o.rank = 0;
  auto r0 = make_batch_source(o);
  take(*r0, 3);
  auto st = r0->state();
  EXPECT_EQ(st["global_batch"], 3);
  auto rest1 = global_batches(options(man, 6, 1), 1, 6, 5, &st);
  auto rest3 = global_batches(options(man, 6, 1), 3, 1, 5, &st);
  for (int g = 0; g < 5; ++g) {
    EXPECT_EQ(rest1[static_cast<size_t>(g)], ref[static_cast<size_t>(g + 3)]);
    EXPECT_EQ(rest3[static_cast<size_t>(g)], ref[static_cast<size_t>(g + 3)]);
  }
  // W=1 -> W=3
  auto one = make_batch_source(options(man, 6, 2));
  take(*one, 6);  // 2 global batches
  auto st1 = one->state();
  auto rest = global_batches(options(man, 6, 1), 3, 2, 4, &st1);
  for (int g = 0; g < 4; ++g) EXPECT_EQ(rest[static_cast<size_t>(g)], ref[static_cast<size_t>(g + 2)]);
}

TEST(Loader, MidBatchStateNeedsTheSameLayout) {
  auto dir = temp_dir("midbatch");
  auto man = write_synthetic(dir, true, 1, 20, kLen);
  auto o = options(man, 6, 2);
  auto full = flat(take(*make_batch_source(o), 9));
  auto a = make_batch_source(o);
  auto first = flat(take(*a, 4));  // one full batch (accum 3) + one micro-batch
  auto st = a->state();
  EXPECT_EQ(st["micro_done"], 1);
  auto b = make_batch_source(o);
  b->restore(st);
  auto rest = flat(take(*b, 5));
  first.insert(first.end(), rest.begin(), rest.end());
  EXPECT_EQ(first, full);
  auto c = make_batch_source(options(man, 6, 3));
  EXPECT_THROW(c->restore(st), DataError);
  auto d = make_batch_source(options(man, 12, 3));
  st["micro_done"] = 0;
  EXPECT_THROW(d->restore(st), DataError);  // global batch size changed
}

TEST(Loader, MixesSourcesByWeight) {
  auto dir_a = temp_dir("mix_a"), dir_b = temp_dir("mix_b");
  auto ma = write_synthetic(dir_a, true, 2, 1000, kLen, 0);
  auto mb = write_synthetic(dir_b, false, 2, 500, kLen, 30000);
  auto o = options(ma, 100, 50);
  o.cfg.manifests = {{ma, 0.7}, {mb, 0.3}};
  o.cfg.num_workers = 2;
  auto src = make_batch_source(o);
  auto ids = flat(take(*src, 60));  // 3000 sequences: source b (1000) cycles into its next epoch
  ASSERT_EQ(ids.size(), 3000u);
  double from_a = static_cast<double>(std::count_if(ids.begin(), ids.end(), [](int64_t v) { return v < 30000; }));
  double frac = from_a / 3000.0;
  EXPECT_NEAR(frac, 0.7, 4 * std::sqrt(0.21 / 3000.0));
  auto stats = src->stats();
  EXPECT_NEAR(stats["mix"][0]["achieved"].get<double>(), frac, 1e-12);
  EXPECT_NEAR(stats["mix"][0]["target"].get<double>(), 0.7, 1e-12);
  EXPECT_EQ(stats["sequences"], 3000);
}

TEST(Loader, CropsLongSkipsShortAndWrapsNegativeIds) {
  auto dir = temp_dir("crop");
  // member lengths: 5 (short), 9 (exact), 14 (long, cropped), negative ids in the exact one
  TarWriter w(dir + "/s.tar");
  std::vector<std::vector<int64_t>> members = {
      {1, 2, 3, 4, 5}, {-1, -2, 3, 4, 5, 6, 7, 8, 9}, {100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111, 112, 113}};
  for (size_t i = 0; i < members.size(); ++i) {
    auto js = format_json_int_list(members[i].data(), members[i].size());
    auto gz = gzip_compress(js.data(), js.size());
    w.add("k" + std::to_string(i) + ".json.gz", gz.data(), gz.size());
  }
  w.finish();
  write_manifest(dir + "/manifest.jsonl", {{"s", 3, "", ShardFormat::OpenLMTar}});
  auto o = options(dir + "/manifest.jsonl", 3, 3);
  o.vocab_size = 1000;
  auto src = make_batch_source(o);
  at::Tensor t;
  ASSERT_TRUE(src->next(t));
  bool saw_neg = false, saw_long = false;
  for (int64_t r = 0; r < 3; ++r) {
    int64_t f = t[r][0].item<int64_t>();
    EXPECT_NE(f, 1);  // the short member never appears
    if (f == 999) {
      saw_neg = true;
      EXPECT_EQ(t[r][1].item<int64_t>(), 998);
    } else {
      ASSERT_GE(f, 100);
      ASSERT_LE(f, 105);
      saw_long = true;
      for (int64_t c = 0; c < kLen; ++c) EXPECT_EQ(t[r][c].item<int64_t>(), f + c);  // a contiguous window
    }
  }
  EXPECT_TRUE(saw_neg);
  EXPECT_TRUE(saw_long);
  EXPECT_GE(src->stats()["skipped_short"].get<int64_t>(), 1);
  // the crop offset is a function of the draw: a second run crops identically
  auto again = make_batch_source(o);
  at::Tensor t2;
  ASSERT_TRUE(again->next(t2));
  EXPECT_TRUE(at::equal(t, t2));
}

namespace {

/// A 2-shard tar set where shard part_1's member `victim` is replaced by `bytes` (raw, not gzip).
std::string tar_set_with_bad_member(const std::string& dir, const std::string& member_name, const std::string& bytes) {
  write_synthetic(dir, false, 1, 4, kLen);  // part_0 good
  TarWriter w(dir + "/part_1.tar");
  std::vector<int64_t> ids(kLen);
  for (int i = 0; i < 4; ++i) {
    if (i == 2) {
      w.add(member_name, bytes.data(), bytes.size());
      continue;
    }
    for (int t = 0; t < kLen; ++t) ids[static_cast<size_t>(t)] = token_of(100 + i, t);
    auto js = format_json_int_list(ids.data(), ids.size());
    auto gz = gzip_compress(js.data(), js.size());
    w.add("part_1_" + std::to_string(i) + ".json.gz", gz.data(), gz.size());
  }
  w.finish();
  write_manifest(dir + "/manifest.jsonl", {{"part_0", 4, "", ShardFormat::OpenLMTar}, {"part_1", 4, "", ShardFormat::OpenLMTar}});
  return dir + "/manifest.jsonl";
}

/// Reads a whole epoch; returns the error text ("" if none).
std::string read_epoch(LoaderOptions o, int64_t* skipped = nullptr, int64_t* rows = nullptr) {
  o.cfg.on_epoch_end = "stop";
  try {
    auto src = make_batch_source(o);
    at::Tensor t;
    int64_t n = 0;
    while (src->next(t)) n += t.size(0);
    if (skipped) *skipped = src->stats()["skipped_corrupt"].get<int64_t>();
    if (rows) *rows = n;
    return "";
  } catch (const openlm::Error& e) {
    return e.what();
  }
}

void expect_error_then_skip(const std::string& man, const std::string& needle, int64_t vocab = 50432) {
  auto o = options(man, 2, 1);
  o.vocab_size = vocab;
  for (int workers : {0, 2}) {  // errors surface from next() whether decoded inline or by a worker
    o.cfg.num_workers = workers;
    std::string err = read_epoch(o);
    EXPECT_NE(err.find(needle), std::string::npos) << "error was: " << err;
  }
  o.cfg.skip_corrupt = true;
  o.cfg.num_workers = 2;
  int64_t skipped = 0, rows = 0;
  EXPECT_EQ(read_epoch(o, &skipped, &rows), "");
  EXPECT_GE(skipped, 1);
  EXPECT_EQ(rows % 2, 0);
}

}  // namespace

TEST(LoaderBadData, CorruptGzipMember) {
  auto dir = temp_dir("bad_gz");
  auto gz = gzip_compress("[1, 2, 3, 4, 5, 6, 7, 8, 9]", 27);
  std::string bytes(gz.begin(), gz.end());
  bytes[bytes.size() / 2] ^= 0x40;
  expect_error_then_skip(tar_set_with_bad_member(dir, "bad.json.gz", bytes), "member 'bad.json.gz'");
}

TEST(LoaderBadData, MemberThatIsNotAnIntList) {
  auto dir = temp_dir("bad_list");
  std::string js = "{\"not\": \"a list\"}";
  auto gz = gzip_compress(js.data(), js.size());
  expect_error_then_skip(tar_set_with_bad_member(dir, "obj.json.gz", std::string(gz.begin(), gz.end())),
                         "member 'obj.json.gz'");
}

TEST(LoaderBadData, TruncatedTar) {
  auto dir = temp_dir("bad_trunc");
  auto man = write_synthetic(dir, false, 2, 4, kLen);
  std::string bytes = read_file(dir + "/part_1.tar");
  write_file(dir + "/part_1.tar", bytes.substr(0, 1600));
  expect_error_then_skip(man, "part_1.tar");
}

TEST(LoaderBadData, TokenIdAboveVocabInNativeShard) {
  auto dir = temp_dir("bad_vocab");
  auto man = write_synthetic(dir, true, 2, 4, kLen, 990);  // first tokens 990..997
  expect_error_then_skip(man, ">= vocab_size 995", 995);
}

TEST(LoaderBadData, ManifestCountDisagrees) {
  auto dir = temp_dir("bad_count");
  write_synthetic(dir, false, 2, 4, kLen);
  write_manifest(dir + "/manifest.jsonl", {{"part_0", 4, "", ShardFormat::OpenLMTar}, {"part_1", 6, "", ShardFormat::OpenLMTar}});
  expect_error_then_skip(dir + "/manifest.jsonl", "says shard 'part_1' has 6 sequences");
  // native: detected when the loader opens
  auto dir2 = temp_dir("bad_count_native");
  write_synthetic(dir2, true, 2, 4, kLen);
  write_manifest(dir2 + "/manifest.jsonl", {{"part_0", 3, "", ShardFormat::Native}, {"part_1", 4, "", ShardFormat::Native}});
  EXPECT_THROW(make_batch_source(options(dir2 + "/manifest.jsonl", 2, 1)), DataError);
}

TEST(LoaderBadData, MissingShardIsAlwaysAnError) {
  auto dir = temp_dir("bad_missing");
  auto man = write_synthetic(dir, true, 2, 4, kLen);
  std::remove((dir + "/part_1.olmtok").c_str());
  for (bool skip : {false, true}) {
    auto o = options(man, 2, 1);
    o.cfg.skip_corrupt = skip;
    try {
      make_batch_source(o);
      FAIL();
    } catch (const DataError& e) {
      EXPECT_NE(std::string(e.what()).find("'part_1' is missing"), std::string::npos) << e.what();
    }
  }
}

TEST(LoaderConfig, RejectsBadBatchLayout) {
  auto dir = temp_dir("cfg");
  auto man = write_synthetic(dir, true, 1, 4, kLen);
  EXPECT_THROW(make_batch_source(options(man, 6, 4)), ConfigError);
  EXPECT_THROW(make_batch_source(options(man, 6, 1, 2, 2)), ConfigError);
  auto o = options(man, 4, 1);
  o.cfg.on_epoch_end = "rewind";
  EXPECT_THROW(make_batch_source(o), ConfigError);
  auto o2 = options(man, 4, 1);
  o2.seq_len = 20;  // shard stores 9 tokens per sequence
  EXPECT_THROW(make_batch_source(o2), DataError);
}

TEST(Loader, WithReplacementDrawsFromTheWholeSet) {
  auto dir = temp_dir("repl");
  auto man = write_synthetic(dir, true, 2, 10, kLen);
  auto o = options(man, 10, 10);
  o.cfg.replacement = true;
  auto ids = flat(take(*make_batch_source(o), 10));
  std::set<int64_t> uniq(ids.begin(), ids.end());
  EXPECT_LT(uniq.size(), 20u + 1);
  EXPECT_GT(uniq.size(), 15u);
  // the first 20 draws repeat something (with probability 1 - 20!/20^20)
  EXPECT_LT(std::set<int64_t>(ids.begin(), ids.begin() + 20).size(), 20u);
}

TEST(LoaderConfig, RelativeManifestResolvesAgainstBaseDirAndOtherStoresAreRejected) {
  auto dir = temp_dir("base");
  write_synthetic(dir, true, 1, 4, kLen);
  auto o = options("manifest.jsonl", 2, 1);
  o.base_dir = dir;
  at::Tensor t;
  EXPECT_TRUE(make_batch_source(o)->next(t));
  write_file(dir + "/pipe.jsonl", "{\"shard\": \"pipe:cat /data/x.tar\", \"num_sequences\": 4}\n");
  auto p = options(dir + "/pipe.jsonl", 2, 1);
  EXPECT_THROW(make_batch_source(p), ConfigError);
}

TEST(Loader, StateIsSmallAndNamesTheEpoch) {
  auto dir = temp_dir("state");
  auto man = write_synthetic(dir, true, 2, 5, kLen);
  auto src = make_batch_source(options(man, 4, 2));
  take(*src, 6);  // 3 global batches = 12 draws of 10 sequences: epoch 1
  auto st = src->state();
  EXPECT_EQ(st["epoch"], 1);
  EXPECT_EQ(st["position"], 12);
  EXPECT_EQ(st["drawn"], nlohmann::json::array({12}));
  EXPECT_LT(st.dump().size(), 1024u);
}

TEST(LoaderBadData, ASourceWithNoUsableSequenceFailsInsteadOfLooping) {
  auto dir = temp_dir("all_short");
  auto man = write_synthetic(dir, false, 2, 3, 5);  // every member shorter than seq_len + 1 = 9
  auto o = options(man, 2, 1);
  o.cfg.skip_corrupt = true;
  auto src = make_batch_source(o);
  at::Tensor t;
  try {
    src->next(t);
    FAIL();
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("no usable sequence"), std::string::npos) << e.what();
  }
  EXPECT_EQ(src->stats()["skipped_short"].get<int64_t>(), 6);
}
