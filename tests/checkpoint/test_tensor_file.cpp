// at::Tensor <-> safetensors: round trips for every dtype, independent Python reader/writer
// (json + struct only), zero-copy loads, sharded sets with an index.
#include "openlm_cpp/checkpoint/tensor_file.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "openlm_cpp/checkpoint/atomic_file.h"
#include "openlm_cpp/core/error.h"
#include "../common/test_util.h"
#include "../common/tensor_util.h"

using namespace openlm::checkpoint;
namespace fs = std::filesystem;

namespace {

std::string tmpdir(const std::string& name) { return openlm::test_util::fresh_dir("tf", name); }

std::string run_python(const std::string& dir, const std::string& script, const std::string& args) {
  return openlm::test_util::run_python(dir, script, args, "script.py");
}

using openlm::test_util::same_bytes;

// An independent reader: json + struct, checks the layout rules and prints every value.
const char* kPyReader = R"PY(
import json, struct, sys
b = open(sys.argv[1], 'rb').read()
n, = struct.unpack('<Q', b[:8])
assert n % 8 == 0, 'header length not a multiple of 8'
raw_hdr = b[8:8 + n]
body = raw_hdr.rstrip(b' ')
assert body.endswith(b'}'), 'padding must be trailing spaces'
h = json.loads(raw_hdr.decode('utf-8'))
assert list(h.keys())[0] == '__metadata__', 'metadata first'
meta = h.pop('__metadata__')
assert meta['format'] == 'pt'
data = b[8 + n:]
size = {'BOOL': 1, 'U8': 1, 'I8': 1, 'I16': 2, 'F16': 2, 'BF16': 2, 'I32': 4, 'F32': 4, 'F64': 8, 'I64': 8}
code = {'BOOL': '?', 'U8': 'B', 'I8': 'b', 'I16': 'h', 'F16': 'e', 'I32': 'i', 'F32': 'f', 'F64': 'd', 'I64': 'q'}
cur = 0
out = {}
for name, e in sorted(h.items(), key=lambda kv: kv[1]['data_offsets']):
    s, t = e['data_offsets']
    assert s == cur, name
    numel = 1
    for d in e['shape']:
        numel *= d
    assert t - s == numel * size[e['dtype']], name
    assert (8 + n + s) % size[e['dtype']] == 0, 'misaligned ' + name
    raw = data[s:t]
    if e['dtype'] == 'BF16':
        vals = [struct.unpack('<f', struct.pack('<I', u << 16))[0] for u in struct.unpack('<%dH' % numel, raw)]
    else:
        vals = list(struct.unpack('<%d%s' % (numel, code[e['dtype']]), raw))
    out[name] = {'dtype': e['dtype'], 'shape': e['shape'], 'values': [float(v) for v in vals]}
    cur = t
assert cur == len(data), 'trailing bytes'
print(json.dumps({'meta': meta, 'tensors': out, 'order': [k for k in h.keys()]}))
)PY";

// An independent writer: unpadded header, keys out of offset order, unaligned data.
const char* kPyWriter = R"PY(
import json, struct, sys
tensors = [
    ('w', 'F32', [2, 2], struct.pack('<4f', 1.0, -2.0, 0.5, 8.0)),
    ('ids', 'I64', [3], struct.pack('<3q', -5, 0, 1 << 50)),
    ('h', 'BF16', [3], struct.pack('<3H', 0x3f80, 0xc000, 0x4049)),
    ('x', 'F16', [2], struct.pack('<2e', 1.5, -0.25)),
    ('m', 'U8', [4], bytes([0, 1, 254, 255])),
    ('s', 'F64', [], struct.pack('<d', -1e300)),
]
hdr = {}
off = 0
blob = b''
for name, dt, shape, raw in tensors:
    hdr[name] = {'dtype': dt, 'shape': shape, 'data_offsets': [off, off + len(raw)]}
    off += len(raw)
    blob += raw
items = list(hdr.items())[::-1] + [('__metadata__', {'format': 'pt', 'producer': 'python'})]
text = json.dumps(dict(items)).encode()
open(sys.argv[1], 'wb').write(struct.pack('<Q', len(text)) + text + blob)
)PY";

