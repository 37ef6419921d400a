#include "openlm_cpp/checkpoint/tensor_file.h"

#include <ATen/ATen.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "openlm_cpp/checkpoint/atomic_file.h"
#include "openlm_cpp/core/error.h"
#include "openlm_cpp/core/torch_compat.h"

namespace openlm::checkpoint {

using safetensors::DType;

// Dtypes newer LibTorch releases added are guarded by core/torch_compat.h's OPENLM_HAS_* macros.

DType to_safetensors_dtype(c10::ScalarType t, const std::string& tensor) {
  switch (t) {
    case c10::ScalarType::Bool: return DType::BOOL;
    case c10::ScalarType::Byte: return DType::U8;
    case c10::ScalarType::Char: return DType::I8;
    case c10::ScalarType::Short: return DType::I16;
    case c10::ScalarType::Int: return DType::I32;
    case c10::ScalarType::Long: return DType::I64;
    case c10::ScalarType::Half: return DType::F16;
    case c10::ScalarType::BFloat16: return DType::BF16;
    case c10::ScalarType::Float: return DType::F32;
    case c10::ScalarType::Double: return DType::F64;
#if OPENLM_HAS_FLOAT8
    case c10::ScalarType::Float8_e5m2: return DType::F8_E5M2;
    case c10::ScalarType::Float8_e4m3fn: return DType::F8_E4M3;
#endif
#if OPENLM_HAS_UINT_WIDE
    case c10::ScalarType::UInt16: return DType::U16;
    case c10::ScalarType::UInt32: return DType::U32;
    case c10::ScalarType::UInt64: return DType::U64;
#endif
    default:
      throw Error("tensor '" + tensor + "': dtype " + std::string(c10::toString(t)) +
                  " cannot be stored in safetensors");
  }
}

c10::ScalarType to_scalar_type(DType d, const std::string& file, const std::string& tensor) {
  switch (d) {
    case DType::BOOL: return c10::ScalarType::Bool;
    case DType::U8: return c10::ScalarType::Byte;
    case DType::I8: return c10::ScalarType::Char;
    case DType::I16: return c10::ScalarType::Short;
    case DType::I32: return c10::ScalarType::Int;
    case DType::I64: return c10::ScalarType::Long;
    case DType::F16: return c10::ScalarType::Half;
    case DType::BF16: return c10::ScalarType::BFloat16;
    case DType::F32: return c10::ScalarType::Float;
    case DType::F64: return c10::ScalarType::Double;
#if OPENLM_HAS_FLOAT8
    case DType::F8_E5M2: return c10::ScalarType::Float8_e5m2;
    case DType::F8_E4M3: return c10::ScalarType::Float8_e4m3fn;
#endif
#if OPENLM_HAS_UINT_WIDE
    case DType::U16: return c10::ScalarType::UInt16;
    case DType::U32: return c10::ScalarType::UInt32;
    case DType::U64: return c10::ScalarType::UInt64;
#endif
    default:
      throw DataError(file + ": tensor '" + tensor + "' has dtype " + safetensors::dtype_name(d) +
                      ", which this LibTorch (" TORCH_VERSION ") cannot represent");
  }
}

// ---------------------------------------------------------------------------------------------
// Saving

namespace {

// Shape and byte count of a tensor as the writer sees it (data filled in later, one at a time).
safetensors::TensorBytes describe(const std::string& name, const at::Tensor& t) {
  if (!t.defined()) throw Error("tensor '" + name + "' is undefined");
  if (t.layout() != c10::kStrided) throw Error("tensor '" + name + "' is not dense (sparse/mkldnn layout)");
  safetensors::TensorBytes b;
  b.name = name;
  b.dtype = to_safetensors_dtype(t.scalar_type(), name);
  for (int64_t s : t.sizes()) b.shape.push_back(static_cast<uint64_t>(s));
  b.nbytes = static_cast<uint64_t>(t.numel()) * t.element_size();
  return b;
}

// CPU, contiguous, and owning its storage span exactly (a view of a bigger storage is fine since
// we only read numel*itemsize bytes from data_ptr()).
at::Tensor host_contiguous(const at::Tensor& t) {
  at::Tensor c = t.is_cpu() ? t : t.to(at::kCPU);
  return c.contiguous();
}

constexpr uint64_t kPiece = uint64_t{1} << 20;

/// Writes the file; returns the xxh64 of its bytes, hashed as they are written (no read-back).
uint64_t write_one(const std::string& path, const NamedTensors& tensors, const Metadata& extra,
                   TensorGate* gate = nullptr) {
  std::vector<safetensors::TensorBytes> desc;
  desc.reserve(tensors.size());
  for (const auto& [name, t] : tensors) desc.push_back(describe(name, t));
  safetensors::Plan plan = safetensors::plan(desc, extra, path);
  std::unique_ptr<XXH64_state_t, XXH_errorcode (*)(XXH64_state_t*)> hash(XXH64_createState(), XXH64_freeState);
  XXH64_reset(hash.get(), 0);
  fs::AtomicFile f(path);
  f.write(plan.prefix);
  XXH64_update(hash.get(), plan.prefix.data(), plan.prefix.size());
  for (size_t i : plan.order) {
    if (desc[i].nbytes == 0) continue;
    at::Tensor c = host_contiguous(gate ? gate->take(i) : tensors[i].second);
    struct GiveBack {  // ends a gated read however the write ends
      TensorGate* g;
      size_t i;
      ~GiveBack() {
        if (g) g->give_back(i);
      }
    } give_back{gate, i};
    // In 1 MiB pieces, each hashed right after it is written (still in cache); a background writer
    // also returns to user space often, where the scheduler can hand its core to training.
    const char* b = static_cast<const char*>(c.data_ptr());
    for (uint64_t off = 0; off < desc[i].nbytes; off += kPiece) {
      const uint64_t n = std::min<uint64_t>(kPiece, desc[i].nbytes - off);
      f.write(b + off, n);
      XXH64_update(hash.get(), b + off, n);
    }
  }
  if (f.size() != plan.file_size())
    throw IoError("'" + path + "': wrote " + std::to_string(f.size()) + " bytes, expected " +
                  std::to_string(plan.file_size()));
  f.commit();
  return XXH64_digest(hash.get());
}

}  // namespace

void save_safetensors(const std::string& path, const NamedTensors& tensors, const Metadata& extra) {
  write_one(path, tensors, extra);
}

uint64_t save_safetensors_hashed(const std::string& path, const NamedTensors& tensors, const Metadata& extra,
                                 TensorGate* gate) {
  return write_one(path, tensors, extra, gate);
}

void save_safetensors(const std::string& path, const TensorMap& tensors, const Metadata& extra) {
  write_one(path, NamedTensors(tensors.begin(), tensors.end()), extra);
}

// ---------------------------------------------------------------------------------------------
// Loading

struct SafetensorsFile::Mapping {
  void* addr = nullptr;
  size_t len = 0;
  int fd = -1;  // kept open for pread copies
  ~Mapping() {
    if (addr) ::munmap(addr, len);
    if (fd >= 0) ::close(fd);
  }
};

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw_errno("cannot open safetensors file", path);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    errno = e;
    throw_errno("cannot stat", path);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw DataError(path + ": not a regular file");
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  map_ = std::make_shared<Mapping>();
  map_->fd = fd;
  if (size > 0) {
    // Private + writable: zero-copy tensors may be modified in place without touching the file.
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) throw_errno("cannot mmap", path);  // ~Mapping closes fd
    map_->addr = p;
    map_->len = size;
  }
  static const char kEmpty[8] = {};
  header_ = safetensors::parse(map_->addr ? map_->addr : kEmpty, size, path);
  for (size_t i = 0; i < header_.tensors.size(); ++i) index_[header_.tensors[i].name] = i;
}

