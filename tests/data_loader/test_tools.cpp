// Data preparation and the `openlm data` CLI: shards written by Python's tarfile/gzip/json read back
// exactly, lossless tar <-> native conversion, tokenization, stats and their errors.
#include <gtest/gtest.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>
#include <stdexcept>

#include "data_loader/data_tools.h"
#include "data_loader/manifest.h"
#include "data_loader/native_shard.h"
#include "data_loader/shard_reader.h"
#include "data_loader/tar_format.h"
#include "data_loader/token_codec.h"
#include "openlm_cpp/core/error.h"
#include "openlm_cpp/tokenizer/tokenizer.h"
#include "test_util.h"

using namespace openlm::data;
using namespace openlm::data::test;
using openlm::DataError;

namespace {


std::string cli(const std::string& args, int* rc) {
  std::string out;
  *rc = run(std::string(OPENLM_DATA_CLI) + " " + args, &out);
  return out;
}

nlohmann::json last_json_line(const std::string& out) {
  auto pos = out.rfind("{\"");
  return nlohmann::json::parse(out.substr(pos, out.find('\n', pos) - pos));
}

}  // namespace

TEST(PythonShards, ReadBackExactly) {
  for (const char* flags : {"", "--num-chunks"}) {
    auto dir = temp_dir("py");
    auto man = python_shards(dir, std::string("--shards 3 --per-shard 5 --len 2049 ") + flags);
    auto seqs = read_all_sequences(man);
    ASSERT_EQ(seqs.size(), 15u);
    for (int64_t g = 0; g < 15; ++g) {
      ASSERT_EQ(seqs[static_cast<size_t>(g)].size(), 2049u);
      for (int64_t t = 0; t < 2049; ++t) ASSERT_EQ(seqs[static_cast<size_t>(g)][static_cast<size_t>(t)], token_of(g, t));
    }
    auto st = compute_stats(man, 2);
    EXPECT_EQ(st.num_shards, 3);
    EXPECT_EQ(st.num_sequences, 15);
    EXPECT_EQ(st.seq_len, 2049);
    EXPECT_EQ(st.num_tokens, 15 * 2049);
    EXPECT_EQ(st.format, "openlm-tar");
  }
}

TEST(PythonShards, LegacyTxtMembersReadEndOfTextAsZero) {
  auto dir = temp_dir("pytxt");
  auto man = python_shards(dir, "--shards 1 --per-shard 3 --len 6 --txt");
  auto seqs = read_all_sequences(man);
  ASSERT_EQ(seqs.size(), 3u);
  for (int64_t g = 0; g < 3; ++g)
    for (int64_t t = 0; t < 6; ++t)
      EXPECT_EQ(seqs[static_cast<size_t>(g)][static_cast<size_t>(t)], t == 1 ? 0 : token_of(g, t));
}

TEST(Convert, TarToNativeToTarIsLossless) {
  auto dir = temp_dir("conv");
  auto man = python_shards(dir + "/tar", "--shards 2 --per-shard 4 --len 33");
  auto orig = read_all_sequences(man);
  EXPECT_EQ(convert_manifest(man, dir + "/native", ShardFormat::Native), 8);
  EXPECT_EQ(read_manifest(dir + "/native/manifest.jsonl").entries[0].format, ShardFormat::Native);
  EXPECT_EQ(read_all_sequences(dir + "/native/manifest.jsonl"), orig);
  EXPECT_EQ(convert_manifest(dir + "/native/manifest.jsonl", dir + "/tar2", ShardFormat::OpenLMTar), 8);
  EXPECT_EQ(read_all_sequences(dir + "/tar2/manifest.jsonl"), orig);
  // the Python reader (tarfile + gzip + json) agrees with our tar writer
  std::string out;
  ASSERT_EQ(run("/usr/bin/python3 " + std::string(OPENLM_SOURCE_DIR) + "/bench/py_tar_reader.py --dump '" + dir +
                    "/tar2/manifest.jsonl'",
                &out),
            0)
      << out;
  auto j = nlohmann::json::parse(out);
  ASSERT_EQ(j.size(), 8u);
  for (size_t i = 0; i < 8; ++i) EXPECT_EQ(j[i].get<std::vector<int64_t>>(), orig[i]);
  auto a = compute_stats(man), b = compute_stats(dir + "/native/manifest.jsonl");
  EXPECT_EQ(a.num_tokens, b.num_tokens);
  EXPECT_EQ(b.format, "native");
}

