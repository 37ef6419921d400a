// Torch-free decoding core: token-list scanners, gzip, tar framing, native shard header.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "data_loader/native_shard.h"
#include "data_loader/sampler.h"
#include "data_loader/tar_format.h"
#include "data_loader/token_codec.h"
#include "openlm_cpp/core/error.h"

using namespace openlm::data;
using openlm::DataError;

namespace {

std::vector<int64_t> json_ints(const std::string& s) {
  std::vector<int64_t> v;
  parse_json_int_list(s.data(), s.size(), v, "t");
  return v;
}
std::vector<int64_t> py_ints(const std::string& s) {
  std::vector<int64_t> v;
  parse_python_list(s.data(), s.size(), v, "t");
  return v;
}

/// Builds a ustar archive in memory through TarWriter (via a temp file).
std::string tar_bytes(const std::vector<std::pair<std::string, std::string>>& members) {
  std::string path = ::testing::TempDir() + "/codec_" + std::to_string(::getpid()) + ".tar";
  TarWriter w(path);
  for (auto& [n, d] : members) w.add(n, d.data(), d.size());
  w.finish();
  std::FILE* f = std::fopen(path.c_str(), "rb");
  std::string out;
  char buf[4096];
  size_t k;
  while ((k = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, k);
  std::fclose(f);
  std::remove(path.c_str());
  return out;
}

}  // namespace

TEST(TokenList, ParsesJsonInts) {
  EXPECT_EQ(json_ints("[1, 2, 3]"), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(json_ints(" [ -5 ,0,\n 9223372036854775807 ] \n"), (std::vector<int64_t>{-5, 0, INT64_MAX}));
  EXPECT_EQ(json_ints("[-9223372036854775808]"), (std::vector<int64_t>{INT64_MIN}));
  EXPECT_TRUE(json_ints("[]").empty());
}

TEST(TokenList, FastScannerAgreesWithSlowPathOnRandomLists) {
  std::mt19937_64 rng(7);
  for (int iter = 0; iter < 2000; ++iter) {
    std::vector<int64_t> want;
    std::string s = "[";
    int n = static_cast<int>(rng() % 20);
    for (int k = 0; k < n; ++k) {
      int digits = 1 + static_cast<int>(rng() % 19);
      uint64_t mag = 0;
      for (int d = 0; d < digits; ++d) mag = mag * 10 + (d == 0 ? 1 + rng() % 9 : rng() % 10);
      if (rng() % 5 == 0) mag = rng() % 10;
      int64_t v = static_cast<int64_t>(mag % uint64_t(INT64_MAX));
      if (rng() % 4 == 0) v = -v;
      want.push_back(v);
      if (k) s += (rng() % 3 == 0) ? ",\n  " : ", ";
      s += std::to_string(v);
    }
    s += (rng() % 2) ? "]" : " ]\n";
    EXPECT_EQ(json_ints(s), want) << s;
  }
}

TEST(TokenList, RejectsMalformedJson) {
  for (const char* bad : {"", "[", "[1,", "[1 2]", "[1.5]", "[1e3]", "[\"a\"]", "[[1]]", "[1] x", "1, 2",
                          "[9223372036854775808]", "[-]", "[,]", "[1,]", "[1, ]", "[12345678901234567890123]", "[1234567, x]",
                          "[-1234567.5]", "[1234567e5, 1]"}) {
    EXPECT_THROW(json_ints(bad), DataError) << bad;
  }
}

TEST(TokenList, PythonListReadsNonIntsAsZero) {
  EXPECT_EQ(py_ints("[5, '<|endoftext|>', 7, \"x\\\"y\", None]"), (std::vector<int64_t>{5, 0, 7, 0, 0}));
  EXPECT_EQ(py_ints("[1, 2,]"), (std::vector<int64_t>{1, 2}));
  EXPECT_THROW(py_ints("[1, 'abc"), DataError);
  EXPECT_THROW(py_ints("[1; 2]"), DataError);
}

TEST(TokenList, FormatRoundTrips) {
  std::vector<int64_t> v{0, -3, 50431, 123456789};
  std::string s = format_json_int_list(v.data(), v.size());
  EXPECT_EQ(s, "[0, -3, 50431, 123456789]");
  EXPECT_EQ(json_ints(s), v);
}

TEST(Gzip, RoundTripAndCorruption) {
  std::string text(100000, 'a');
  for (size_t i = 0; i < text.size(); i += 7) text[i] = static_cast<char>('0' + i % 10);
  auto gz = gzip_compress(text.data(), text.size());
  std::vector<uint8_t> out;
  gunzip(gz.data(), gz.size(), out, "m");
  EXPECT_EQ(std::string(out.begin(), out.end()), text);
  // two concatenated gzip members inflate to the concatenation
  auto gz2 = gz;
  gz2.insert(gz2.end(), gz.begin(), gz.end());
  gunzip(gz2.data(), gz2.size(), out, "m");
  EXPECT_EQ(out.size(), 2 * text.size());
  auto bad = gz;
  bad[bad.size() / 2] ^= 0x55;
  EXPECT_THROW(gunzip(bad.data(), bad.size(), out, "m"), DataError);
  EXPECT_THROW(gunzip(gz.data(), gz.size() / 2, out, "m"), DataError);
  try {
    gunzip(gz.data(), 10, out, "shard 'x' member 'y'");
    FAIL();
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("member 'y'"), std::string::npos);
  }
}

TEST(Tar, WriterAndIndexAgree) {
  std::string longname(150, 'n');
  longname += ".json.gz";
  std::string bytes = tar_bytes({{"a.json.gz", "hello"}, {"b.txt", std::string(512, 'x')}, {longname, "z"}});
  EXPECT_EQ(bytes.size() % 10240, 0u);
  auto idx = index_tar_buffer(bytes.data(), bytes.size(), "t");
  ASSERT_EQ(idx.size(), 3u);
  EXPECT_EQ(idx[0].name, "a.json.gz");
  EXPECT_EQ(bytes.substr(idx[0].offset, idx[0].size), "hello");
  EXPECT_EQ(idx[1].size, 512u);
  EXPECT_EQ(idx[2].name, longname);
  EXPECT_EQ(bytes.substr(idx[2].offset, idx[2].size), "z");
}

TEST(Tar, TruncatedAndCorruptArchivesNameTheShard) {
  std::string bytes = tar_bytes({{"a.json.gz", std::string(3000, 'q')}, {"b.json.gz", "x"}});
  // cut inside the first member's data
  try {
    index_tar_buffer(bytes.data(), 512 + 1000, "shard-7");
    FAIL();
  } catch (const DataError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("shard-7"), std::string::npos);
    EXPECT_NE(m.find("truncated"), std::string::npos);
  }
  // cut inside a header
  EXPECT_THROW(index_tar_buffer(bytes.data(), 512 + 3072 + 100, "s"), DataError);
  // a flipped byte in a header breaks its checksum
  std::string bad = bytes;
  bad[10] ^= 1;
  EXPECT_THROW(index_tar_buffer(bad.data(), bad.size(), "s"), DataError);
  // without the end-of-archive blocks the members are still complete
  auto idx = index_tar_buffer(bytes.data(), 512 + 3072 + 512 + 512, "s");
  EXPECT_EQ(idx.size(), 2u);
}