SafetensorsFile::~SafetensorsFile() = default;
SafetensorsFile::SafetensorsFile(SafetensorsFile&&) noexcept = default;
SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&&) noexcept = default;

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  out.reserve(header_.tensors.size());
  for (const auto& t : header_.tensors) out.push_back(t.name);
  return out;
}

const safetensors::TensorInfo& SafetensorsFile::info(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) throw DataError(path_ + ": no tensor named '" + name + "'");
  return header_.tensors[it->second];
}

at::Tensor SafetensorsFile::get(const std::string& name, bool zero_copy) const {
  const auto& ti = info(name);
  const auto st = to_scalar_type(ti.dtype, path_, name);
  std::vector<int64_t> sizes;
  for (uint64_t d : ti.shape) {
    if (d > static_cast<uint64_t>(INT64_MAX)) throw DataError(path_ + ": tensor '" + name + "' dimension too large");
    sizes.push_back(static_cast<int64_t>(d));
  }
  auto opts = at::TensorOptions().dtype(st).device(at::kCPU);
  char* src = static_cast<char*>(map_->addr) + header_.data_start() + ti.begin;
  const size_t item = safetensors::dtype_size(ti.dtype);
  if (zero_copy && ti.nbytes() > 0 && reinterpret_cast<uintptr_t>(src) % item == 0) {
    std::shared_ptr<Mapping> keep = map_;
    return at::from_blob(src, sizes, [keep](void*) mutable { keep.reset(); }, opts);
  }
  // Copies use pread rather than touching the mapping: reading a cold 1 GB file measured 0.6-0.75
  // GB/s with pread against 0.18-0.34 GB/s faulting pages in through the mapping.
  at::Tensor out = at::empty(sizes, opts);
  char* dst = static_cast<char*>(out.data_ptr());
  uint64_t off = header_.data_start() + ti.begin, left = ti.nbytes();
  while (left > 0) {
    ssize_t r = ::pread(map_->fd, dst, std::min<uint64_t>(left, uint64_t(1) << 30), static_cast<off_t>(off));
    if (r < 0) {
      if (errno == EINTR) continue;
      throw_errno("read failed for tensor '" + name + "' in", path_);
    }
    if (r == 0) throw DataError(path_ + ": file shrank while reading tensor '" + name + "'");
    dst += r;
    off += static_cast<uint64_t>(r);
    left -= static_cast<uint64_t>(r);
  }
  return out;
}

