#include "openlm_cpp/train/tb_writer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>

#include "openlm_cpp/core/error.h"

namespace openlm::tb {
namespace {

constexpr std::array<uint32_t, 256> make_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    t[i] = c;
  }
  return t;
}
constexpr std::array<uint32_t, 256> kTable = make_table();

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

void put_fixed(std::string& out, const void* p, size_t n) {  // little-endian host
  out.append(static_cast<const char*>(p), n);
}

// Field key: (field number << 3) | wire type.
void put_key(std::string& out, uint32_t field, uint32_t wire) { put_varint(out, (field << 3) | wire); }

void put_bytes(std::string& out, uint32_t field, std::string_view s) {
  put_key(out, field, 2);
  put_varint(out, s.size());
  out.append(s.data(), s.size());
}

void put_double(std::string& out, uint32_t field, double v) {
  put_key(out, field, 1);
  put_fixed(out, &v, 8);
}

double now_seconds() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

}  // namespace

uint32_t crc32c(const void* data, size_t n, uint32_t crc) {
  const auto* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) crc = kTable[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

uint32_t masked_crc32c(const void* data, size_t n) {
  uint32_t c = crc32c(data, n);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

std::string frame_record(std::string_view payload) {
  std::string out;
  out.reserve(payload.size() + 16);
  uint64_t len = payload.size();
  put_fixed(out, &len, 8);
  uint32_t len_crc = masked_crc32c(&len, 8);
  put_fixed(out, &len_crc, 4);
  out.append(payload.data(), payload.size());
  uint32_t data_crc = masked_crc32c(payload.data(), payload.size());
  put_fixed(out, &data_crc, 4);
  return out;
}

std::string encode_file_version_event(double wall_time) {
  std::string ev;
  put_double(ev, 1, wall_time);
  put_bytes(ev, 3, "brain.Event:2");
  return ev;
}

std::string encode_scalars_event(double wall_time, int64_t step,
                                 const std::vector<std::pair<std::string, float>>& values) {
  std::string summary;
  for (const auto& [tag, v] : values) {
    std::string value;
    put_bytes(value, 1, tag);
    put_key(value, 2, 5);  // simple_value: fixed32 float
    put_fixed(value, &v, 4);
    put_bytes(summary, 1, value);
  }
  std::string ev;
  put_double(ev, 1, wall_time);
  put_key(ev, 2, 0);
  put_varint(ev, static_cast<uint64_t>(step));  // int64: negatives take 10 bytes, as protobuf does
  put_bytes(ev, 5, summary);
  return ev;
}

TbWriter::TbWriter(const std::string& log_dir) {
  std::error_code ec;
  std::filesystem::create_directories(log_dir, ec);
  if (ec) throw IoError("cannot create TensorBoard directory '" + log_dir + "': " + ec.message());
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') std::strcpy(host, "localhost");
  char base[64];
  std::snprintf(base, sizeof base, "events.out.tfevents.%010lld.", static_cast<long long>(std::time(nullptr)));
  const std::string stem = log_dir + "/" + base + host;
  for (int n = 0; fd_ < 0; ++n) {
    path_ = n == 0 ? stem : stem + "." + std::to_string(::getpid()) + "." + std::to_string(n);
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0644);
    if (fd_ < 0 && (errno != EEXIST || n > 1000)) throw_errno("cannot create TensorBoard event file", path_);
  }
  write_record(encode_file_version_event(now_seconds()));
}

TbWriter::~TbWriter() { close(); }

void TbWriter::add_scalar(const std::string& tag, double value, int64_t step, double wall_time) {
  add_scalars({{tag, value}}, step, wall_time);
}

void TbWriter::add_scalars(const std::vector<std::pair<std::string, double>>& values, int64_t step,
                           double wall_time) {
  std::vector<std::pair<std::string, float>> f;
  f.reserve(values.size());
  for (const auto& [t, v] : values) f.emplace_back(t, static_cast<float>(v));
  write_record(encode_scalars_event(wall_time < 0 ? now_seconds() : wall_time, step, f));
}

void TbWriter::write_record(const std::string& payload) {
  const std::string rec = frame_record(payload);
  std::lock_guard<std::mutex> lock(mu_);
  if (fd_ < 0) throw IoError("TensorBoard event file '" + path_ + "' is closed");
  const char* p = rec.data();
  size_t n = rec.size();
  while (n > 0) {
    ssize_t w = ::write(fd_, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      throw_errno("cannot write TensorBoard event file", path_);
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
}

void TbWriter::flush() {
  std::lock_guard<std::mutex> lock(mu_);
  if (fd_ >= 0 && ::fsync(fd_) != 0 && errno != EINVAL) throw_errno("fsync failed for", path_);
}

void TbWriter::close() {
  std::lock_guard<std::mutex> lock(mu_);
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

}  // namespace openlm::tb
