#include "data_loader/native_shard.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

#include "openlm_cpp/core/error.h"

namespace openlm::data {
namespace {

constexpr uint64_t kAlign = 64;
constexpr uint64_t kMaxHeader = 1 << 20;

std::string hex64(uint64_t v) {
  char b[17];
  std::snprintf(b, sizeof b, "%016llx", static_cast<unsigned long long>(v));
  return b;
}

}  // namespace

int native_dtype_bytes(int64_t vocab_size) { return vocab_size <= 65536 ? 2 : 4; }

NativeHeader parse_native_header(const uint8_t* data, size_t n, uint64_t file_size, const std::string& label) {
  auto fail = [&](const std::string& what) -> DataError {
    return DataError("native shard '" + label + "': " + what);
  };
  if (n < 12 || std::memcmp(data, kNativeMagic, 8) != 0) throw fail("bad magic (not an OLMTOKS1 file)");
  uint64_t hlen = uint64_t(data[8]) | uint64_t(data[9]) << 8 | uint64_t(data[10]) << 16 | uint64_t(data[11]) << 24;
  if (hlen > kMaxHeader || 12 + hlen > n) throw fail("header length " + std::to_string(hlen) + " out of range");
  nlohmann::json j = nlohmann::json::parse(data + 12, data + 12 + hlen, nullptr, false);
  if (j.is_discarded() || !j.is_object()) throw fail("header is not a JSON object");
  NativeHeader h;
  try {
    h.format_version = j.at("format_version").get<int>();
    std::string dt = j.at("dtype").get<std::string>();
    h.seq_len = j.at("seq_len").get<int64_t>();
    h.count = j.at("count").get<int64_t>();
    h.tokenizer = j.value("tokenizer", std::string());
    std::string cs = j.at("xxh3_64").get<std::string>();
    if (dt == "uint16") h.dtype_bytes = 2;
    else if (dt == "uint32") h.dtype_bytes = 4;
    else throw fail("unknown dtype '" + dt + "'");
    if (cs.size() != 16 || cs.find_first_not_of("0123456789abcdef") != std::string::npos)
      throw fail("bad xxh3_64 '" + cs + "'");
    h.checksum = std::stoull(cs, nullptr, 16);
  } catch (const nlohmann::json::exception& e) {
    throw fail(std::string("bad header field: ") + e.what());
  }
  if (h.format_version != 1) throw fail("unsupported format_version " + std::to_string(h.format_version));
  if (h.seq_len <= 0 || h.seq_len > (int64_t(1) << 31)) throw fail("bad seq_len " + std::to_string(h.seq_len));
  if (h.count < 0 || h.count > (int64_t(1) << 40)) throw fail("bad count " + std::to_string(h.count));
  h.data_offset = (12 + hlen + kAlign - 1) / kAlign * kAlign;
  // count*seq_len*bytes cannot overflow: both bounded above
  uint64_t want = h.data_offset + uint64_t(h.count) * uint64_t(h.seq_len) * uint64_t(h.dtype_bytes);
  if (want != file_size)
    throw fail("file has " + std::to_string(file_size) + " bytes but the header (count " +
               std::to_string(h.count) + ", seq_len " + std::to_string(h.seq_len) + ") needs " +
               std::to_string(want) + " (truncated or count mismatch)");
  return h;
}

std::string encode_native_header(NativeHeader& h) {
  nlohmann::json j = {{"format_version", 1},
                      {"dtype", h.dtype_bytes == 2 ? "uint16" : "uint32"},
                      {"seq_len", h.seq_len},
                      {"count", h.count},
                      {"tokenizer", h.tokenizer},
                      {"xxh3_64", hex64(h.checksum)}};
  std::string js = j.dump();
  std::string out(kNativeMagic, 8);
  uint32_t len = static_cast<uint32_t>(js.size());
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((len >> (8 * i)) & 0xff));
  out += js;
  h.data_offset = (out.size() + kAlign - 1) / kAlign * kAlign;
  out.resize(h.data_offset, '\0');
  return out;
}

NativeShardWriter::NativeShardWriter(std::string path, int dtype_bytes, int64_t seq_len, std::string tokenizer)
    : path_(std::move(path)), tokenizer_(std::move(tokenizer)), dtype_bytes_(dtype_bytes), seq_len_(seq_len) {
  if (dtype_bytes != 2 && dtype_bytes != 4) throw Error("native shard dtype must be 2 or 4 bytes");
  if (seq_len <= 0) throw Error("native shard seq_len must be positive");
}