TEST(Tar, GarbageIsAnErrorNotACrash) {
  std::string junk(2048, '\x7f');
  EXPECT_THROW(index_tar_buffer(junk.data(), junk.size(), "s"), DataError);
  std::string zeros(1024, '\0');
  EXPECT_TRUE(index_tar_buffer(zeros.data(), zeros.size(), "s").empty());
}

TEST(NativeHeader, EncodeParseAndValidate) {
  NativeHeader h;
  h.dtype_bytes = 4;
  h.seq_len = 2049;
  h.count = 3;
  h.tokenizer = "sp:abc";
  h.checksum = 0x0123456789abcdefULL;
  std::string head = encode_native_header(h);
  EXPECT_EQ(head.size() % 64, 0u);
  uint64_t fsize = h.data_offset + 3 * 2049 * 4;
  auto p = parse_native_header(reinterpret_cast<const uint8_t*>(head.data()), head.size(), fsize, "n");
  EXPECT_EQ(p.dtype_bytes, 4);
  EXPECT_EQ(p.seq_len, 2049);
  EXPECT_EQ(p.count, 3);
  EXPECT_EQ(p.tokenizer, "sp:abc");
  EXPECT_EQ(p.checksum, h.checksum);
  EXPECT_EQ(p.data_offset, h.data_offset);
  // wrong size (truncated or count mismatch), bad magic
  EXPECT_THROW(parse_native_header(reinterpret_cast<const uint8_t*>(head.data()), head.size(), fsize - 4, "n"),
               DataError);
  std::string bad = head;
  bad[0] = 'X';
  EXPECT_THROW(parse_native_header(reinterpret_cast<const uint8_t*>(bad.data()), bad.size(), fsize, "n"), DataError);
  EXPECT_EQ(native_dtype_bytes(50432), 2);
  EXPECT_EQ(native_dtype_bytes(65536), 2);
  EXPECT_EQ(native_dtype_bytes(65537), 4);
}