TensorMap SafetensorsFile::load_all(bool zero_copy) const {
  TensorMap out;
  for (const auto& t : header_.tensors) out.emplace(t.name, get(t.name, zero_copy));
  return out;
}

TensorMap load_safetensors(const std::string& path, Metadata* metadata_out) {
  SafetensorsFile f(path);
  if (metadata_out) *metadata_out = f.metadata();
  return f.load_all(false);
}

// ---------------------------------------------------------------------------------------------
// Sharded sets

namespace {

std::string shard_name(const std::string& prefix, size_t i, size_t n) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "-%05zu-of-%05zu.safetensors", i, n);
  return prefix + buf;
}

bool is_shard_of(const std::string& file, const std::string& prefix) {
  // <prefix>-DDDDD-of-DDDDD.safetensors
  const std::string tail = ".safetensors";
  if (file.size() != prefix.size() + 1 + 5 + 4 + 5 + tail.size()) return false;
  if (file.compare(0, prefix.size(), prefix) != 0 || file[prefix.size()] != '-') return false;
  const std::string mid = file.substr(prefix.size() + 1, 14);  // DDDDD-of-DDDDD
  if (mid.compare(5, 4, "-of-") != 0) return false;
  for (size_t i : {0, 1, 2, 3, 4, 9, 10, 11, 12, 13})
    if (!std::isdigit(static_cast<unsigned char>(mid[i]))) return false;
  return file.compare(file.size() - tail.size(), tail.size(), tail) == 0;
}

}  // namespace

ShardedSave save_sharded(const std::string& dir, const NamedTensors& tensors, uint64_t max_shard_bytes,
                         const Metadata& extra, const std::string& prefix) {
  namespace stdfs = std::filesystem;
  if (max_shard_bytes == 0) throw Error("save_sharded: max shard size must be positive");
  std::error_code ec;
  stdfs::create_directories(dir, ec);
  if (ec) throw IoError("cannot create directory '" + dir + "': " + ec.message());

  // File order (dtype desc, then name) decides shard membership, so it matches what
  // the per-shard writer does and is deterministic.
  std::vector<safetensors::TensorBytes> desc;
  for (const auto& [name, t] : tensors) desc.push_back(describe(name, t));
  safetensors::Plan all = safetensors::plan(desc, extra, dir);  // also rejects duplicates
  std::vector<std::vector<size_t>> shards;
  uint64_t cur = 0;
  for (size_t i : all.order) {
    if (shards.empty() || (cur > 0 && cur + desc[i].nbytes > max_shard_bytes)) {
      shards.emplace_back();
      cur = 0;
    }
    shards.back().push_back(i);
    cur += desc[i].nbytes;
  }
  if (shards.empty()) shards.emplace_back();

  ShardedSave out;
  out.total_size = all.data_size;
  const std::string index_name = prefix + ".safetensors.index.json";
  if (shards.size() == 1) {
    out.files.push_back(prefix + ".safetensors");
    write_one(dir + "/" + out.files[0], tensors, extra);
  } else {
    nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
    std::vector<std::pair<std::string, std::string>> entries;
    for (size_t s = 0; s < shards.size(); ++s) {
      const std::string fname = shard_name(prefix, s + 1, shards.size());
      NamedTensors part;
      for (size_t i : shards[s]) {
        part.push_back(tensors[i]);
        entries.emplace_back(tensors[i].first, fname);
      }
      write_one(dir + "/" + fname, part, extra);
      out.files.push_back(fname);
    }
    std::sort(entries.begin(), entries.end());
    for (const auto& [name, fname] : entries) weight_map[name] = fname;
    nlohmann::ordered_json index = {{"metadata", {{"total_size", out.total_size}}},
                                    {"weight_map", std::move(weight_map)}};
    fs::write_file_atomic(dir + "/" + index_name, index.dump(2) + "\n");
    out.index = index_name;
  }

  // Remove leftovers of an earlier save with the same prefix (the new set is complete by now).
  std::set<std::string> keep(out.files.begin(), out.files.end());
  if (!out.index.empty()) keep.insert(out.index);
  for (const auto& e : stdfs::directory_iterator(dir, ec)) {
    const std::string f = e.path().filename().string();
    bool ours = f == index_name || f == prefix + ".safetensors" || is_shard_of(f, prefix);
    if (ours && !keep.count(f)) stdfs::remove(e.path(), ec);
  }
  fs::fsync_dir(dir);
  return out;
}

