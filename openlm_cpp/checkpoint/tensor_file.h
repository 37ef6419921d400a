#pragma once
/// Named at::Tensors <-> safetensors files (single files and Hugging Face style sharded sets).
///
/// Saving is atomic per file (<path>.tmp, fsync, rename, fsync dir) and always records
/// __metadata__ {"format": "pt", ...extra}. Tensors may live on any device and need not be
/// contiguous: each is brought to CPU-contiguous form one at a time while writing, so peak extra
/// memory is one tensor. Loading maps the file (mmap) and either copies each tensor out (default:
/// owning tensors, independent of the file) or, with `zero_copy`, returns tensors that alias a
/// private copy-on-write mapping kept alive by the tensors themselves.
#include <ATen/core/Tensor.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "openlm_cpp/checkpoint/safetensors.h"

namespace openlm::checkpoint {

/// Tensors in caller order (the file order is decided by the writer: dtype, then name).
using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;
/// Tensors by name (what loaders return).
using TensorMap = std::map<std::string, at::Tensor>;
/// "__metadata__" string pairs.
using Metadata = std::map<std::string, std::string>;

/// at::ScalarType -> safetensors dtype; throws Error naming `tensor` for an unsupported type.
safetensors::DType to_safetensors_dtype(c10::ScalarType t, const std::string& tensor);
/// safetensors dtype -> at::ScalarType; throws DataError naming file and tensor when this LibTorch
/// has no such type (e.g. U16/U32/U64/F8 on LibTorch 1.13).
c10::ScalarType to_scalar_type(safetensors::DType d, const std::string& file, const std::string& tensor);

/// Writes `tensors` to `path` atomically. Duplicate names, sparse or quantized tensors are errors.
void save_safetensors(const std::string& path, const NamedTensors& tensors, const Metadata& extra = {});
void save_safetensors(const std::string& path, const TensorMap& tensors, const Metadata& extra = {});
/// How a writer reads tensors that another thread may change after a hand-over (async checkpoints
/// of live training state): `take(i)` returns what to read for entry i (the live tensor, or a copy
/// the owner made), and `give_back(i)` ends the read. Entries are taken one at a time, in order.
class TensorGate {
 public:
  virtual ~TensorGate() = default;
  virtual at::Tensor take(std::size_t i) = 0;
  virtual void give_back(std::size_t i) = 0;
};

/// save_safetensors that also returns the xxh64 (seed 0) of the file's bytes, hashed while
/// writing, so checkpoints get their checksums without reading the file back from disk. With a
/// `gate`, each tensor's bytes are read through it (shapes and dtypes come from `tensors`).
uint64_t save_safetensors_hashed(const std::string& path, const NamedTensors& tensors, const Metadata& extra = {},
                                 TensorGate* gate = nullptr);

/// An open, memory-mapped, validated safetensors file. Cheap to query; tensors are materialized on
/// request. The mapping lives as long as this object or any zero-copy tensor taken from it.
class SafetensorsFile {
 public:
  /// Opens, maps and validates `path` (every rejection rule of safetensors::parse).
  explicit SafetensorsFile(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(SafetensorsFile&&) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&&) noexcept;

  const std::string& path() const { return path_; }
  const safetensors::Header& header() const { return header_; }
  const Metadata& metadata() const { return header_.metadata; }
  /// Tensor names in file (offset) order.
  std::vector<std::string> names() const;
  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  /// Header entry of `name`; throws DataError naming the file when absent.
  const safetensors::TensorInfo& info(const std::string& name) const;

  /// The tensor `name` on CPU with its stored dtype and shape. zero_copy=true aliases the mapping
  /// when the data is aligned to the item size (falls back to a copy otherwise); such a tensor
  /// must not outlive a truncation of the file (SIGBUS), while replacing the file by rename, as
  /// our writers do, is safe.
  at::Tensor get(const std::string& name, bool zero_copy = false) const;
  /// Every tensor, by name.
  TensorMap load_all(bool zero_copy = false) const;

 private:
  struct Mapping;
  std::string path_;
  std::shared_ptr<Mapping> map_;
  safetensors::Header header_;
  std::map<std::string, size_t> index_;  // name -> position in header_.tensors
};

/// Loads every tensor of `path` (copies); optionally returns its __metadata__.
TensorMap load_safetensors(const std::string& path, Metadata* metadata_out = nullptr);

/// Result of a (possibly) sharded save.
struct ShardedSave {
  std::vector<std::string> files;  ///< file names written inside the directory, in shard order
  std::string index;               ///< index file name, empty when a single file was written
  uint64_t total_size = 0;         ///< sum of tensor bytes (the index's metadata.total_size)
};

/// Saves into directory `dir` (created if missing) the Hugging Face way: `<prefix>.safetensors`
/// when everything fits in `max_shard_bytes`, else `<prefix>-00001-of-0000N.safetensors` ... plus
/// `<prefix>.safetensors.index.json` {"metadata": {"total_size"}, "weight_map": {name: file}},
/// written last. Tensors are assigned to shards greedily in file order (dtype, then name); a
/// tensor larger than the limit gets a shard of its own. Stale shards/index of an earlier save with
/// the same prefix are removed after the new set is complete.
ShardedSave save_sharded(const std::string& dir, const NamedTensors& tensors, uint64_t max_shard_bytes,
                         const Metadata& extra = {}, const std::string& prefix = "model");

/// Loads a set written by save_sharded (or by Hugging Face): `path` is a directory holding
/// `model.safetensors.index.json` or `model.safetensors`, an index .json file, or a .safetensors
/// file. Each shard must hold exactly the tensors the index assigns to it.
TensorMap load_sharded(const std::string& path);

/// "5GB" -> 5e9, "500MB", "2GiB" -> 2^31, "1024" -> 1024 (Hugging Face's --max-shard-size spelling).
/// Throws Error on anything else.
uint64_t parse_byte_size(const std::string& text);

}  // namespace openlm::checkpoint
