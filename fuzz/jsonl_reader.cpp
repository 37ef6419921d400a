// Fuzzes prepare-data's input reader (data_loader/doc_reader.cpp): the first byte picks JSONL,
// text, gzip-compressed JSONL or zstd-compressed JSONL; the rest is the file. Every document it
// returns must be non-empty valid UTF-8 with a line number that never goes backwards; anything
// else must be a clean openlm::Error.
#include <cstddef>
#include <cstdint>
#include <string>

#include "data_loader/doc_reader.h"
#include "openlm_cpp/core/error.h"
#include "openlm_cpp/tokenizer/unicode_text.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace openlm::data;
  if (size < 1) return 0;
  const uint8_t mode = data[0] % 4;
  std::string bytes(reinterpret_cast<const char*>(data + 1), size - 1);
  const DocFormat format = mode == 1 ? DocFormat::Text : DocFormat::Jsonl;
  const Compression c = mode == 2 ? Compression::Gzip : mode == 3 ? Compression::Zstd : Compression::None;
  try {
    DocReader rd(decompress_stream(memory_stream(bytes), c, "fuzz"), "fuzz", format, "text");
    DocRecord r;
    int64_t last = 0;
    while (rd.next(r)) {
      if (r.line <= last && format == DocFormat::Jsonl) __builtin_trap();
      if (r.line < 1) __builtin_trap();
      last = r.line;
      if (r.bad == BadLine::None) {
        if (r.text.empty()) __builtin_trap();
        if (openlm::unicode::valid_utf8_prefix(r.text) != r.text.size()) __builtin_trap();
      } else if (r.why.empty()) {
        __builtin_trap();
      }
    }
  } catch (const openlm::Error&) {
  }
  return 0;
}