NamedTensors every_dtype() {
  NamedTensors ts;
  ts.emplace_back("f32", (at::arange(6, at::kFloat) * 0.25 - 0.5).reshape({2, 3}));
  ts.emplace_back("f64", at::tensor(std::vector<double>{1e300, -2.5, 3.0}, at::kDouble));
  ts.emplace_back("bf16", at::tensor(std::vector<float>{1.f, -2.f, 0.5f, 3.140625f}).to(at::kBFloat16));
  ts.emplace_back("f16", at::tensor(std::vector<float>{1.5f, -65504.f}).to(at::kHalf));
  ts.emplace_back("i64", at::tensor(std::vector<int64_t>{-(int64_t(1) << 40), 123}, at::kLong));
  ts.emplace_back("i32", at::tensor(std::vector<int32_t>{-7, 2147483647}, at::kInt));
  ts.emplace_back("i16", at::tensor(std::vector<int64_t>{-32768, 5}).to(at::kShort));
  ts.emplace_back("i8", at::tensor(std::vector<int64_t>{-128, 127, 0}).to(at::kChar));
  ts.emplace_back("u8", at::tensor(std::vector<int64_t>{0, 255, 9}).to(at::kByte));
  ts.emplace_back("bool", at::tensor(std::vector<int64_t>{1, 0, 1}).to(at::kBool));
  ts.emplace_back("scalar", at::scalar_tensor(2.5, at::kFloat));  // shape []
  ts.emplace_back("empty", at::zeros({0, 4}, at::kFloat));        // zero bytes
  return ts;
}

}  // namespace

TEST(TensorFile, RoundTripEveryDtype) {
  auto dir = tmpdir("rt");
  auto ts = every_dtype();
  save_safetensors(dir + "/m.safetensors", ts, {{"step", "7"}});
  EXPECT_FALSE(fs::exists(dir + "/m.safetensors.tmp"));
  Metadata meta;
  TensorMap back = load_safetensors(dir + "/m.safetensors", &meta);
  EXPECT_EQ(meta.at("format"), "pt");
  EXPECT_EQ(meta.at("step"), "7");
  ASSERT_EQ(back.size(), ts.size());
  for (const auto& [name, t] : ts) {
    ASSERT_TRUE(back.count(name)) << name;
    EXPECT_TRUE(same_bytes(back.at(name), t)) << name;
  }
  fs::remove_all(dir);
}

TEST(TensorFile, Bf16EveryBitPatternIsExact) {
  auto dir = tmpdir("bf16");
  // All 65536 bf16 encodings, NaNs and infinities included.
  at::Tensor bits = at::arange(-32768, 32768, at::kInt).to(at::kShort);
  at::Tensor bf = bits.view(at::kBFloat16);
  at::Tensor h = bits.view(at::kHalf);
  save_safetensors(dir + "/b.safetensors", NamedTensors{{"bf", bf}, {"h", h}});
  auto back = load_safetensors(dir + "/b.safetensors");
  EXPECT_EQ(back.at("bf").scalar_type(), at::kBFloat16);
  EXPECT_TRUE(same_bytes(back.at("bf"), bf));
  EXPECT_TRUE(same_bytes(back.at("h"), h));
  fs::remove_all(dir);
}

TEST(TensorFile, NonContiguousAndMapInputs) {
  auto dir = tmpdir("nc");
  at::Tensor base = at::arange(12, at::kFloat).reshape({3, 4});
  at::Tensor tr = base.t();                      // non-contiguous [4, 3]
  at::Tensor sl = base.index({at::indexing::Slice(), 1});  // strided view [3]
  TensorMap m{{"t", tr}, {"s", sl}};
  save_safetensors(dir + "/n.safetensors", m);
  auto back = load_safetensors(dir + "/n.safetensors");
  EXPECT_TRUE(at::equal(back.at("t"), tr));
  EXPECT_TRUE(at::equal(back.at("s"), sl));
  EXPECT_THROW(save_safetensors(dir + "/d.safetensors", NamedTensors{{"a", base}, {"a", base}}), openlm::Error);
  EXPECT_THROW(save_safetensors(dir + "/c.safetensors", NamedTensors{{"c", at::zeros({2}, at::kComplexFloat)}}),
               openlm::Error);
  EXPECT_FALSE(fs::exists(dir + "/c.safetensors"));
  fs::remove_all(dir);
}

TEST(TensorFile, IndependentPythonReaderReadsOurFile) {
  auto dir = tmpdir("pyread");
  auto ts = every_dtype();
  save_safetensors(dir + "/ours.safetensors", ts, {{"note", "hello"}});
  auto out = nlohmann::json::parse(run_python(dir, kPyReader, dir + "/ours.safetensors"));
  EXPECT_EQ(out["meta"]["note"], "hello");
  // Header lists tensors in file order: descending dtype, then name.
  std::vector<std::string> order = out["order"];
  EXPECT_EQ(order, (std::vector<std::string>{"i64", "f64", "empty", "f32", "scalar", "i32", "bf16", "f16",
                                             "i16", "i8", "u8", "bool"}));
  for (const auto& [name, t] : ts) {
    const auto& e = out["tensors"][name];
    ASSERT_FALSE(e.is_null()) << name;
    std::vector<int64_t> shape = e["shape"];
    EXPECT_EQ(shape, t.sizes().vec()) << name;
    at::Tensor want = t.to(at::kDouble).flatten();
    std::vector<double> vals = e["values"];
    ASSERT_EQ(vals.size(), static_cast<size_t>(want.numel())) << name;
    for (size_t i = 0; i < vals.size(); ++i) EXPECT_EQ(vals[i], want[i].item<double>()) << name << "[" << i << "]";
  }
  fs::remove_all(dir);
}