void NativeShardWriter::append(const int64_t* ids, size_t n) {
  if (static_cast<int64_t>(n) != seq_len_)
    throw DataError("native shard '" + path_ + "': sequence " + std::to_string(count_) + " has " +
                    std::to_string(n) + " tokens, the shard stores " + std::to_string(seq_len_));
  const int64_t lim = dtype_bytes_ == 2 ? 65536 : (int64_t(1) << 32);
  size_t base = data_.size();
  data_.resize(base + n * dtype_bytes_);
  uint8_t* p = data_.data() + base;
  for (size_t i = 0; i < n; ++i) {
    int64_t v = ids[i];
    if (v < 0 || v >= lim) {
      data_.resize(base);
      throw DataError("native shard '" + path_ + "': sequence " + std::to_string(count_) + " token " +
                      std::to_string(i) + " has id " + std::to_string(v) + " outside [0, " +
                      std::to_string(lim) + ")");
    }
    auto u = static_cast<uint64_t>(v);
    for (int b = 0; b < dtype_bytes_; ++b) *p++ = static_cast<uint8_t>(u >> (8 * b));
  }
  ++count_;
}

void NativeShardWriter::finish() {
  NativeHeader h;
  h.dtype_bytes = dtype_bytes_;
  h.seq_len = seq_len_;
  h.count = count_;
  h.tokenizer = tokenizer_;
  h.checksum = XXH3_64bits(data_.data(), data_.size());
  std::string head = encode_native_header(h);
  std::string tmp = path_ + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw_errno("cannot create native shard", tmp);
  bool ok = std::fwrite(head.data(), 1, head.size(), f) == head.size() &&
            (data_.empty() || std::fwrite(data_.data(), 1, data_.size(), f) == data_.size());
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) throw_errno("cannot write native shard", tmp);
  if (std::rename(tmp.c_str(), path_.c_str()) != 0) throw_errno("cannot rename native shard to", path_);
  data_.clear();
  data_.shrink_to_fit();
}

NativeShard::NativeShard(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw_errno("cannot open native shard", path);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    throw_errno("cannot stat native shard", path);
  }
  map_size_ = static_cast<size_t>(st.st_size);
  if (map_size_ == 0) {
    ::close(fd);
    throw DataError("native shard '" + path + "': empty file");
  }
  void* m = ::mmap(nullptr, map_size_, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (m == MAP_FAILED) throw_errno("cannot mmap native shard", path);
  base_ = static_cast<const uint8_t*>(m);
  try {
    h_ = parse_native_header(base_, map_size_, map_size_, path);
  } catch (...) {
    ::munmap(const_cast<uint8_t*>(base_), map_size_);
    throw;
  }
}

NativeShard::~NativeShard() {
  if (base_) ::munmap(const_cast<uint8_t*>(base_), map_size_);
}

void NativeShard::read(int64_t i, int64_t offset, int64_t len, int64_t* out) const {
  const uint8_t* p = base_ + h_.data_offset + (uint64_t(i) * h_.seq_len + offset) * h_.dtype_bytes;
  if (h_.dtype_bytes == 2) {
    for (int64_t k = 0; k < len; ++k) out[k] = int64_t(p[2 * k]) | int64_t(p[2 * k + 1]) << 8;
  } else {
    for (int64_t k = 0; k < len; ++k) {
      const uint8_t* q = p + 4 * k;
      out[k] = int64_t(q[0]) | int64_t(q[1]) << 8 | int64_t(q[2]) << 16 | int64_t(q[3]) << 24;
    }
  }
}

void NativeShard::verify_checksum() const {
  uint64_t got = XXH3_64bits(base_ + h_.data_offset, map_size_ - h_.data_offset);
  if (got != h_.checksum)
    throw DataError("native shard '" + path_ + "': checksum mismatch (header " + hex64(h_.checksum) +
                    ", data " + hex64(got) + "): the file is corrupt");
}

int64_t NativeShard::max_id() const {
  int64_t m = -1;
  std::vector<int64_t> buf(static_cast<size_t>(h_.seq_len));
  for (int64_t i = 0; i < h_.count; ++i) {
    read(i, 0, h_.seq_len, buf.data());
    for (int64_t v : buf) m = std::max(m, v);
  }
  return m;
}

}  // namespace openlm::data
