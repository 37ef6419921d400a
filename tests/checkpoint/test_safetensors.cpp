// safetensors container: layout of what we write, and every rejection rule of the reader.
#include "openlm_cpp/checkpoint/safetensors.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "openlm_cpp/checkpoint/atomic_file.h"
#include "openlm_cpp/core/error.h"

namespace st = openlm::safetensors;
namespace fs = std::filesystem;

namespace {

std::string with_header(const std::string& json, const std::string& data = "") {
  std::string out(8, '\0');
  uint64_t n = json.size();
  std::memcpy(out.data(), &n, 8);
  return out + json + data;
}

// Expects parse() to throw DataError whose message names the file and contains `needle`.
void expect_reject(const std::string& bytes, const std::string& needle) {
  try {
    st::parse(bytes.data(), bytes.size(), "bad.safetensors");
    ADD_FAILURE() << "accepted; expected an error containing '" << needle << "'";
  } catch (const openlm::DataError& e) {
    std::string m = e.what();
    EXPECT_EQ(m.rfind("bad.safetensors: ", 0), 0u) << m;
    EXPECT_NE(m.find(needle), std::string::npos) << "message: " << m << "\nexpected: " << needle;
  }
}

std::string tmpdir(const std::string& name) {
  auto d = fs::temp_directory_path() / ("openlm_st_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d.string();
}

}  // namespace

TEST(Safetensors, DtypeTable) {
  EXPECT_EQ(st::dtype_size(st::DType::BF16), 2u);
  EXPECT_EQ(st::dtype_size(st::DType::F64), 8u);
  EXPECT_EQ(st::dtype_size(st::DType::BOOL), 1u);
  EXPECT_EQ(st::dtype_size(st::DType::U32), 4u);
  for (auto n : {"BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16", "I32", "U32",
                 "F32", "F64", "I64", "U64"}) {
    auto d = st::dtype_from_name(n);
    ASSERT_TRUE(d) << n;
    EXPECT_STREQ(st::dtype_name(*d), n);
  }
  EXPECT_FALSE(st::dtype_from_name("f32"));
  EXPECT_FALSE(st::dtype_from_name("FP32"));
}

TEST(Safetensors, EmptyFileLayout) {
  // No tensors: the header is exactly {"__metadata__":{"format":"pt"}} (32 bytes, already aligned).
  std::string img = st::serialize({});
  ASSERT_EQ(img.size(), 40u);
  uint64_t n;
  std::memcpy(&n, img.data(), 8);
  EXPECT_EQ(n, 32u);
  EXPECT_EQ(img.substr(8), R"({"__metadata__":{"format":"pt"}})");
  auto h = st::parse(img.data(), img.size(), "x");
  EXPECT_TRUE(h.tensors.empty());
  EXPECT_EQ(h.metadata.at("format"), "pt");
}

TEST(Safetensors, WriterLayoutOrderPaddingAlignment) {
  std::vector<uint8_t> u8(3, 7);
  std::vector<uint16_t> bf(5, 0x3f80);
  std::vector<double> f64 = {1.0, 2.0};
  std::vector<float> f32 = {1.f, 2.f, 3.f, 4.f};
  std::vector<int64_t> i64 = {-1};
  std::vector<st::TensorBytes> ts = {
      {"z.u8", st::DType::U8, {3}, u8.data(), 3},
      {"b.bf16", st::DType::BF16, {5}, bf.data(), 10},
      {"a.f32", st::DType::F32, {2, 2}, f32.data(), 16},
      {"c.f32", st::DType::F32, {4}, f32.data(), 16},
      {"m.f64", st::DType::F64, {2}, f64.data(), 16},
      {"n.i64", st::DType::I64, {}, i64.data(), 8},
  };
  std::string img = st::serialize(ts, {{"step", "12"}});
  uint64_t n;
  std::memcpy(&n, img.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  std::string text = img.substr(8, n);
  // Padding is spaces after the JSON.
  EXPECT_EQ(text.find_last_not_of(' '), text.find_last_of('}'));
  auto h = st::parse(img.data(), img.size(), "x");
  EXPECT_EQ(h.metadata.at("format"), "pt");
  EXPECT_EQ(h.metadata.at("step"), "12");
  // File order: descending dtype (I64 > F64 > F32 > BF16 > U8), then name.
  std::vector<std::string> order;
  for (auto& t : h.tensors) order.push_back(t.name);
  EXPECT_EQ(order, (std::vector<std::string>{"n.i64", "m.f64", "a.f32", "c.f32", "b.bf16", "z.u8"}));
  // Every tensor starts at a file offset that is a multiple of its item size.
  for (auto& t : h.tensors) EXPECT_EQ((h.data_start() + t.begin) % st::dtype_size(t.dtype), 0u) << t.name;
  // JSON key order: __metadata__ first, then tensors in file order; fields dtype, shape, data_offsets.
  EXPECT_EQ(text.rfind(R"({"__metadata__":{"format":"pt","step":"12"},"n.i64":{"dtype":"I64","shape":[],"data_offsets":[0,8]})", 0), 0u) << text;
  const auto* a = h.find("a.f32");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->shape, (std::vector<uint64_t>{2, 2}));
  EXPECT_EQ(0, std::memcmp(img.data() + h.data_start() + a->begin, f32.data(), 16));
  const auto* s = h.find("n.i64");
  EXPECT_EQ(s->numel(), 1u);
}

TEST(Safetensors, CallerFormatIsKeptAndWriterRejectsBadInput) {
  std::string img = st::serialize({}, {{"format", "mlx"}});
  EXPECT_EQ(st::parse(img.data(), img.size(), "x").metadata.at("format"), "mlx");
  float f[2] = {};
  EXPECT_THROW(st::serialize({{"a", st::DType::F32, {3}, f, 8}}), openlm::Error);       // size mismatch
  EXPECT_THROW(st::serialize({{"a", st::DType::F32, {2}, f, 8}, {"a", st::DType::F32, {2}, f, 8}}),
               openlm::Error);                                                            // duplicate
  EXPECT_THROW(st::serialize({{"__metadata__", st::DType::F32, {2}, f, 8}}), openlm::Error);
  EXPECT_THROW(st::serialize({{"", st::DType::F32, {2}, f, 8}}), openlm::Error);
  EXPECT_THROW(st::serialize({{"\xff", st::DType::F32, {2}, f, 8}}), openlm::Error);
}

TEST(Safetensors, AcceptsForeignButValidFiles) {
  // Unpadded header, leading whitespace, tensors listed out of offset order, zero-size tensors,
  // no metadata: all valid per the reference reader.
  std::string data(12, '\0');
  auto img = with_header(
      R"(  {"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]},"e":{"dtype":"F16","shape":[0,3],"data_offsets":[4,4]},"a":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}})",
      data);
  auto h = st::parse(img.data(), img.size(), "x");
  ASSERT_EQ(h.tensors.size(), 3u);
  EXPECT_EQ(h.tensors[0].name, "a");
  EXPECT_EQ(h.tensors[1].name, "e");
  EXPECT_EQ(h.tensors[2].name, "b");
  EXPECT_FALSE(h.has_metadata);
  EXPECT_EQ(h.data_size, 12u);
  auto null_meta = with_header(R"({"__metadata__":null})");
  EXPECT_FALSE(st::parse(null_meta.data(), null_meta.size(), "x").has_metadata);
}

