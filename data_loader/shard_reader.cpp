#include "data_loader/shard_reader.h"

#include "data_loader/byte_source.h"
#include "data_loader/native_shard.h"
#include "data_loader/tar_format.h"
#include "openlm_cpp/core/error.h"

namespace openlm::data {
namespace {

class TarShardReader final : public ShardReader {
 public:
  TarShardReader(const ManifestEntry& e, size_t max_member_bytes)
      : path_(e.path), file_(open_byte_source(e.path)), max_bytes_(max_member_bytes) {}

  int64_t size() override {
    ensure_index();
    return static_cast<int64_t>(members_.size());
  }

  void read(int64_t i, std::vector<int64_t>& out, DecodeScratch& scratch) override {
    ensure_index();
    if (i < 0 || i >= static_cast<int64_t>(members_.size()))
      throw DataError("tar shard '" + path_ + "': sequence " + std::to_string(i) + " does not exist (shard has " +
                      std::to_string(members_.size()) + " token members)");
    const Member& m = members_[static_cast<size_t>(i)];
    // Stored bytes: plain text is bounded like inflated text; gzip of text that fits the bound is
    // never much larger than the bound (deflate's stored blocks add ~5 bytes per 64 KiB).
    const uint64_t stored_max = m.kind == MemberKind::JsonGz ? max_bytes_ + max_bytes_ / 64 + 1024 : max_bytes_;
    if (m.size > stored_max)
      throw DataError(describe(i) + ": member is " + std::to_string(m.size) + " bytes, more than the limit of " +
                      std::to_string(stored_max) + " bytes for one member");
    scratch.raw.resize(m.size);
    if (file_->read_at(m.offset, scratch.raw.data(), m.size) != m.size)
      throw DataError(describe(i) + ": short read (file changed or truncated)");
    decode_member(m.kind, scratch.raw.data(), m.size, out, scratch, describe(i), max_bytes_);
  }

  std::string describe(int64_t i) override {
    std::string s = "tar shard '" + path_ + "'";
    if (i >= 0 && i < static_cast<int64_t>(members_.size()))
      s += " member '" + members_[static_cast<size_t>(i)].name + "'";
    else
      s += " sequence " + std::to_string(i);
    return s;
  }
  const std::string& path() const override { return path_; }
  ShardFormat format() const override { return ShardFormat::OpenLMTar; }

 private:
  struct Member {
    std::string name;
    uint64_t offset, size;
    MemberKind kind;
  };

  void ensure_index() {
    std::lock_guard<std::mutex> lk(mu_);
    if (indexed_) return;
    if (!index_error_.empty()) throw DataError(index_error_);  // a broken shard is indexed once
    auto* f = file_.get();
    ReadAtFn rd = [f](uint64_t off, void* buf, size_t n) { return f->read_at(off, buf, n); };
    std::vector<TarMember> all;
    try {
      all = index_tar(rd, f->size(), path_);
    } catch (const DataError& e) {
      index_error_ = e.what();
      throw;
    }
    for (auto& m : all) {
      MemberKind k = member_kind(m.name);
      if (k == MemberKind::Other) continue;  // webdataset ignores keys it does not use
      members_.push_back({std::move(m.name), m.offset, m.size, k});
    }
    indexed_ = true;
  }

  std::string path_;
  std::unique_ptr<RandomAccessFile> file_;
  size_t max_bytes_;
  std::mutex mu_;
  bool indexed_ = false;
  std::string index_error_;
  std::vector<Member> members_;
};

class NativeShardReader final : public ShardReader {
 public:
  explicit NativeShardReader(const ManifestEntry& e) : shard_(e.path) {}
  int64_t size() override { return shard_.count(); }
  void read(int64_t i, std::vector<int64_t>& out, DecodeScratch&) override {
    if (i < 0 || i >= shard_.count())
      throw DataError("native shard '" + shard_.path() + "': sequence " + std::to_string(i) +
                      " does not exist (shard has " + std::to_string(shard_.count()) + ")");
    out.resize(static_cast<size_t>(shard_.seq_len()));
    shard_.read(i, 0, shard_.seq_len(), out.data());
  }
  std::string describe(int64_t i) override {
    return "native shard '" + shard_.path() + "' sequence " + std::to_string(i);
  }
  const std::string& path() const override { return shard_.path(); }
  ShardFormat format() const override { return ShardFormat::Native; }
  int64_t fixed_length() const override { return shard_.seq_len(); }
  std::string tokenizer() const override { return shard_.header().tokenizer; }
  void read_fixed(int64_t i, int64_t offset, int64_t len, int64_t* out) override {
    if (i < 0 || i >= shard_.count() || offset < 0 || offset + len > shard_.seq_len())
      throw DataError(describe(i) + ": read out of range");
    shard_.read(i, offset, len, out);
  }

 private:
  NativeShard shard_;
};

}  // namespace

void ShardReader::read_fixed(int64_t, int64_t, int64_t, int64_t*) {
  throw Error("read_fixed on a shard without fixed-length sequences: " + path());
}

std::unique_ptr<ShardReader> open_shard(const ManifestEntry& e, size_t max_member_bytes) {
  if (e.format == ShardFormat::Native) return std::make_unique<NativeShardReader>(e);
  return std::make_unique<TarShardReader>(e, max_member_bytes);
}

}  // namespace openlm::data