TEST(Convert, UnequalLengthsOrNegativeIdsCannotBecomeNative) {
  auto dir = temp_dir("conv_bad");
  auto write_tar = [&](const std::string& name, const std::vector<std::vector<int64_t>>& members) {
    TarWriter w(dir + "/" + name + ".tar");
    for (size_t i = 0; i < members.size(); ++i) {
      auto js = format_json_int_list(members[i].data(), members[i].size());
      auto gz = gzip_compress(js.data(), js.size());
      w.add("m" + std::to_string(i) + ".json.gz", gz.data(), gz.size());
    }
    w.finish();
  };
  write_tar("uneven", {{1, 2, 3}, {4, 5, 6, 7}});
  write_tar("negative", {{1, 2, 3}, {4, -5, 6}});
  for (const char* name : {"uneven", "negative"}) {
    write_file(dir + "/" + name + ".jsonl", std::string("{\"shard\": \"") + name + "\", \"num_sequences\": 2}\n");
    try {
      convert_manifest(dir + "/" + name + ".jsonl", dir + "/out", ShardFormat::Native);
      FAIL() << name;
    } catch (const DataError& e) {
      EXPECT_NE(std::string(e.what()).find("member 'm1.json.gz'"), std::string::npos) << e.what();
    }
  }
  // the same shards convert to tar (which stores any list) without complaint
  EXPECT_EQ(convert_manifest(dir + "/uneven.jsonl", dir + "/out_tar", ShardFormat::OpenLMTar), 2);
}

TEST(Tokenize, SplitsDocumentsAtBlankLines) {
  auto d = split_documents("a b\nc\n\n \n\nd\r\n\ne\n");
  ASSERT_EQ(d.size(), 3u);
  EXPECT_EQ(d[0], "a b\nc");
  EXPECT_EQ(d[1], "d\r");
  EXPECT_EQ(d[2], "e");
}

namespace {

std::string word_salad(uint32_t seed, int words) {
  static const char* lex[] = {"the", "model", "reads", "tokens", "from", "shards", "while", "ranks", "share",
                              "batches", "quickly", "and", "resume", "exactly", "after", "a", "checkpoint"};
  std::mt19937 rng(seed);
  std::string s;
  for (int i = 0; i < words; ++i) {
    s += lex[rng() % (sizeof lex / sizeof *lex)];
    s += (i % 13 == 12) ? ".\n" : " ";
  }
  return s;
}

/// Trains a small SentencePiece model (BPE, vocab 300, eos id 0) through the project's API.
void train_spm(const std::string& input, const std::string& prefix) {
  openlm::train_sentencepiece(input, prefix, 300);
}

}  // namespace

TEST(Tokenize, TextAndJsonlIntoNativeShards) {
  auto dir = temp_dir("tok");
  std::string corpus = word_salad(1, 20000);
  write_file(dir + "/train.txt", corpus);
  train_spm(dir + "/train.txt", dir + "/sp");
  auto tok = openlm::load_tokenizer("sentencepiece", dir + "/sp.model");
  std::vector<std::string> docs = {word_salad(2, 300), word_salad(3, 50), word_salad(4, 700)};
  write_file(dir + "/a.txt", docs[0] + "\n\n" + docs[1] + "\n");
  write_file(dir + "/b.jsonl", nlohmann::json{{"text", docs[2]}, {"id", 1}}.dump() + "\n");
  TokenizeOptions o;
  o.inputs = {dir + "/a.txt", dir + "/b.jsonl"};
  o.tokenizer_path = dir + "/sp.model";
  o.seq_len = 31;
  o.output_dir = dir + "/out";
  o.shard_sequences = 10;
  auto r = tokenize_to_native(o);
  std::vector<int64_t> stream;
  for (auto& d : docs) {
    std::string text = d;
    while (!text.empty() && text.back() == '\n') text.pop_back();  // split_documents drops the final newline
    auto ids = tok->encode(text);
    stream.insert(stream.end(), ids.begin(), ids.end());
    stream.push_back(tok->eos_id());
  }
  EXPECT_EQ(r.documents, 3);
  EXPECT_EQ(r.tokens, static_cast<int64_t>(stream.size()));
  EXPECT_EQ(r.sequences, static_cast<int64_t>(stream.size()) / 32);
  EXPECT_EQ(r.dropped_tail_tokens, static_cast<int64_t>(stream.size()) % 32);
  EXPECT_EQ(r.shards, (r.sequences + 9) / 10);
  auto seqs = read_all_sequences(dir + "/out/manifest.jsonl");
  ASSERT_EQ(static_cast<int64_t>(seqs.size()), r.sequences);
  for (size_t i = 0; i < seqs.size(); ++i)
    for (size_t t = 0; t < 32; ++t) ASSERT_EQ(seqs[i][t], stream[i * 32 + t]);
  NativeShard s(dir + "/out/shard_00000000.olmtok");
  EXPECT_EQ(s.header().tokenizer, tok->id());
  EXPECT_EQ(s.header().dtype_bytes, 2);
}