TEST(Safetensors, RejectsEveryMalformedCase) {
  const std::string f4(4, '\0');
  expect_reject("", "shorter than the 8-byte");
  expect_reject("1234567", "shorter than the 8-byte");
  {
    std::string big(16, '\0');
    uint64_t n = st::kMaxHeaderSize + 1;
    std::memcpy(big.data(), &n, 8);
    expect_reject(big, "exceeds the limit");
  }
  {
    std::string s(16, ' ');
    uint64_t n = 9;  // 8 + 9 > 16
    std::memcpy(s.data(), &n, 8);
    expect_reject(s, "runs past the end of the file");
    n = ~0ull;  // no wrap-around
    std::memcpy(s.data(), &n, 8);
    expect_reject(s, "exceeds the limit");
  }
  expect_reject(with_header("{\"a\xff\":1}"), "not valid UTF-8");
  expect_reject(with_header("{\"a\xed\xa0\x80\":1}"), "not valid UTF-8");  // surrogate
  expect_reject(with_header("{\"a\xc0\xaf\":1}"), "not valid UTF-8");      // overlong
  expect_reject(with_header("{\"a\": "), "not valid JSON");
  expect_reject(with_header("{} x"), "not valid JSON");
  expect_reject(with_header("[]"), "must be a JSON object");
  expect_reject(with_header(R"({"a":{"dtype":"F31","shape":[1],"data_offsets":[0,4]}})", f4), "unknown dtype");
  expect_reject(with_header(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}})", f4),
                "shape product overflows");
  expect_reject(with_header(R"({"a":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,4]}})", f4),
                "byte size overflows");
  expect_reject(with_header(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", std::string(8, '\0')),
                "): gap");
  expect_reject(with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                            std::string(8, '\0')),
                "): overlap");
  expect_reject(with_header(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[8,0]}})", std::string(8, '\0')),
                "gap");  // begin 8 != 0 is reported first
  expect_reject(with_header(R"({"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})",
                            std::string(8, '\0')),
                "end 0 < begin 4");
  expect_reject(with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", f4), "needs 8");
  expect_reject(with_header(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", f4 + "xy"),
                "2 trailing bytes");
  expect_reject(with_header(R"({})", "x"), "1 trailing bytes");
  expect_reject(with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", f4), "truncated");
  expect_reject(with_header(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", f4),
                "duplicate key \"a\"");
  expect_reject(with_header(R"({"a":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}})", f4),
                "duplicate key \"dtype\"");
  expect_reject(with_header(R"({"a":[1,2]})"), "entry must be an object");
  expect_reject(with_header(R"({"a":{"dtype":7,"shape":[1],"data_offsets":[0,4]}})", f4), "'dtype' must be a string");
  expect_reject(with_header(R"({"a":{"dtype":"F32","shape":1,"data_offsets":[0,4]}})", f4), "'shape' must be an array");
  expect_reject(with_header(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", f4), "non-negative integer");
  expect_reject(with_header(R"({"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", f4), "non-negative integer");
  expect_reject(with_header(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}})", f4), "[begin, end]");
  expect_reject(with_header(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,"4"]}})", f4), "data_offsets[1]");
  expect_reject(with_header(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,18446744073709551616]}})", f4),
                "data_offsets[1]");
  expect_reject(with_header(R"({"a":{"shape":[1],"data_offsets":[0,4]}})", f4), "missing 'dtype'");
  expect_reject(with_header(R"({"a":{"dtype":"F32","data_offsets":[0,4]}})", f4), "missing 'shape'");
  expect_reject(with_header(R"({"a":{"dtype":"F32","shape":[1]}})", f4), "missing 'data_offsets'");
  expect_reject(with_header(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}})", f4), "unknown field 'x'");
  expect_reject(with_header(R"({"__metadata__":"pt"})"), "\"__metadata__\" must be an object");
  expect_reject(with_header(R"({"__metadata__":{"format":1}})"), "value for 'format' must be a string");
}

