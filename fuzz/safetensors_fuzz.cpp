// libFuzzer target: arbitrary bytes as a whole safetensors file. The parser must either accept or
// throw an openlm::Error; anything else (a crash, a sanitizer report, another exception type)
// is a bug. Accepted inputs are re-written with our writer and parsed again: the second parse must
// accept and give the same tensors, bytes and metadata.
#include <cstdint>
#include <cstring>
#include <vector>

#include "openlm_cpp/checkpoint/safetensors.h"
#include "openlm_cpp/core/error.h"

namespace st = openlm::safetensors;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  st::Header h;
  try {
    h = st::parse(data, size, "fuzz-input");
  } catch (const openlm::Error&) {
    return 0;
  }
  std::vector<st::TensorBytes> ts;
  for (const auto& t : h.tensors) {
    if (t.name.empty()) return 0;  // valid to read, refused by our writer
    ts.push_back({t.name, t.dtype, t.shape, data + h.data_start() + t.begin, t.nbytes()});
  }
  std::string img = st::serialize(ts, h.metadata);  // must not throw for a parsed file
  st::Header h2 = st::parse(img.data(), img.size(), "fuzz-rewrite");
  if (h2.tensors.size() != h.tensors.size()) __builtin_trap();
  for (const auto& t : h.tensors) {
    const st::TensorInfo* u = h2.find(t.name);
    if (!u || u->dtype != t.dtype || u->shape != t.shape || u->nbytes() != t.nbytes()) __builtin_trap();
    if (t.nbytes() &&
        std::memcmp(img.data() + h2.data_start() + u->begin, data + h.data_start() + t.begin, t.nbytes()) != 0)
      __builtin_trap();
    if ((h2.data_start() + u->begin) % st::dtype_size(u->dtype) != 0) __builtin_trap();  // alignment
  }
  for (const auto& [k, v] : h.metadata)
    if (h2.metadata.at(k) != v) __builtin_trap();
  if (h2.metadata.count("format") == 0) __builtin_trap();
  return 0;
}
