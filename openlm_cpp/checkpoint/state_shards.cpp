#include "openlm_cpp/checkpoint/state_shards.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <filesystem>

#include "openlm_cpp/checkpoint/atomic_file.h"
#include "openlm_cpp/checkpoint/native_checkpoint.h"
#include "openlm_cpp/core/error.h"

namespace stdfs = std::filesystem;

namespace openlm::checkpoint {

nlohmann::json slice_layout(const std::string& file, int rank, const std::vector<StateSlice>& slices) {
  nlohmann::json tensors = nlohmann::json::object();
  for (auto& s : slices) tensors[s.name] = {{"shape", s.shape}, {"range", {s.begin, s.end}}};
  return {{"file", file}, {"rank", rank}, {"tensors", std::move(tensors)}};
}

NamedTensors slice_tensors(const std::vector<StateSlice>& slices) {
  NamedTensors out;
  out.reserve(slices.size());
  for (auto& s : slices) out.emplace_back(s.name, s.data);
  return out;
}

StateReader::~StateReader() = default;

StateReader::StateReader(const std::string& dir, const nlohmann::json& meta, const std::string& kind) : dir_(dir) {
  auto bad = [&](const std::string& what) { return DataError("checkpoint '" + dir + "': " + what); };
  if (!meta.contains("shards")) {
    // One file of full tensors (import-hf output, or a hand-made checkpoint).
    stdfs::path p = checkpoint_member(dir, kind + ".safetensors", "the checkpoint layout");
    if (!stdfs::exists(p)) return;
    files_.push_back(std::make_unique<SafetensorsFile>(p.string()));
    for (auto& name : files_[0]->names()) {
      auto& info = files_[0]->info(name);
      Entry e;
      e.shape.assign(info.shape.begin(), info.shape.end());
      int64_t n = 1;
      for (auto d : e.shape) n *= d;
      e.pieces.push_back({0, n, 0, name});
      index_[name] = std::move(e);
    }
    return;
  }
  const auto& shards = meta["shards"];
  if (!shards.is_object() || !shards.contains(kind) || !shards[kind].is_array())
    throw bad("metadata.json 'shards' lacks a '" + kind + "' list");
  for (auto& f : shards[kind]) {
    if (!f.is_object() || !f.contains("file") || !f["file"].is_string() || !f.contains("tensors") ||
        !f["tensors"].is_object())
      throw bad("metadata.json 'shards." + kind + "' has an entry without 'file' and 'tensors'");
    const std::string file = f["file"].get<std::string>();
    if (file.find('/') != std::string::npos || file == "..")
      throw bad("metadata.json names a shard outside the checkpoint: '" + file + "'");
    // A regular file inside the checkpoint, never a symlink or device (as for 'files').
    files_.push_back(std::make_unique<SafetensorsFile>(checkpoint_member(dir, file, "metadata.json 'shards." + kind + "'")));
    const SafetensorsFile& sf = *files_.back();
    for (auto& [name, t] : f["tensors"].items()) {
      try {
        auto shape = t.at("shape").get<std::vector<int64_t>>();
        auto range = t.at("range").get<std::vector<int64_t>>();
        int64_t n = 1;
        for (auto d : shape) {
          if (d < 0) throw bad("tensor '" + name + "' in " + file + " has a negative dimension");
          n *= d;
        }
        if (range.size() != 2 || range[0] < 0 || range[0] > range[1] || range[1] > n)
          throw bad("tensor '" + name + "' in " + file + " has a range outside its " + std::to_string(n) + " elements");
        if (!sf.contains(name)) throw bad(file + " lacks tensor '" + name + "' listed in metadata.json");
        auto& info = sf.info(name);
        int64_t stored = 1;
        for (auto d : info.shape) stored *= static_cast<int64_t>(d);
        if (stored != range[1] - range[0])
          throw bad("tensor '" + name + "' in " + file + " holds " + std::to_string(stored) + " elements, its range " +
                    std::to_string(range[1] - range[0]));
        Entry& e = index_[name];
        if (!e.pieces.empty() && e.shape != shape)
          throw bad("tensor '" + name + "' has different shapes in different shards");
        e.shape = shape;
        e.pieces.push_back({range[0], range[1], files_.size() - 1, name});
      } catch (const nlohmann::json::exception& ex) {
        throw bad("metadata.json entry for '" + name + "' in " + file + ": " + ex.what());
      }
    }
  }
  for (auto& [name, e] : index_)
    std::sort(e.pieces.begin(), e.pieces.end(), [](const Piece& a, const Piece& b) { return a.begin < b.begin; });
}

std::vector<std::string> StateReader::names() const {
  std::vector<std::string> out;
  for (auto& [n, e] : index_) out.push_back(n);
  return out;
}

const std::vector<int64_t>& StateReader::shape(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) throw DataError("checkpoint '" + dir_ + "' lacks tensor '" + name + "'");
  return it->second.shape;
}