TEST(Safetensors, ParseHeaderLengthAndJsonSeparately) {
  std::string img = st::serialize({});
  EXPECT_EQ(st::parse_header_length(img.data(), img.size(), "x"), 32u);
  EXPECT_THROW(st::parse_header_length(img.data(), 20, "x"), openlm::DataError);
  auto h = st::parse_header_json(std::string_view(img).substr(8), img.size(), "x");
  EXPECT_EQ(h.header_len, 32u);
}

TEST(Safetensors, WriteFileIsAtomicAndCleansUp) {
  auto dir = tmpdir("atomic");
  std::string path = dir + "/w.safetensors";
  std::vector<float> a = {1, 2, 3};
  st::write_file(path, {{"a", st::DType::F32, {3}, a.data(), 12}});
  std::string first = openlm::fs::read_file(path);
  auto h = st::parse(first.data(), first.size(), path);
  ASSERT_EQ(h.tensors.size(), 1u);
  EXPECT_FALSE(fs::exists(path + ".tmp"));

  // A disk-full style failure (RLIMIT_FSIZE with SIGXFSZ ignored gives EFBIG) must report the
  // error, remove the temporary file and keep the previous file intact.
  std::vector<float> big(1 << 16, 5.f);
  struct rlimit old {};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
  auto old_handler = signal(SIGXFSZ, SIG_IGN);
  struct rlimit lim = old;
  lim.rlim_cur = 4096;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &lim), 0);
  std::string msg;
  try {
    st::write_file(path, {{"big", st::DType::F32, {big.size()}, big.data(), big.size() * 4}});
  } catch (const openlm::IoError& e) {
    msg = e.what();
  }
  setrlimit(RLIMIT_FSIZE, &old);
  signal(SIGXFSZ, old_handler);
  EXPECT_NE(msg.find("w.safetensors.tmp"), std::string::npos) << msg;
  EXPECT_NE(msg.find("too large"), std::string::npos) << msg;  // strerror(EFBIG)
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  EXPECT_EQ(openlm::fs::read_file(path), first);

  // write_file_atomic replaces content; an uncommitted AtomicFile leaves nothing behind.
  openlm::fs::write_file_atomic(dir + "/latest", "step_1\n");
  openlm::fs::write_file_atomic(dir + "/latest", "step_2\n");
  EXPECT_EQ(openlm::fs::read_file(dir + "/latest"), "step_2\n");
  {
    openlm::fs::AtomicFile f(dir + "/latest");
    f.write("garbage");
  }
  EXPECT_EQ(openlm::fs::read_file(dir + "/latest"), "step_2\n");
  EXPECT_FALSE(fs::exists(dir + "/latest.tmp"));
  EXPECT_THROW(openlm::fs::read_file(dir + "/missing"), openlm::IoError);
  EXPECT_THROW(openlm::fs::write_file_atomic(dir + "/no/such/dir/x", "x"), openlm::IoError);
  EXPECT_EQ(openlm::fs::parent_dir("a/b/c"), "a/b");
  EXPECT_EQ(openlm::fs::parent_dir("c"), ".");
  EXPECT_EQ(openlm::fs::parent_dir("/c"), "/");
  fs::remove_all(dir);
}

