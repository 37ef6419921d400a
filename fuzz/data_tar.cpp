// Fuzzes the tar indexer on arbitrary archives, then decodes every member it finds the way the
// loader would (by name: .json.gz / .json / .txt). Any input must give members inside the buffer or
// a DataError; never a crash, hang or out-of-bounds read.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "data_loader/tar_format.h"
#include "data_loader/token_codec.h"
#include "openlm_cpp/core/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace openlm::data;
  std::vector<TarMember> members;
  try {
    members = index_tar_buffer(data, size, "fuzz");
  } catch (const openlm::DataError&) {
    return 0;
  }
  DecodeScratch scratch;
  std::vector<int64_t> ids;
  for (const auto& m : members) {
    if (m.offset > size || m.size > size - m.offset) __builtin_trap();  // index must stay in bounds
    MemberKind k = member_kind(m.name);
    if (k == MemberKind::Other) continue;
    try {
      decode_member(k, data + m.offset, m.size, ids, scratch, m.name);
    } catch (const openlm::DataError&) {
    }
  }
  return 0;
}