TEST(TensorFile, ReadsFileWrittenByIndependentPythonWriter) {
  auto dir = tmpdir("pywrite");
  run_python(dir, kPyWriter, dir + "/py.safetensors");
  SafetensorsFile f(dir + "/py.safetensors");
  EXPECT_EQ(f.metadata().at("producer"), "python");
  EXPECT_EQ(f.names(), (std::vector<std::string>{"w", "ids", "h", "x", "m", "s"}));  // offset order
  for (bool zc : {false, true}) {  // data is unaligned here: zero-copy must fall back to a copy
    auto m = f.load_all(zc);
    EXPECT_TRUE(at::equal(m.at("w"), at::tensor(std::vector<float>{1, -2, 0.5, 8}).reshape({2, 2})));
    EXPECT_TRUE(at::equal(m.at("ids"), at::tensor(std::vector<int64_t>{-5, 0, int64_t(1) << 50})));
    at::Tensor h = m.at("h");
    EXPECT_EQ(h.scalar_type(), at::kBFloat16);
    EXPECT_TRUE(at::equal(h.to(at::kFloat), at::tensor(std::vector<float>{1.f, -2.f, 3.140625f})));
    EXPECT_TRUE(at::equal(m.at("x").to(at::kFloat), at::tensor(std::vector<float>{1.5f, -0.25f})));
    EXPECT_TRUE(at::equal(m.at("m"), at::tensor(std::vector<int64_t>{0, 1, 254, 255}).to(at::kByte)));
    EXPECT_EQ(m.at("s").dim(), 0);
    EXPECT_EQ(m.at("s").item<double>(), -1e300);
  }
  EXPECT_THROW(f.get("nope"), openlm::DataError);
  fs::remove_all(dir);
}

TEST(TensorFile, ZeroCopyAliasesPrivateMapping) {
  auto dir = tmpdir("zc");
  const std::string path = dir + "/z.safetensors";
  save_safetensors(path, NamedTensors{{"a", at::ones({1024}, at::kFloat)}, {"b", at::arange(16, at::kLong)}});
  const std::string before = openlm::fs::read_file(path);
  at::Tensor a;
  {
    SafetensorsFile f(path);
    a = f.get("a", /*zero_copy=*/true);
  }  // the tensor keeps the mapping alive
  EXPECT_EQ(a.sum().item<float>(), 1024.f);
  a.mul_(3);  // copy-on-write: the file is untouched
  EXPECT_EQ(a.sum().item<float>(), 3072.f);
  EXPECT_EQ(openlm::fs::read_file(path), before);
  fs::remove_all(dir);
}

TEST(TensorFile, LoadRejectsMalformedFileNamingIt) {
  auto dir = tmpdir("bad");
  const std::string path = dir + "/bad.safetensors";
  save_safetensors(path, NamedTensors{{"a", at::ones({4}, at::kFloat)}});
  std::string bytes = openlm::fs::read_file(path);
  openlm::fs::write_file_atomic(path, bytes.substr(0, bytes.size() - 2));  // truncated
  try {
    load_safetensors(path);
    ADD_FAILURE() << "truncated file accepted";
  } catch (const openlm::DataError& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
  EXPECT_THROW(load_safetensors(dir + "/missing.safetensors"), openlm::IoError);
  openlm::fs::write_file_atomic(path, "");  // zero-byte file: nothing to map
  try {
    load_safetensors(path);
    ADD_FAILURE() << "empty file accepted";
  } catch (const openlm::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("shorter than the 8-byte"), std::string::npos) << e.what();
  }
  EXPECT_THROW(load_safetensors(dir), openlm::DataError);  // a directory is not a file
  fs::remove_all(dir);
}

TEST(TensorFile, LargeFileThroughWriteBehind) {
  // > 32 MiB so the writer's chunked write-behind (sync_file_range + page drop) runs several times.
  auto dir = tmpdir("large");
  at::Tensor big = at::randn({5, 3000000});  // 60 MB
  at::Tensor small = at::arange(10, at::kLong);
  save_safetensors(dir + "/l.safetensors", NamedTensors{{"big", big}, {"small", small}});
  EXPECT_EQ(fs::file_size(dir + "/l.safetensors"), 8 + SafetensorsFile(dir + "/l.safetensors").header().header_len +
                                                       60000000 + 80);
  auto back = load_safetensors(dir + "/l.safetensors");
  EXPECT_TRUE(same_bytes(back.at("big"), big));
  EXPECT_TRUE(same_bytes(back.at("small"), small));
  fs::remove_all(dir);
}