TEST(Safetensors, Utf8Validator) {
  EXPECT_TRUE(st::is_valid_utf8("plain"));
  EXPECT_TRUE(st::is_valid_utf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));
  EXPECT_FALSE(st::is_valid_utf8("\xc3"));
  EXPECT_FALSE(st::is_valid_utf8("\xe2\x82"));
  EXPECT_FALSE(st::is_valid_utf8("\xf4\x90\x80\x80"));  // > U+10FFFF
  EXPECT_FALSE(st::is_valid_utf8("\xe0\x80\xaf"));      // overlong
  EXPECT_FALSE(st::is_valid_utf8("\x80"));
}

TEST(Safetensors, SigkillDuringWriteLeavesACompleteFile) {
  // A writer killed at a random moment leaves `path` holding either the previous file or a
  // complete new one, never a torn file.
  auto dir = tmpdir("kill");
  const std::string path = dir + "/m.safetensors";
  std::vector<float> v1(16, 1.f);
  st::write_file(path, {{"x", st::DType::F32, {v1.size()}, v1.data(), v1.size() * 4}});
  std::vector<float> v2(16 << 20, 2.f);  // 64 MB
  for (int delay_ms : {5, 40, 150}) {
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      for (;;) st::write_file(path, {{"x", st::DType::F32, {v2.size()}, v2.data(), v2.size() * 4}});
    }
    ::usleep(delay_ms * 1000);
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFSIGNALED(status));
    std::string bytes = openlm::fs::read_file(path);
    auto h = st::parse(bytes.data(), bytes.size(), path);  // throws on a torn file
    ASSERT_EQ(h.tensors.size(), 1u);
    const float* x = reinterpret_cast<const float*>(bytes.data() + h.data_start());
    const size_t n = h.tensors[0].numel();
    EXPECT_TRUE(n == v1.size() || n == v2.size()) << n;
    const float want = n == v1.size() ? 1.f : 2.f;
    size_t bad = 0;
    for (size_t i = 0; i < n; ++i) bad += x[i] != want;
    EXPECT_EQ(bad, 0u) << "after " << delay_ms << " ms";
  }
  fs::remove_all(dir);
}
