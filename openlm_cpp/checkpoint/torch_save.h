#pragma once
/// Reading torch.save zip files without executing their pickles (PyTorchStreamReader + the
/// restricted reader of pt_pickle.h): OpenLM's .pt checkpoints and Hugging Face pytorch_model.bin.
/// Also the two small pieces every importer shares (hf_import.cpp).
#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "openlm_cpp/checkpoint/tensor_file.h"
#include "openlm_cpp/core/error.h"

namespace openlm::checkpoint {

/// Rotary tables OpenLM (pos_embed.inv_freq) and older transformers (rotary_emb.inv_freq) store.
bool is_rotary_buffer(const std::string& name);

/// Collects mismatch lines and throws them as one DataError.
struct Problems {
  std::vector<std::string> lines;
  void add(std::string l) { lines.push_back(std::move(l)); }
  void raise_if_any(const std::string& where, const std::string& what) const {
    if (lines.empty()) return;
    std::string msg = where + ": " + what + " (" + std::to_string(lines.size()) + " problem" +
                      (lines.size() == 1 ? "" : "s") + "):";
    const size_t shown = std::min<size_t>(lines.size(), 40);
    for (size_t i = 0; i < shown; ++i) msg += "\n  " + lines[i];
    if (shown < lines.size()) msg += "\n  ... and " + std::to_string(lines.size() - shown) + " more";
    throw DataError(msg);
  }
};

/// Every tensor of a torch.save zip file's state dict (the dict itself, or its "state_dict" entry),
/// converted to fp32, names optionally stripped of "module." / "_orig_mod.". Non-float tensors
/// other than rotary buffers, views outside their storage and missing records are reported together.
TensorMap read_torch_save(const std::string& file, bool strip);
/// HF weights stored as pytorch_model.bin (or a sharded set with pytorch_model.bin.index.json).
TensorMap load_torch_bin(const std::string& dir);

}  // namespace openlm::checkpoint
