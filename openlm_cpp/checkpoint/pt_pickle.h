#pragma once
/// A restricted reader for the pickle stream inside torch.save zip files (data.pkl), used to
/// import raw OpenLM checkpoints. It interprets opcodes into a value tree and never imports or
/// calls anything: the only globals given meaning are collections.OrderedDict (an empty dict)
/// and torch's tensor rebuild functions (_rebuild_tensor_v2, _rebuild_parameter,
/// _rebuild_from_type_v2), which become TensorRef descriptions; every other global, REDUCE,
/// NEWOBJ or BUILD yields an opaque Object that the caller may ignore.
///
/// Why not torch::pickle_load: LibTorch 1.13's unpickler turns collections.OrderedDict (what
/// model.state_dict() returns) into None and rejects the APPEND opcode (any one-element list,
/// e.g. a single optimizer param group), so it cannot read real OpenLM epoch_N.pt files.
/// Torch-free (fuzzed on its own).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace openlm::checkpoint::pickle {

struct Value;
/// Values are owned by their Document (an arena: pickle memo references can form cycles).
using ValuePtr = Value*;

/// A tensor as torch.save describes it: a view into storage record "data/<storage_key>".
struct TensorRef {
  std::string storage_key;   ///< record name inside the archive's data/ folder
  std::string storage_type;  ///< "FloatStorage", "BFloat16Storage", ...
  int64_t storage_numel = 0; ///< elements in the storage (from the persistent id)
  int64_t offset = 0;        ///< storage offset in elements
  std::vector<int64_t> size, stride;
};

struct Value {
  enum class Kind { None, Bool, Int, Float, String, Bytes, List, Tuple, Dict, Global, Storage, Tensor, Object };
  Kind kind = Kind::None;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;  ///< String / Bytes payload; Global "module.name"; Storage key
  std::vector<ValuePtr> items;                           ///< List / Tuple
  std::vector<std::pair<ValuePtr, ValuePtr>> dict;       ///< Dict, in insertion order
  TensorRef tensor;                                      ///< Tensor; Storage uses storage_* fields

  bool is(Kind k) const { return kind == k; }
  /// Dict lookup by string key (nullptr when absent or not a dict).
  const Value* get(const std::string& key) const;
  static const char* kind_name(Kind k);
};

/// A parsed pickle: every value lives in `values`; `root` is what STOP returned.
struct Document {
  std::vector<std::unique_ptr<Value>> values;
  const Value* root = nullptr;
};

/// Parses one pickle stream (protocols 2-5, the opcodes torch.save and plain Python containers
/// use). Throws DataError "<where>: byte N: ..." on truncated or malformed input, unknown opcodes,
/// and memo/stack misuse. Never executes anything.
std::unique_ptr<Document> parse(const uint8_t* data, size_t size, const std::string& where);

}  // namespace openlm::checkpoint::pickle