TEST(TensorFile, ShardedRoundTripWithIndex) {
  auto dir = tmpdir("shard");
  NamedTensors ts;
  for (int i = 0; i < 10; ++i)
    ts.emplace_back("layers." + std::to_string(i) + ".w", at::randn({32, 32}).to(i % 2 ? at::kFloat : at::kBFloat16));
  ts.emplace_back("big", at::randn({100, 100}));  // 40000 bytes > limit: a shard of its own
  const uint64_t limit = 10000;
  ShardedSave r = save_sharded(dir, ts, limit, {{"kind", "test"}});
  ASSERT_GT(r.files.size(), 2u);
  EXPECT_EQ(r.index, "model.safetensors.index.json");
  const size_t n = r.files.size();
  char want0[64];
  std::snprintf(want0, sizeof want0, "model-00001-of-%05zu.safetensors", n);
  EXPECT_EQ(r.files[0], want0);
  uint64_t total = 0;
  for (auto& [k, t] : ts) total += t.numel() * t.element_size();
  EXPECT_EQ(r.total_size, total);
  for (const auto& fname : r.files) {
    SafetensorsFile f(dir + "/" + fname);
    EXPECT_EQ(f.metadata().at("kind"), "test");
    uint64_t bytes = f.header().data_size;
    EXPECT_TRUE(bytes <= limit || f.names().size() == 1) << fname;
  }
  auto index = nlohmann::json::parse(openlm::fs::read_file(dir + "/" + r.index));
  EXPECT_EQ(index["metadata"]["total_size"].get<uint64_t>(), total);
  EXPECT_EQ(index["weight_map"].size(), ts.size());

  for (const std::string& src : {dir, dir + "/" + r.index}) {
    TensorMap back = load_sharded(src);
    ASSERT_EQ(back.size(), ts.size());
    for (auto& [k, t] : ts) EXPECT_TRUE(same_bytes(back.at(k), t)) << k;
  }

  // An index that assigns a tensor to the wrong shard is refused, naming the tensor.
  auto bad = index;
  const std::string victim = "layers.0.w";
  std::string other;
  for (auto& f : r.files)
    if (f != index["weight_map"][victim]) other = f;
  bad["weight_map"][victim] = other;
  openlm::fs::write_file_atomic(dir + "/bad.index.json", bad.dump());
  try {
    load_sharded(dir + "/bad.index.json");
    ADD_FAILURE() << "bad index accepted";
  } catch (const openlm::DataError& e) {
    EXPECT_NE(std::string(e.what()).find(victim), std::string::npos) << e.what();
  }
  bad["weight_map"][victim] = "../escape.safetensors";
  openlm::fs::write_file_atomic(dir + "/bad.index.json", bad.dump());
  EXPECT_THROW(load_sharded(dir + "/bad.index.json"), openlm::DataError);
  fs::remove(dir + "/bad.index.json");

  // Saving again with a large limit gives one model.safetensors and removes the stale set.
  ShardedSave one = save_sharded(dir, ts, parse_byte_size("5GB"));
  EXPECT_EQ(one.files, std::vector<std::string>{"model.safetensors"});
  EXPECT_TRUE(one.index.empty());
  std::vector<std::string> left;
  for (auto& e : fs::directory_iterator(dir)) left.push_back(e.path().filename().string());
  EXPECT_EQ(left, std::vector<std::string>{"model.safetensors"});
  TensorMap back = load_sharded(dir);
  for (auto& [k, t] : ts) EXPECT_TRUE(same_bytes(back.at(k), t)) << k;
  fs::remove_all(dir);
}

TEST(TensorFile, ParseByteSize) {
  EXPECT_EQ(parse_byte_size("5GB"), 5000000000ull);
  EXPECT_EQ(parse_byte_size("500MB"), 500000000ull);
  EXPECT_EQ(parse_byte_size("2GiB"), 2147483648ull);
  EXPECT_EQ(parse_byte_size("10kb"), 10000ull);
  EXPECT_EQ(parse_byte_size("1024"), 1024ull);
  EXPECT_THROW(parse_byte_size("5 GB"), openlm::Error);
  EXPECT_THROW(parse_byte_size("GB"), openlm::Error);
  EXPECT_THROW(parse_byte_size("5XB"), openlm::Error);
  EXPECT_THROW(parse_byte_size("99999999999TB"), openlm::Error);
}