TEST(Cli, StatsConvertTokenizeAndErrors) {
  auto dir = temp_dir("cli");
  auto man = python_shards(dir + "/tar", "--shards 2 --per-shard 3 --len 2049");
  int rc = -1;
  auto out = cli("data stats " + man + " --json", &rc);
  ASSERT_EQ(rc, 0) << out;
  auto j = last_json_line(out);
  EXPECT_EQ(j["num_shards"], 2);
  EXPECT_EQ(j["num_sequences"], 6);
  EXPECT_EQ(j["seq_len"], 2049);
  EXPECT_EQ(j["num_tokens"], 6 * 2049);

  out = cli("data convert --input " + man + " --output " + dir + "/nat --format native", &rc);
  ASSERT_EQ(rc, 0) << out;
  out = cli("data stats " + dir + "/nat/manifest.jsonl --json", &rc);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_EQ(last_json_line(out)["num_tokens"], 6 * 2049);
  out = cli("data convert --input " + dir + "/nat/manifest.jsonl --output " + dir + "/tar2 --format openlm-tar", &rc);
  ASSERT_EQ(rc, 0) << out;

  // corrupt shard: flip bytes in the middle of a member's gzip data
  std::string bytes = read_file(dir + "/tar/shard_00001.tar");
  for (size_t i = 700; i < 720; ++i) bytes[i] ^= 0x5a;
  write_file(dir + "/tar/shard_00001.tar", bytes);
  out = cli("data stats " + man + " --json", &rc);
  EXPECT_EQ(rc, 1);
  EXPECT_NE(out.find("shard_00001.tar"), std::string::npos) << out;
  // native checksum catches silent corruption
  std::string nb = read_file(dir + "/nat/shard_00000.olmtok");
  nb[nb.size() - 3] ^= 1;
  write_file(dir + "/nat/shard_00000.olmtok", nb);
  out = cli("data stats " + dir + "/nat/manifest.jsonl --json", &rc);
  EXPECT_EQ(rc, 1);
  EXPECT_NE(out.find("shard_00000.olmtok"), std::string::npos) << out;
  // missing shard
  std::remove((dir + "/tar2/shard_00000.tar").c_str());
  out = cli("data stats " + dir + "/tar2/manifest.jsonl --json", &rc);
  EXPECT_EQ(rc, 1);
  EXPECT_NE(out.find("shard_00000"), std::string::npos) << out;

  // tokenize through the CLI
  write_file(dir + "/train.txt", word_salad(5, 8000));
  train_spm(dir + "/train.txt", dir + "/sp");
  out = cli("data tokenize --input " + dir + "/train.txt --tokenizer " + dir + "/sp.model --seq-len 64 --output " + dir +
                "/tok --shard-sequences 50",
            &rc);
  ASSERT_EQ(rc, 0) << out;
  auto tj = last_json_line(out);
  EXPECT_GT(tj["sequences"].get<int64_t>(), 50);
  out = cli("data stats " + dir + "/tok/manifest.jsonl --json", &rc);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_EQ(last_json_line(out)["seq_len"], 65);
  EXPECT_EQ(last_json_line(out)["num_sequences"], tj["sequences"]);
}
