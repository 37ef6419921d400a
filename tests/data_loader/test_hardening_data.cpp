// `openlm data convert` run as a user runs it (issue 13, A.6): input shards that share a file name
// must all survive as distinct output shards, and an output manifest that does not hold what the
// input held must fail loudly instead of exiting 0.
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "data_loader/manifest.h"
#include "data_loader/shard_reader.h"
#include "data_loader/token_codec.h"
#include "test_util.h"

using namespace openlm::data;
using namespace openlm::data::test;

namespace {


std::string cli(const std::string& args, int* rc) {
  std::string out;
  *rc = run(std::string(OPENLM_DATA_CLI) + " " + args, &out);
  return out;
}

/// dir/a/part_0.* (3 sequences) and dir/b/part_0.* (2 other sequences), listed by dir/manifest.jsonl
/// as "a/part_0" and "b/part_0": two shards with one file name.
std::string same_named_shards(const std::string& dir, bool native) {
  run("mkdir -p '" + dir + "/a' '" + dir + "/b'");
  write_synthetic(dir + "/a", native, 1, 3, 6, 0);
  write_synthetic(dir + "/b", native, 1, 2, 6, 100);
  write_file(dir + "/manifest.jsonl",
             "{\"shard\": \"a/part_0\", \"num_sequences\": 3}\n{\"shard\": \"b/part_0\", \"num_sequences\": 2}\n");
  return dir + "/manifest.jsonl";
}

}  // namespace

TEST(ConvertHardening, ShardsSharingAFileNameAllSurvive) {
  for (bool native_in : {false, true})
    for (const char* to : {"native", "openlm-tar"}) {
      SCOPED_TRACE(std::string(native_in ? "native" : "tar") + " -> " + to);
      auto dir = temp_dir("convert_same_name");
      auto man = same_named_shards(dir, native_in);
      int rc = 0;
      auto out = cli("data convert --input '" + man + "' --output '" + dir + "/out' --format " + to, &rc);
      ASSERT_EQ(rc, 0) << out;
      Manifest m = read_manifest(dir + "/out/manifest.jsonl");
      ASSERT_EQ(m.entries.size(), 2u) << read_file(dir + "/out/manifest.jsonl");
      std::set<std::string> paths;
      for (const auto& e : m.entries) paths.insert(e.path);
      EXPECT_EQ(paths.size(), 2u) << "one output shard listed twice: " << read_file(dir + "/out/manifest.jsonl");
      EXPECT_EQ(m.total_sequences(), 5);
      // exactly the input's sequences, in the input's order
      EXPECT_EQ(read_all_sequences(dir + "/out/manifest.jsonl"), read_all_sequences(man));
      EXPECT_NE(out.find("shares its file name"), std::string::npos) << out;
    }
}

TEST(ConvertHardening, OutputThatDoesNotMatchTheInputFailsLoudly) {
  // A stale part_0.tar in the output directory shadows the part_0.olmtok convert writes (the
  // manifest names shards without extension and .tar is looked up first): the output manifest would
  // then describe other data. convert must notice and exit non-zero naming the stale file.
  auto dir = temp_dir("convert_stale");
  auto man = write_synthetic(dir, /*native=*/true, 1, 4, 6);
  run("mkdir -p '" + dir + "/out'");
  write_synthetic(dir + "/out", /*native=*/false, 1, 1, 6, 500);  // out/part_0.tar: 1 sequence
  int rc = 0;
  auto out = cli("data convert --input '" + man + "' --output '" + dir + "/out' --format native", &rc);
  EXPECT_NE(rc, 0) << out;
  EXPECT_NE(out.find(dir + "/out/part_0.tar"), std::string::npos) << out;
  EXPECT_NE(out.find("stale"), std::string::npos) << out;
}
