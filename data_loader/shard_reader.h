#pragma once
/// Random access to the sequences of one shard, whatever its format. A tar shard is indexed on
/// first use (member offsets from the 512-byte headers, kept in memory for the process) and its
/// members are read with pread; a native shard is memory-mapped. Thread-safe; torch-free.
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "data_loader/manifest.h"
#include "data_loader/token_codec.h"

namespace openlm::data {

class ShardReader {
 public:
  virtual ~ShardReader() = default;
  /// Sequences actually in the shard (indexes a tar shard on first call). Throws DataError.
  virtual int64_t size() = 0;
  /// Raw tokens of sequence i (as stored: may be negative or of any length in tar shards).
  /// `scratch` is per-thread. Throws DataError naming shard and member.
  virtual void read(int64_t i, std::vector<int64_t>& out, DecodeScratch& scratch) = 0;
  /// "shard 'path' member 'name'" for messages.
  virtual std::string describe(int64_t i) = 0;
  virtual const std::string& path() const = 0;
  virtual ShardFormat format() const = 0;
  /// Tokens per sequence when every sequence has the same length (native shards), else -1.
  virtual int64_t fixed_length() const { return -1; }
  /// Identity of the tokenizer the shard was made with (native header "tokenizer"; Tokenizer::id()),
  /// "" when the format does not record one (OpenLM tar shards, converted shards).
  virtual std::string tokenizer() const { return ""; }
  /// Fast path for fixed-length shards: copies tokens [offset, offset+len) of sequence i into out.
  virtual void read_fixed(int64_t i, int64_t offset, int64_t len, int64_t* out);
};

/// Opens a shard of a manifest entry. A tar shard is not indexed yet (cheap); a native shard is
/// mapped and its header validated now. `max_member_bytes` bounds one tar member's stored and
/// inflated size (token_codec.h: max_member_bytes(seq_len + 1) for a loader); a larger member is a
/// DataError naming shard and member, raised before it is read or inflated past the bound.
std::unique_ptr<ShardReader> open_shard(const ManifestEntry& e, size_t max_member_bytes = kDefaultMaxMemberBytes);

}  // namespace openlm::data
