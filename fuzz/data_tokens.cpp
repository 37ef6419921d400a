// Fuzzes the member decoders and the native header parser. The first byte picks the parser; the
// rest is its input. JSON lists that parse must round-trip through format_json_int_list.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "data_loader/native_shard.h"
#include "data_loader/token_codec.h"
#include "openlm_cpp/core/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace openlm::data;
  if (size < 1) return 0;
  const uint8_t mode = data[0] % 4;
  const uint8_t* p = data + 1;
  const size_t n = size - 1;
  std::vector<int64_t> ids;
  try {
    switch (mode) {
      case 0: {
        parse_json_int_list(reinterpret_cast<const char*>(p), n, ids, "fuzz");
        std::string again = format_json_int_list(ids.data(), ids.size());
        std::vector<int64_t> back;
        parse_json_int_list(again.data(), again.size(), back, "fuzz");
        if (back != ids) __builtin_trap();
        break;
      }
      case 1:
        parse_python_list(reinterpret_cast<const char*>(p), n, ids, "fuzz");
        break;
      case 2: {
        std::vector<uint8_t> out;
        gunzip(p, n, out, "fuzz", size_t(1) << 24);
        break;
      }
      case 3: {
        // the header claims a file size: let the fuzzer choose it from the first 8 bytes
        uint64_t fsize = n;
        if (n >= 8) {
          fsize = 0;
          for (int i = 0; i < 8; ++i) fsize |= uint64_t(p[i]) << (8 * i);
        }
        NativeHeader h = parse_native_header(p + (n >= 8 ? 8 : 0), n >= 8 ? n - 8 : n, fsize, "fuzz");
        if (h.data_offset > fsize) __builtin_trap();
        break;
      }
    }
  } catch (const openlm::DataError&) {
  }
  return 0;
}
