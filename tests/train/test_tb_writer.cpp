// TensorBoard event files, checked by an independent decoder written in Python (bitwise CRC32C,
// hand-rolled protobuf field parsing), run with /usr/bin/python3.
#include "openlm_cpp/train/tb_writer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "openlm_cpp/core/error.h"
#include "../common/test_util.h"

namespace fs = std::filesystem;
using openlm::tb::TbWriter;

namespace {

std::string tmpdir(const std::string& name) { return openlm::test_util::fresh_dir("tb", name); }

std::string run_python(const std::string& dir, const std::string& script, const std::string& args) {
  return openlm::test_util::run_python(dir, script, args, "decode.py");
}

const char* kPyDecoder = R"PY(
import json, struct, sys

def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF

def masked(data):
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF

def varint(b, i):
    r, s = 0, 0
    while True:
        x = b[i]
        i += 1
        r |= (x & 0x7F) << s
        s += 7
        if not x & 0x80:
            return r, i

def fields(b):
    i, out = 0, []
    while i < len(b):
        key, i = varint(b, i)
        fn, wt = key >> 3, key & 7
        if wt == 0:
            v, i = varint(b, i)
        elif wt == 1:
            v, i = b[i:i + 8], i + 8
        elif wt == 5:
            v, i = b[i:i + 4], i + 4
        elif wt == 2:
            n, i = varint(b, i)
            v, i = b[i:i + n], i + n
        else:
            raise ValueError('wire type %d' % wt)
        out.append((fn, wt, v))
    assert i == len(b), 'field overrun'
    return out

data = open(sys.argv[1], 'rb').read()
i, events = 0, []
while i < len(data):
    head = data[i:i + 8]
    n, = struct.unpack('<Q', head)
    assert struct.unpack('<I', data[i + 8:i + 12])[0] == masked(head), 'length crc'
    payload = data[i + 12:i + 12 + n]
    assert len(payload) == n, 'short record'
    assert struct.unpack('<I', data[i + 12 + n:i + 16 + n])[0] == masked(payload), 'data crc'
    i += 16 + n
    ev = {}
    for fn, wt, v in fields(payload):
        if fn == 1:
            assert wt == 1
            ev['wall_time'] = struct.unpack('<d', v)[0]
        elif fn == 2:
            assert wt == 0
            ev['step'] = v - (1 << 64) if v >= (1 << 63) else v
        elif fn == 3:
            assert wt == 2
            ev['file_version'] = v.decode()
        elif fn == 5:
            assert wt == 2
            vals = []
            for sf, swt, sv in fields(v):
                assert sf == 1 and swt == 2
                d = {}
                for vf, vwt, vv in fields(sv):
                    if vf == 1:
                        d['tag'] = vv.decode('utf-8')
                    elif vf == 2:
                        assert vwt == 5
                        d['simple_value'] = struct.unpack('<f', vv)[0]
                vals.append(d)
            ev['values'] = vals
        else:
            raise ValueError('unexpected Event field %d' % fn)
    events.append(ev)
print(json.dumps(events))
)PY";

}  // namespace

TEST(TbWriter, Crc32cKnownValues) {
  // The CRC-32C check value and the RFC 3720 test vectors.
  EXPECT_EQ(openlm::tb::crc32c("123456789", 9), 0xE3069283u);
  std::string zeros(32, '\0'), ones(32, '\xff');
  EXPECT_EQ(openlm::tb::crc32c(zeros.data(), 32), 0x8A9136AAu);
  EXPECT_EQ(openlm::tb::crc32c(ones.data(), 32), 0x62A8AB43u);
  // Chaining equals one pass.
  EXPECT_EQ(openlm::tb::crc32c("6789", 4, openlm::tb::crc32c("12345", 5)), 0xE3069283u);
}

