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
  EXPECT_EQ(d[1], "d");  // a CRLF line's '\r' is dropped, as prepare-data reads text files
  EXPECT_EQ(d[2], "e");
}

TEST(Cli, StatsConvertAndErrors) {
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

  // `data tokenize` is gone: it names its replacement
  out = cli("data tokenize --input x.txt", &rc);
  EXPECT_EQ(rc, 1) << out;
  EXPECT_NE(out.find("openlm prepare-data"), std::string::npos) << out;
}