TensorMap load_sharded(const std::string& path) {
  namespace stdfs = std::filesystem;
  std::string index_path;
  if (stdfs::is_directory(path)) {
    if (stdfs::exists(path + "/model.safetensors.index.json")) index_path = path + "/model.safetensors.index.json";
    else if (stdfs::exists(path + "/model.safetensors")) return load_safetensors(path + "/model.safetensors");
    else throw IoError("'" + path + "' holds neither model.safetensors nor model.safetensors.index.json");
  } else if (path.size() >= 5 && path.compare(path.size() - 5, 5, ".json") == 0) {
    index_path = path;
  } else {
    return load_safetensors(path);
  }

  nlohmann::json index;
  try {
    index = nlohmann::json::parse(fs::read_file(index_path));
  } catch (const nlohmann::json::exception& e) {
    throw DataError(index_path + ": not valid JSON: " + e.what());
  }
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
    throw DataError(index_path + ": missing object 'weight_map'");
  const std::string dir = fs::parent_dir(index_path);
  std::map<std::string, std::set<std::string>> by_file;  // file -> tensors the index puts there
  for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
    if (!it.value().is_string())
      throw DataError(index_path + ": weight_map['" + it.key() + "'] must be a file name string");
    const std::string f = it.value().get<std::string>();
    if (f.empty() || f.find('/') != std::string::npos || f == "." || f == "..")
      throw DataError(index_path + ": weight_map['" + it.key() + "'] names '" + f +
                      "', which is not a plain file name in the same directory");
    by_file[f].insert(it.key());
  }
  TensorMap out;
  for (const auto& [fname, names] : by_file) {
    SafetensorsFile f(dir + "/" + fname);
    for (const auto& n : names)
      if (!f.contains(n))
        throw DataError(f.path() + ": tensor '" + n + "' listed in " + index_path + " is missing from this shard");
    for (const auto& n : f.names())
      if (!names.count(n))
        throw DataError(f.path() + ": tensor '" + n + "' is not assigned to this shard by " + index_path);
    for (const auto& n : names) out.emplace(n, f.get(n, false));
  }
  return out;
}

uint64_t parse_byte_size(const std::string& text) {
  size_t i = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i;
  if (i == 0 || i > 18) throw Error("invalid byte size '" + text + "' (expected e.g. 5GB, 500MB, 2GiB)");
  uint64_t n = std::stoull(text.substr(0, i));
  std::string unit = text.substr(i);
  for (auto& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  static const std::map<std::string, uint64_t> kUnits = {
      {"", 1},          {"B", 1},
      {"KB", 1000ull},  {"MB", 1000ull * 1000},  {"GB", 1000ull * 1000 * 1000},
      {"KIB", 1ull << 10}, {"MIB", 1ull << 20}, {"GIB", 1ull << 30}, {"TB", 1000ull * 1000 * 1000 * 1000},
      {"TIB", 1ull << 40}};
  auto it = kUnits.find(unit);
  if (it == kUnits.end()) throw Error("invalid byte size '" + text + "': unknown unit '" + text.substr(i) + "'");
  uint64_t r;
  if (__builtin_mul_overflow(n, it->second, &r)) throw Error("byte size '" + text + "' is too large");
  return r;
}

}  // namespace openlm::checkpoint