void StateReader::read(const std::string& name, int64_t begin, int64_t end, const at::Tensor& out) const {
  auto it = index_.find(name);
  if (it == index_.end()) throw DataError("checkpoint '" + dir_ + "' lacks tensor '" + name + "'");
  at::NoGradGuard no_grad;
  int64_t covered = begin;  // pieces are sorted; replicated pieces may overlap and agree
  for (auto& p : it->second.pieces) {
    if (p.end <= covered || p.begin >= end) continue;
    if (p.begin > covered) break;  // a hole
    const int64_t b = std::min(p.end, end);
    at::Tensor src = files_[p.file]->get(p.key, /*zero_copy=*/true).reshape({-1});
    out.narrow(0, covered - begin, b - covered).copy_(src.narrow(0, covered - p.begin, b - covered));
    covered = b;
    if (covered == end) break;
  }
  if (covered < end)
    throw DataError("checkpoint '" + dir_ + "': elements [" + std::to_string(covered) + ", " + std::to_string(end) +
                    ") of tensor '" + name + "' are in no shard file");
}

at::Tensor StateReader::full(const std::string& name) const {
  const auto& shape = this->shape(name);
  const Entry& e = index_.at(name);
  const SafetensorsFile& f = *files_[e.pieces.front().file];
  auto dtype = to_scalar_type(f.info(e.pieces.front().key).dtype, f.path(), e.pieces.front().key);
  at::Tensor t = at::empty(shape, at::TensorOptions().dtype(dtype));
  read(name, 0, t.numel(), t.view({-1}));
  return t;
}

TensorMap StateReader::all() const {
  TensorMap out;
  for (auto& [n, e] : index_) out[n] = full(n);
  return out;
}

void StateReader::check(const std::vector<StateSlice>& wanted) const {
  std::string problems;
  int count = 0;
  for (auto& s : wanted) {
    auto it = index_.find(s.name);
    std::string p;
    if (it == index_.end()) {
      p = "'" + s.name + "' missing";
    } else if (it->second.shape != s.shape) {
      p = "'" + s.name + "' has shape " + nlohmann::json(it->second.shape).dump() + ", the model " +
          nlohmann::json(s.shape).dump();
    }
    if (p.empty()) continue;
    if (++count <= 20) problems += (problems.empty() ? "" : "; ") + p;
  }
  if (count > 0)
    throw DataError("checkpoint '" + dir_ + "' does not fit this model: " + problems +
                    (count > 20 ? " (and " + std::to_string(count - 20) + " more)" : ""));
}

void StateReader::read_into(const std::vector<StateSlice>& into) const {
  check(into);
  for (auto& s : into) read(s.name, s.begin, s.end, s.data);
}

TensorMap load_model_weights(const std::string& source) {
  stdfs::path p(source);
  if (stdfs::is_regular_file(p)) return load_safetensors(source);
  if (!stdfs::is_directory(p)) throw IoError("'" + source + "' does not exist");
  if (stdfs::exists(p / "metadata.json")) {
    auto meta = verify_checkpoint(source);
    return StateReader(source, meta, "model").all();
  }
  if (stdfs::exists(p / "model.safetensors")) return load_safetensors((p / "model.safetensors").string());
  if (stdfs::exists(p / "checkpoints")) {
    std::string dir = resolve_checkpoint(source, "latest");
    if (!dir.empty()) return StateReader(dir, verify_checkpoint(dir), "model").all();
  }
  throw IoError("'" + source + "' holds no model.safetensors, no checkpoint metadata.json and no complete "
                "checkpoint (expected a run directory, a checkpoint directory or a .safetensors file)");
}

}  // namespace openlm::checkpoint
