#pragma once
/// Training state split into per-rank slices, and its reassembly for any other layout.
///
/// Every rank of a sharded run holds, for each parameter (and each optimizer moment), a contiguous
/// range of the parameter's flat (row-major) elements. A checkpoint stores those ranges as they
/// are: each writing rank puts its slices in its own safetensors file (1-D tensors named after the
/// full tensor), and metadata.json records the layout:
///
///   "shards": {"model": [{"file": "model-shard00000-of-00002.safetensors", "rank": 0,
///                         "tensors": {"<name>": {"shape": [..full shape..], "range": [b, e]}}}, ...],
///              "optim": [...]}
///
/// A StateReader maps the files of one kind and copies any flat range of any tensor out of the
/// slices that cover it, so a rank of a run with another world size or strategy reads exactly the
/// bytes it needs (resharding), and tools read the full tensors. Checkpoints without "shards" (one
/// `model.safetensors` / `optim.safetensors` with full tensors, as written by import-hf) are read
/// through the same interface.
#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "openlm_cpp/checkpoint/tensor_file.h"

namespace openlm::checkpoint {

/// One rank's slice of a tensor: flat elements [begin, end) of `name` (full shape `shape`).
struct StateSlice {
  std::string name;
  std::vector<int64_t> shape;
  int64_t begin = 0, end = 0;
  at::Tensor data;  ///< 1-D, end - begin elements (a view into live state, or a snapshot)
};

/// The layout entry of one file ({"file", "rank", "tensors"}), and the tensors to write into it.
nlohmann::json slice_layout(const std::string& file, int rank, const std::vector<StateSlice>& slices);
NamedTensors slice_tensors(const std::vector<StateSlice>& slices);

class StateReader {
 public:
  /// Opens the files of `kind` ("model" or "optim") of the checkpoint in `dir` whose metadata.json
  /// is `meta` (read and verified by the caller). Throws DataError naming the file on a bad layout.
  StateReader(const std::string& dir, const nlohmann::json& meta, const std::string& kind);
  ~StateReader();

  std::vector<std::string> names() const;
  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  /// Full shape of `name`; throws DataError naming the checkpoint and tensor when absent.
  const std::vector<int64_t>& shape(const std::string& name) const;
  /// Copies flat elements [begin, end) of `name` into `out` (1-D, end - begin elements, any dtype:
  /// values are converted). Throws DataError when some element is in no file.
  void read(const std::string& name, int64_t begin, int64_t end, const at::Tensor& out) const;
  /// The whole tensor `name` in its stored dtype and full shape.
  at::Tensor full(const std::string& name) const;
  /// Every tensor, whole.
  TensorMap all() const;

  /// Checks that the checkpoint holds exactly-shaped tensors for every slice in `wanted`; throws
  /// one DataError listing every missing or mis-shaped tensor.
  void check(const std::vector<StateSlice>& wanted) const;
  /// Fills every slice of `into` (views into live state) from the checkpoint.
  void read_into(const std::vector<StateSlice>& into) const;

 private:
  struct Piece {
    int64_t begin, end;
    std::size_t file;
    std::string key;
  };
  struct Entry {
    std::vector<int64_t> shape;
    std::vector<Piece> pieces;
  };
  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, Entry> index_;
};

/// Full model weights from a checkpoint directory (verified), a run directory (its
/// model.safetensors, else its newest checkpoint) or a .safetensors file.
TensorMap load_model_weights(const std::string& source);

}  // namespace openlm::checkpoint
