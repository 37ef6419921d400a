#include "openlm_cpp/checkpoint/safetensors.h"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>
#include <unordered_set>

#include "openlm_cpp/checkpoint/atomic_file.h"
#include "openlm_cpp/core/error.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors I/O assumes a little-endian host"
#endif

namespace openlm::safetensors {
namespace {

struct DTypeRow {
  DType d;
  const char* name;
  size_t size;
};
constexpr DTypeRow kDTypes[] = {
    {DType::BOOL, "BOOL", 1}, {DType::U8, "U8", 1},   {DType::I8, "I8", 1},
    {DType::F8_E5M2, "F8_E5M2", 1}, {DType::F8_E4M3, "F8_E4M3", 1}, {DType::I16, "I16", 2},
    {DType::U16, "U16", 2},   {DType::F16, "F16", 2}, {DType::BF16, "BF16", 2},
    {DType::I32, "I32", 4},   {DType::U32, "U32", 4}, {DType::F32, "F32", 4},
    {DType::F64, "F64", 8},   {DType::I64, "I64", 8}, {DType::U64, "U64", 8},
};

[[noreturn]] void fail(const std::string& file, const std::string& what) {
  throw DataError(file + ": invalid safetensors file: " + what);
}

// a * b, or nullopt on u64 overflow.
std::optional<uint64_t> mul(uint64_t a, uint64_t b) {
  uint64_t r;
  if (__builtin_mul_overflow(a, b, &r)) return std::nullopt;
  return r;
}

std::optional<uint64_t> checked_numel(const std::vector<uint64_t>& shape) {
  uint64_t n = 1;
  for (uint64_t d : shape) {
    auto r = mul(n, d);
    if (!r) return std::nullopt;
    n = *r;
  }
  return n;
}

using json = nlohmann::json;

// A JSON value that must be a non-negative integer fitting u64.
uint64_t as_u64(const json& v, const std::string& file, const std::string& where) {
  if (!v.is_number_unsigned()) {
    // nlohmann stores non-negative literals as unsigned; negatives, fractions and values beyond
    // u64 (parsed as double) all land here.
    fail(file, where + " must be a non-negative integer, got " + v.dump());
  }
  return v.get<uint64_t>();
}

TensorInfo parse_entry(const std::string& name, const json& v, const std::string& file) {
  const std::string where = "tensor '" + name + "'";
  if (!v.is_object()) fail(file, where + ": entry must be an object, got " + std::string(v.type_name()));
  TensorInfo t;
  t.name = name;
  bool have_dtype = false, have_shape = false, have_offsets = false;
  for (auto it = v.begin(); it != v.end(); ++it) {
    const std::string& k = it.key();
    const json& f = it.value();
    if (k == "dtype") {
      if (!f.is_string()) fail(file, where + ": 'dtype' must be a string");
      auto d = dtype_from_name(f.get_ref<const std::string&>());
      if (!d) fail(file, where + ": unknown dtype " + f.dump());
      t.dtype = *d;
      have_dtype = true;
    } else if (k == "shape") {
      if (!f.is_array()) fail(file, where + ": 'shape' must be an array");
      for (const auto& d : f) t.shape.push_back(as_u64(d, file, where + ": shape entry"));
      have_shape = true;
    } else if (k == "data_offsets") {
      if (!f.is_array() || f.size() != 2) fail(file, where + ": 'data_offsets' must be [begin, end]");
      t.begin = as_u64(f[0], file, where + ": data_offsets[0]");
      t.end = as_u64(f[1], file, where + ": data_offsets[1]");
      have_offsets = true;
    } else {
      fail(file, where + ": unknown field '" + k + "'");
    }
  }
  if (!have_dtype) fail(file, where + ": missing 'dtype'");
  if (!have_shape) fail(file, where + ": missing 'shape'");
  if (!have_offsets) fail(file, where + ": missing 'data_offsets'");
  return t;
}

}  // namespace

size_t dtype_size(DType d) { return kDTypes[static_cast<size_t>(d)].size; }
const char* dtype_name(DType d) { return kDTypes[static_cast<size_t>(d)].name; }
std::optional<DType> dtype_from_name(std::string_view name) {
  for (const auto& r : kDTypes)
    if (name == r.name) return r.d;
  return std::nullopt;
}

uint64_t TensorInfo::numel() const { return checked_numel(shape).value_or(0); }

const TensorInfo* Header::find(std::string_view name) const {
  for (const auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

bool is_valid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* e = p + s.size();
  while (p < e) {
    unsigned c = *p;
    if (c < 0x80) {
      ++p;
      continue;
    }
    int n;
    unsigned cp, min;
    if ((c & 0xE0) == 0xC0) n = 1, cp = c & 0x1F, min = 0x80;
    else if ((c & 0xF0) == 0xE0) n = 2, cp = c & 0x0F, min = 0x800;
    else if ((c & 0xF8) == 0xF0) n = 3, cp = c & 0x07, min = 0x10000;
    else return false;
    if (e - p <= n) return false;
    for (int i = 1; i <= n; ++i) {
      if ((p[i] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    p += n + 1;
  }
  return true;
}

uint64_t parse_header_length(const void* first8, uint64_t file_size, const std::string& file) {
  if (file_size < 8)
    fail(file, "file is " + std::to_string(file_size) + " bytes, shorter than the 8-byte header length");
  uint64_t n;
  std::memcpy(&n, first8, 8);  // little-endian host (checked at compile time)
  if (n > kMaxHeaderSize)
    fail(file, "header length " + std::to_string(n) + " exceeds the limit of " +
                   std::to_string(kMaxHeaderSize) + " bytes");
  if (n > file_size - 8)
    fail(file, "header length " + std::to_string(n) + " runs past the end of the file (" +
                   std::to_string(file_size) + " bytes)");
  return n;
}

Header parse_header_json(std::string_view text, uint64_t file_size, const std::string& file) {
  Header h;
  h.header_len = text.size();
  if (file_size < 8 || text.size() > file_size - 8) fail(file, "header runs past the end of the file");
  if (!is_valid_utf8(text)) fail(file, "header is not valid UTF-8");

  // Duplicate keys: nlohmann keeps the last silently, so track the keys of each open object.
  std::vector<std::unordered_set<std::string>> open;
  auto on_event = [&](int /*depth*/, json::parse_event_t ev, json& parsed) -> bool {
    if (ev == json::parse_event_t::object_start) {
      open.emplace_back();
    } else if (ev == json::parse_event_t::object_end) {
      if (!open.empty()) open.pop_back();
    } else if (ev == json::parse_event_t::key && !open.empty()) {
      const auto& k = parsed.get_ref<const std::string&>();
      if (!open.back().insert(k).second) fail(file, "duplicate key \"" + k + "\" in header");
    }
    return true;
  };
  json root;
  try {
    root = json::parse(text.begin(), text.end(), on_event);
  } catch (const json::exception& e) {
    fail(file, std::string("header is not valid JSON: ") + e.what());
  }
  if (!root.is_object()) fail(file, "header must be a JSON object, got " + std::string(root.type_name()));

  for (auto it = root.begin(); it != root.end(); ++it) {
    if (it.key() == "__metadata__") {
      const json& m = it.value();
      if (m.is_null()) continue;  // the reference reader treats null as absent
      if (!m.is_object()) fail(file, "\"__metadata__\" must be an object of strings");
      for (auto mi = m.begin(); mi != m.end(); ++mi) {
        if (!mi.value().is_string())
          fail(file, "\"__metadata__\" value for '" + mi.key() + "' must be a string");
        h.metadata[mi.key()] = mi.value().get<std::string>();
      }
      h.has_metadata = true;
    } else {
      h.tensors.push_back(parse_entry(it.key(), it.value(), file));
    }
  }

  // Offsets must tile [0, data_size) exactly in offset order (the reference sorts the same way).
  std::sort(h.tensors.begin(), h.tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t cursor = 0;
  for (const auto& t : h.tensors) {
    if (t.begin != cursor) {
      fail(file, "tensor '" + t.name + "' data_offsets [" + std::to_string(t.begin) + ", " +
                     std::to_string(t.end) + "] do not start where the previous tensor ends (" +
                     std::to_string(cursor) + (t.begin < cursor ? "): overlap" : "): gap"));
    }
    if (t.end < t.begin)
      fail(file, "tensor '" + t.name + "' data_offsets end " + std::to_string(t.end) + " < begin " +
                     std::to_string(t.begin));
    auto numel = checked_numel(t.shape);
    if (!numel) fail(file, "tensor '" + t.name + "': shape product overflows");
    auto bytes = mul(*numel, dtype_size(t.dtype));
    if (!bytes) fail(file, "tensor '" + t.name + "': byte size overflows");
    if (t.end - t.begin != *bytes)
      fail(file, "tensor '" + t.name + "': data_offsets span " + std::to_string(t.end - t.begin) +
                     " bytes but shape x " + dtype_name(t.dtype) + " needs " + std::to_string(*bytes));
    cursor = t.end;
  }
  const uint64_t available = file_size - 8 - h.header_len;
  if (cursor > available)
    fail(file, "tensor data ends at byte " + std::to_string(cursor) + " of the data buffer but the file holds only " +
                   std::to_string(available) + " (truncated file?)");
  if (cursor < available)
    fail(file, std::to_string(available - cursor) + " trailing bytes after the last tensor");
  h.data_size = cursor;
  return h;
}

Header parse(const void* data, uint64_t size, const std::string& file) {
  uint64_t n = parse_header_length(data, size, file);
  std::string_view text(static_cast<const char*>(data) + 8, n);
  return parse_header_json(text, size, file);
}

Plan plan(const std::vector<TensorBytes>& tensors, const std::map<std::string, std::string>& metadata,
          const std::string& file) {
  Plan p;
  std::unordered_set<std::string_view> seen;
  for (const auto& t : tensors) {
    if (t.name.empty()) throw Error(file + ": cannot write a tensor with an empty name");
    if (t.name == "__metadata__") throw Error(file + ": '__metadata__' is reserved, not a tensor name");
    if (!is_valid_utf8(t.name)) throw Error(file + ": tensor name is not valid UTF-8");
    if (!seen.insert(t.name).second) throw Error(file + ": duplicate tensor name '" + t.name + "'");
    auto numel = checked_numel(t.shape);
    auto bytes = numel ? mul(*numel, dtype_size(t.dtype)) : std::nullopt;
    if (!bytes || *bytes != t.nbytes)
      throw Error(file + ": tensor '" + t.name + "' has " + std::to_string(t.nbytes) +
                  " bytes, which does not match its shape and dtype " + dtype_name(t.dtype));
  }
  for (const auto& [k, v] : metadata)
    if (!is_valid_utf8(k) || !is_valid_utf8(v)) throw Error(file + ": metadata is not valid UTF-8");

  p.order.resize(tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) p.order[i] = i;
  // Descending dtype (largest alignment first), then name: what the reference writer does.
  std::sort(p.order.begin(), p.order.end(), [&](size_t a, size_t b) {
    if (tensors[a].dtype != tensors[b].dtype) return tensors[a].dtype > tensors[b].dtype;
    return tensors[a].name < tensors[b].name;
  });

  nlohmann::ordered_json hdr = nlohmann::ordered_json::object();
  nlohmann::ordered_json meta = nlohmann::ordered_json::object();
  if (!metadata.count("format")) meta["format"] = "pt";
  for (const auto& [k, v] : metadata) meta[k] = v;
  hdr["__metadata__"] = std::move(meta);
  p.begin.assign(tensors.size(), 0);
  uint64_t off = 0;
  for (size_t i : p.order) {
    const auto& t = tensors[i];
    nlohmann::ordered_json e = nlohmann::ordered_json::object();
    e["dtype"] = dtype_name(t.dtype);
    e["shape"] = t.shape;
    e["data_offsets"] = {off, off + t.nbytes};
    hdr[t.name] = std::move(e);
    p.begin[i] = off;
    off += t.nbytes;
  }
  p.data_size = off;
  std::string text = hdr.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  if (text.size() > kMaxHeaderSize)
    throw Error(file + ": header of " + std::to_string(text.size()) + " bytes exceeds the safetensors limit");
  uint64_t n = text.size();
  p.prefix.resize(8);
  std::memcpy(p.prefix.data(), &n, 8);
  p.prefix += text;
  return p;
}

std::string serialize(const std::vector<TensorBytes>& tensors, const std::map<std::string, std::string>& metadata) {
  Plan p = plan(tensors, metadata, "<memory>");
  std::string out = p.prefix;
  out.reserve(p.file_size());
  for (size_t i : p.order)
    if (tensors[i].nbytes) out.append(static_cast<const char*>(tensors[i].data), tensors[i].nbytes);
  return out;
}

void write_file(const std::string& path, const std::vector<TensorBytes>& tensors,
                const std::map<std::string, std::string>& metadata) {
  Plan p = plan(tensors, metadata, path);
  fs::AtomicFile f(path);
  f.write(p.prefix);
  for (size_t i : p.order)
    if (tensors[i].nbytes) f.write(tensors[i].data, tensors[i].nbytes);
  f.commit();
}

}  // namespace openlm::safetensors
