#include "openlm_cpp/checkpoint/torch_save.h"

#include <ATen/ATen.h>
#include <caffe2/serialize/inline_container.h>

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <tuple>

#include <nlohmann/json.hpp>

#include "openlm_cpp/checkpoint/atomic_file.h"
#include "openlm_cpp/checkpoint/pt_pickle.h"
#include "openlm_cpp/core/error.h"

namespace stdfs = std::filesystem;

namespace openlm::checkpoint {
namespace {

/// "module.x", "_orig_mod.module.x" -> "x" (DDP/FSDP and torch.compile wrappers).
std::string strip_wrappers(std::string n) {
  for (;;) {
    if (n.rfind("module.", 0) == 0) n.erase(0, 7);
    else if (n.rfind("_orig_mod.", 0) == 0) n.erase(0, 10);
    else return n;
  }
}

/// torch.save storage class name -> dtype (nullopt for types we do not import).
std::optional<at::ScalarType> storage_dtype(const std::string& type) {
  static const std::map<std::string, at::ScalarType> kTypes = {
      {"FloatStorage", at::kFloat},   {"DoubleStorage", at::kDouble}, {"HalfStorage", at::kHalf},
      {"BFloat16Storage", at::kBFloat16}, {"LongStorage", at::kLong}, {"IntStorage", at::kInt},
      {"ShortStorage", at::kShort},   {"CharStorage", at::kChar},     {"ByteStorage", at::kByte},
      {"BoolStorage", at::kBool}};
  auto it = kTypes.find(type);
  if (it == kTypes.end()) return std::nullopt;
  return it->second;
}

/// The first line of a c10::Error (the rest is a C++ backtrace).
std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

}  // namespace

bool is_rotary_buffer(const std::string& name) {
  static const std::string kSuffix = ".inv_freq";
  return name.size() >= kSuffix.size() && name.compare(name.size() - kSuffix.size(), kSuffix.size(), kSuffix) == 0;
}

TensorMap read_torch_save(const std::string& file, bool strip) {
  std::unique_ptr<caffe2::serialize::PyTorchStreamReader> zip;
  try {
    zip = std::make_unique<caffe2::serialize::PyTorchStreamReader>(file);
  } catch (const c10::Error& e) {
    throw DataError(file + ": not a zip-format torch.save file (" + first_line(e.what_without_backtrace()) +
                    "); the legacy format (_use_new_zipfile_serialization=False) is not supported: load and "
                    "re-save it with torch.save");
  }
  auto [pkl, pkl_size] = zip->getRecord("data.pkl");
  auto doc = pickle::parse(static_cast<const uint8_t*>(pkl.get()), pkl_size, file + ": data.pkl");
  const pickle::Value* root = doc->root;
  if (!root->is(pickle::Value::Kind::Dict))
    throw DataError(file + ": expected a dict at the top level, got a " + pickle::Value::kind_name(root->kind));
  const pickle::Value* sd = root;
  const bool nested = root->get("state_dict") != nullptr;  // {"state_dict": ..., "epoch": ...} or a bare state dict
  if (nested) {
    sd = root->get("state_dict");
    if (!sd->is(pickle::Value::Kind::Dict))
      throw DataError(file + ": 'state_dict' is a " + std::string(pickle::Value::kind_name(sd->kind)) +
                      ", expected a dict of tensors");
  }
  TensorMap out;
  Problems p;
  std::map<std::string, std::tuple<at::DataPtr, size_t>> storages;  // record key -> bytes
  for (const auto& [k, v] : sd->dict) {
    if (!k->is(pickle::Value::Kind::String)) continue;
    const std::string& raw = k->s;
    if (!v->is(pickle::Value::Kind::Tensor)) {
      if (nested) p.add("entry '" + raw + "' is a " + pickle::Value::kind_name(v->kind) + ", not a tensor");
      continue;
    }
    const std::string name = strip ? strip_wrappers(raw) : raw;
    if (out.count(name)) p.add("'" + raw + "' duplicates '" + name + "' after stripping prefixes");
    const pickle::TensorRef& t = v->tensor;
    auto dt = storage_dtype(t.storage_type);
    if (!dt) {
      p.add("'" + raw + "': unsupported storage type " + t.storage_type);
      continue;
    }
    if (!at::isFloatingType(*dt) && !is_rotary_buffer(name)) {
      p.add("'" + raw + "': " + t.storage_type + " (weights must be floating point)");
      continue;
    }
    auto it = storages.find(t.storage_key);
    if (it == storages.end()) {
      const std::string rec = "data/" + t.storage_key;
      if (!zip->hasRecord(rec)) {
        p.add("'" + raw + "': storage record " + rec + " is missing from the archive");
        continue;
      }
      it = storages.emplace(t.storage_key, zip->getRecord(rec)).first;
    }
    const int64_t item = static_cast<int64_t>(c10::elementSize(*dt));
    const int64_t numel = static_cast<int64_t>(std::get<1>(it->second)) / item;
    // The view must stay inside the storage: offset + sum((size-1)*stride) < numel.
    int64_t last = t.offset;
    bool ok = t.offset >= 0;
    for (size_t d = 0; d < t.size.size(); ++d) {
      if (t.size[d] < 0 || t.stride[d] < 0) ok = false;
      if (t.size[d] == 0) last = -1;
      if (ok && last >= 0 && t.size[d] > 0) last += (t.size[d] - 1) * t.stride[d];
    }
    if (!ok || last >= numel) {
      p.add("'" + raw + "': view (offset " + std::to_string(t.offset) + ") runs past its storage of " +
            std::to_string(numel) + " elements");
      continue;
    }
    at::Tensor base = at::from_blob(std::get<0>(it->second).get(), {numel}, at::TensorOptions().dtype(*dt));
    out[name] = base.as_strided(t.size, t.stride, t.offset).to(at::kFloat).contiguous().clone();
  }
  p.raise_if_any(file, "bad state_dict entries");
  return out;
}

TensorMap load_torch_bin(const std::string& dir) {
  const stdfs::path d(dir);
  std::vector<std::string> files;
  if (stdfs::exists(d / "pytorch_model.bin.index.json")) {
    const std::string idx = (d / "pytorch_model.bin.index.json").string();
    auto j = nlohmann::json::parse(fs::read_file(idx), nullptr, false);
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      throw DataError(idx + ": missing object 'weight_map'");
    std::set<std::string> names;
    for (auto& v : j["weight_map"])
      if (v.is_string() && v.get<std::string>().find('/') == std::string::npos) names.insert(v.get<std::string>());
      else throw DataError(idx + ": weight_map values must be plain file names");
    files.assign(names.begin(), names.end());
  } else if (stdfs::exists(d / "pytorch_model.bin")) {
    files.push_back("pytorch_model.bin");
  } else {
    throw IoError("'" + dir + "' holds no model.safetensors, model.safetensors.index.json or pytorch_model.bin");
  }
  TensorMap out;
  for (const auto& f : files)
    for (auto& [name, t] : read_torch_save((d / f).string(), /*strip=*/false)) out[name] = t;
  return out;
}

}  // namespace openlm::checkpoint