TEST(TbWriter, IndependentDecoderReadsScalars) {
  auto dir = tmpdir("scalars");
  const double t0 = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  TbWriter w(dir + "/tb");
  const std::string name = fs::path(w.path()).filename().string();
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  EXPECT_EQ(name.rfind("events.out.tfevents.", 0), 0u) << name;
  EXPECT_NE(name.find(std::string(".") + host), std::string::npos) << name;

  w.add_scalar("train/loss", 2.5, 1);
  w.add_scalars({{"train/lr", 1e-3}, {"train/grad_norm", 0.75}}, 2);
  w.add_scalar("eval/loss", -3.25, int64_t(1) << 40, 1234.5);
  w.add_scalar("neg", 1.0, -7);
  w.add_scalar("caf\xc3\xa9", 0.1, 3);
  // Each write is already in the file: decode before close().
  auto ev = nlohmann::json::parse(run_python(dir, kPyDecoder, w.path()));
  ASSERT_EQ(ev.size(), 6u);
  EXPECT_EQ(ev[0]["file_version"], "brain.Event:2");
  EXPECT_FALSE(ev[0].contains("step"));
  EXPECT_NEAR(ev[0]["wall_time"].get<double>(), t0, 60.0);

  EXPECT_EQ(ev[1]["step"], 1);
  ASSERT_EQ(ev[1]["values"].size(), 1u);
  EXPECT_EQ(ev[1]["values"][0]["tag"], "train/loss");
  EXPECT_EQ(ev[1]["values"][0]["simple_value"].get<double>(), 2.5);
  EXPECT_GE(ev[1]["wall_time"].get<double>(), ev[0]["wall_time"].get<double>());

  EXPECT_EQ(ev[2]["step"], 2);
  ASSERT_EQ(ev[2]["values"].size(), 2u);
  EXPECT_EQ(ev[2]["values"][0]["tag"], "train/lr");
  EXPECT_EQ(ev[2]["values"][0]["simple_value"].get<double>(), static_cast<double>(1e-3f));
  EXPECT_EQ(ev[2]["values"][1]["tag"], "train/grad_norm");
  EXPECT_EQ(ev[2]["values"][1]["simple_value"].get<double>(), 0.75);

  EXPECT_EQ(ev[3]["step"].get<int64_t>(), int64_t(1) << 40);
  EXPECT_EQ(ev[3]["wall_time"].get<double>(), 1234.5);
  EXPECT_EQ(ev[3]["values"][0]["simple_value"].get<double>(), -3.25);
  EXPECT_EQ(ev[4]["step"].get<int64_t>(), -7);
  EXPECT_EQ(ev[5]["values"][0]["tag"], "caf\xc3\xa9");
  EXPECT_EQ(ev[5]["values"][0]["simple_value"].get<double>(), static_cast<double>(0.1f));

  w.flush();
  w.close();
  EXPECT_THROW(w.add_scalar("x", 1, 1), openlm::IoError);
  fs::remove_all(dir);
}

TEST(TbWriter, NeverAppendsToAnExistingFile) {
  auto dir = tmpdir("two");
  TbWriter a(dir);
  TbWriter b(dir);  // same second, same host: must get its own file
  EXPECT_NE(a.path(), b.path());
  a.add_scalar("a", 1, 1);
  b.add_scalar("b", 2, 1);
  auto ea = nlohmann::json::parse(run_python(dir, kPyDecoder, a.path()));
  auto eb = nlohmann::json::parse(run_python(dir, kPyDecoder, b.path()));
  EXPECT_EQ(ea.size(), 2u);
  EXPECT_EQ(eb.size(), 2u);
  EXPECT_EQ(eb[1]["values"][0]["tag"], "b");
  EXPECT_THROW(TbWriter("/proc/definitely/not/writable"), openlm::IoError);
  fs::remove_all(dir);
}

TEST(TbWriter, FrameLayout) {
  std::string rec = openlm::tb::frame_record("abc");
  ASSERT_EQ(rec.size(), 8u + 4u + 3u + 4u);
  EXPECT_EQ(rec.substr(0, 8), std::string("\x03\0\0\0\0\0\0\0", 8));
  EXPECT_EQ(rec.substr(12, 3), "abc");
  // Protobuf bytes of a scalar event, by hand: wall_time=1.0, step=3, value{tag "t", 0.5f}.
  std::string ev = openlm::tb::encode_scalars_event(1.0, 3, {{"t", 0.5f}});
  const std::string want("\x09\0\0\0\0\0\0\xf0\x3f\x10\x03\x2a\x0a\x0a\x08\x0a\x01t\x15\0\0\0\x3f", 23);
  EXPECT_EQ(ev, want);
}
