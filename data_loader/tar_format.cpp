#include "data_loader/tar_format.h"

#include <algorithm>
#include <cstring>

#include "openlm_cpp/core/error.h"

namespace openlm::data {
namespace {

constexpr size_t kBlock = 512;

std::string at_offset(const std::string& label, uint64_t off) {
  return "tar shard '" + label + "' at byte " + std::to_string(off);
}

/// Parses a numeric header field: octal text (NUL/space terminated) or GNU base-256 (high bit set).
bool parse_number(const unsigned char* f, size_t len, uint64_t& out) {
  out = 0;
  if (f[0] & 0x80) {  // base-256: big-endian two's complement; negative sizes are invalid
    if (f[0] & 0x40) return false;
    uint64_t v = f[0] & 0x3f;
    for (size_t i = 1; i < len; ++i) {
      if (v >> 56) return false;
      v = (v << 8) | f[i];
    }
    out = v;
    return true;
  }
  size_t i = 0;
  while (i < len && (f[i] == ' ' || f[i] == 0)) {
    if (f[i] == 0) return true;  // empty field reads as 0
    ++i;
  }
  bool any = false;
  for (; i < len; ++i) {
    unsigned char c = f[i];
    if (c == 0 || c == ' ') break;
    if (c < '0' || c > '7') return false;
    if (out >> 60) return false;
    out = out * 8 + (c - '0');
    any = true;
  }
  for (; i < len; ++i)
    if (f[i] != 0 && f[i] != ' ') return false;
  (void)any;
  return true;
}

std::string field_string(const unsigned char* f, size_t len) {
  size_t n = 0;
  while (n < len && f[n]) ++n;
  return std::string(reinterpret_cast<const char*>(f), n);
}

bool checksum_ok(const unsigned char* h) {
  uint64_t stored = 0;
  if (!parse_number(h + 148, 8, stored)) return false;
  uint64_t sum_u = 0;
  int64_t sum_s = 0;  // some old writers summed signed chars
  for (size_t i = 0; i < kBlock; ++i) {
    unsigned char c = (i >= 148 && i < 156) ? ' ' : h[i];
    sum_u += c;
    sum_s += static_cast<signed char>(c);
  }
  return stored == sum_u || static_cast<int64_t>(stored) == sum_s;
}

bool all_zero(const unsigned char* h) {
  for (size_t i = 0; i < kBlock; ++i)
    if (h[i]) return false;
  return true;
}

/// Applies pax records ("LEN key=value\n") to the pending name/size overrides.
void parse_pax(const std::string& rec, std::string& path, bool& has_size, uint64_t& size,
               const std::string& where) {
  size_t pos = 0;
  while (pos < rec.size()) {
    if (rec[pos] == 0) break;  // NUL padding after the last record
    size_t sp = pos;
    uint64_t len = 0;
    while (sp < rec.size() && rec[sp] >= '0' && rec[sp] <= '9') {
      len = len * 10 + static_cast<uint64_t>(rec[sp] - '0');
      if (len > rec.size()) throw DataError(where + ": malformed pax record length");
      ++sp;
    }
    if (sp == pos || sp >= rec.size() || rec[sp] != ' ' || len < (sp - pos) + 3 ||
        pos + len > rec.size() || rec[pos + len - 1] != '\n')
      throw DataError(where + ": malformed pax record");
    std::string kv = rec.substr(sp + 1, pos + len - 1 - (sp + 1));
    auto eq = kv.find('=');
    if (eq == std::string::npos) throw DataError(where + ": pax record without '='");
    std::string key = kv.substr(0, eq), val = kv.substr(eq + 1);
    if (key == "path") {
      path = val;
    } else if (key == "size") {
      uint64_t v = 0;
      if (val.empty() || val.size() > 19) throw DataError(where + ": bad pax size '" + val + "'");
      for (char c : val) {
        if (c < '0' || c > '9') throw DataError(where + ": bad pax size '" + val + "'");
        v = v * 10 + static_cast<uint64_t>(c - '0');
      }
      size = v;
      has_size = true;
    }
    pos += len;
  }
}

}  // namespace

std::vector<TarMember> index_tar(const ReadAtFn& read, uint64_t file_size, const std::string& label) {
  std::vector<TarMember> out;
  unsigned char h[kBlock];
  uint64_t off = 0;
  std::string next_path;  // from a pax 'x' record or GNU 'L' member, applies to the next header
  bool next_has_size = false;
  uint64_t next_size = 0;
  constexpr uint64_t kMaxMeta = 1 << 20;  // longest pax / long-name payload we accept
  while (true) {
    if (off == file_size) break;  // complete data, no end-of-archive blocks
    if (file_size - off < kBlock)
      throw DataError(at_offset(label, off) + ": truncated tar (partial header block)");
    if (read(off, h, kBlock) != kBlock)
      throw DataError(at_offset(label, off) + ": truncated tar (short read of header)");
    if (all_zero(h)) break;  // end of archive
    if (!checksum_ok(h)) throw DataError(at_offset(label, off) + ": bad tar header checksum");
    uint64_t size = 0;
    if (!parse_number(h + 124, 12, size))
      throw DataError(at_offset(label, off) + ": bad tar size field");
    char type = static_cast<char>(h[156]);
    if (next_has_size && (type == '0' || type == 0 || type == '7')) size = next_size;
    uint64_t data_off = off + kBlock;
    if (size > file_size - data_off) {
      std::string nm = field_string(h, 100);
      throw DataError(at_offset(label, off) + ": truncated tar: member '" + nm + "' needs " +
                      std::to_string(size) + " bytes but only " +
                      std::to_string(file_size - data_off) + " remain");
    }
    uint64_t padded = (size + kBlock - 1) / kBlock * kBlock;
    if (type == 'x' || type == 'g' || type == 'L') {
      if (size > kMaxMeta) throw DataError(at_offset(label, off) + ": oversized tar metadata");
      std::string payload(size, '\0');
      if (size && read(data_off, payload.data(), size) != size)
        throw DataError(at_offset(label, off) + ": truncated tar metadata");
      if (type == 'x') {
        parse_pax(payload, next_path, next_has_size, next_size, at_offset(label, off));
      } else if (type == 'L') {
        next_path = field_string(reinterpret_cast<const unsigned char*>(payload.data()), payload.size());
      }  // 'g' (global pax) carries nothing we use
    } else {
      if (type == '0' || type == 0 || type == '7') {
        TarMember m;
        if (!next_path.empty()) {
          m.name = next_path;
        } else {
          std::string name = field_string(h, 100);
          std::string prefix = std::memcmp(h + 257, "ustar", 5) == 0 ? field_string(h + 345, 155) : "";
          m.name = prefix.empty() ? name : prefix + "/" + name;
        }
        m.offset = data_off;
        m.size = size;
        out.push_back(std::move(m));
      }
      next_path.clear();
      next_has_size = false;
      next_size = 0;
    }
    if (padded > file_size - data_off) {
      // data fits but the final padding is cut: accept only when nothing follows
      off = file_size;
    } else {
      off = data_off + padded;
    }
  }
  return out;
}

std::vector<TarMember> index_tar_buffer(const void* data, size_t n, const std::string& label) {
  const auto* base = static_cast<const unsigned char*>(data);
  ReadAtFn rd = [base, n](uint64_t off, void* buf, size_t len) -> size_t {
    if (off >= n) return 0;
    size_t k = std::min<uint64_t>(len, n - off);
    std::memcpy(buf, base + off, k);
    return k;
  };
  return index_tar(rd, n, label);
}

TarWriter::TarWriter(const std::string& path) : path_(path) {
  f_ = std::fopen(path.c_str(), "wb");
  if (!f_) throw_errno("cannot create tar shard", path);
}

TarWriter::~TarWriter() {
  if (f_) std::fclose(f_);
}

void TarWriter::write_raw(const void* p, size_t n) {
  if (n && std::fwrite(p, 1, n, f_) != n) throw_errno("cannot write tar shard", path_);
  written_ += n;
}

void TarWriter::write_header(const std::string& name, uint64_t size, char type) {
  unsigned char h[kBlock];
  std::memset(h, 0, kBlock);
  std::memcpy(h, name.data(), std::min<size_t>(name.size(), 100));
  std::snprintf(reinterpret_cast<char*>(h + 100), 8, "%07o", 0644);
  std::snprintf(reinterpret_cast<char*>(h + 108), 8, "%07o", 0);
  std::snprintf(reinterpret_cast<char*>(h + 116), 8, "%07o", 0);
  std::snprintf(reinterpret_cast<char*>(h + 124), 12, "%011llo", static_cast<unsigned long long>(size));
  std::snprintf(reinterpret_cast<char*>(h + 136), 12, "%011o", 0);
  h[156] = static_cast<unsigned char>(type);
  std::memcpy(h + 257, "ustar", 6);
  h[263] = '0';
  h[264] = '0';
  std::memset(h + 148, ' ', 8);
  unsigned sum = 0;
  for (unsigned char c : h) sum += c;
  std::snprintf(reinterpret_cast<char*>(h + 148), 8, "%06o", sum);
  h[155] = ' ';
  write_raw(h, kBlock);
}

void TarWriter::add(const std::string& name, const void* data, size_t n) {
  if (!f_) throw Error("TarWriter::add after finish on '" + path_ + "'");
  if (n >= (1ULL << 33)) throw DataError("tar member '" + name + "' too large for ustar");
  static const char zeros[kBlock] = {};
  if (name.size() > 100) {
    std::string rec = " path=" + name + "\n";
    // the length prefix counts itself: find the fixed point
    size_t len = rec.size() + 1;
    while (std::to_string(len).size() + rec.size() != len) len = std::to_string(len).size() + rec.size();
    rec = std::to_string(len) + rec;
    write_header("././@PaxHeader", rec.size(), 'x');
    write_raw(rec.data(), rec.size());
    write_raw(zeros, (kBlock - rec.size() % kBlock) % kBlock);
  }
  write_header(name, n, '0');
  write_raw(data, n);
  write_raw(zeros, (kBlock - n % kBlock) % kBlock);
}

void TarWriter::finish() {
  if (!f_) return;
  static const char zeros[kBlock] = {};
  write_raw(zeros, kBlock);
  write_raw(zeros, kBlock);
  while (written_ % 10240) write_raw(zeros, kBlock);
  if (std::fflush(f_) != 0) throw_errno("cannot flush tar shard", path_);
  int rc = std::fclose(f_);
  f_ = nullptr;
  if (rc != 0) throw_errno("cannot close tar shard", path_);
}

}  // namespace openlm::data