TEST(NativeShard, WriteReadVerify) {
  std::string path = ::testing::TempDir() + "/ns_" + std::to_string(::getpid()) + kNativeExt;
  {
    NativeShardWriter w(path, 2, 4, "tok");
    std::vector<int64_t> a{1, 2, 3, 65535}, b{0, 7, 8, 9};
    w.append(a.data(), 4);
    w.append(b.data(), 4);
    std::vector<int64_t> big{1, 2, 3, 65536};
    EXPECT_THROW(w.append(big.data(), 4), DataError);
    EXPECT_THROW(w.append(a.data(), 3), DataError);
    w.finish();
  }
  NativeShard s(path);
  EXPECT_EQ(s.count(), 2);
  std::vector<int64_t> out(4);
  s.read(0, 0, 4, out.data());
  EXPECT_EQ(out, (std::vector<int64_t>{1, 2, 3, 65535}));
  s.read(1, 1, 2, out.data());
  EXPECT_EQ(out[0], 7);
  EXPECT_EQ(out[1], 8);
  s.verify_checksum();
  EXPECT_EQ(s.max_id(), 65535);
  std::remove(path.c_str());
}

TEST(Sampler, KeyedPermutationIsABijectionForAnySize) {
  for (uint64_t n : {1ULL, 2ULL, 3ULL, 17ULL, 1000ULL, 4096ULL, 65537ULL}) {
    for (uint64_t key : {0ULL, 1ULL, 0xdeadbeefULL}) {
      KeyedPermutation p(n, key);
      std::vector<char> seen(n, 0);
      for (uint64_t i = 0; i < n; ++i) {
        uint64_t v = p(i);
        ASSERT_LT(v, n);
        ASSERT_FALSE(seen[v]) << "n=" << n << " key=" << key;
        seen[v] = 1;
      }
    }
  }
  // different keys give different orders
  KeyedPermutation a(1000, 1), b(1000, 2);
  int same = 0;
  for (uint64_t i = 0; i < 1000; ++i) same += a(i) == b(i);
  EXPECT_LT(same, 20);
}

TEST(Sampler, PlannerIsAPureFunctionOfSeedAndPosition) {
  StreamPlanner p({10, 30}, {0.25, 0.75}, 5, false, false);
  StreamState s1 = p.start(), s2 = p.start();
  std::vector<Draw> a, b;
  Draw d;
  for (int i = 0; i < 400; ++i) {
    ASSERT_TRUE(p.next(s1, d));
    a.push_back(d);
  }
  for (int i = 0; i < 400; ++i) {
    ASSERT_TRUE(p.next(s2, d));
    b.push_back(d);
  }
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].source, b[i].source);
    EXPECT_EQ(a[i].item, b[i].item);
    EXPECT_EQ(p.source_at(static_cast<int64_t>(i)), a[i].source);
  }
  EXPECT_EQ(s1.position, 400);
  EXPECT_EQ(s1.drawn[0] + s1.drawn[1], 400);
  // stop at epoch end: the stream ends when the first source runs out
  StreamPlanner q({3}, {1.0}, 5, false, true);
  StreamState s = q.start();
  int n = 0;
  while (q.next(s, d)) ++n;
  EXPECT_EQ(n, 3);
}
