#pragma once
/// Reading models from outside: Hugging Face directories (openlm and llama formats, single or
/// sharded safetensors, any floating dtype), raw OpenLM torch.save checkpoints (`epoch_N.pt`), and
/// our own run / checkpoint directories; and writing the native layout that `generate`, `eval`,
/// `init_from` and `export-hf` read:
///
///     OUT/model.safetensors   fp32, OpenLM parameter names
///     OUT/config.json         a resolved train recipe (loadable by load_train_recipe)
///     OUT/tokenizer.*         the tokenizer files that came with the model
///
/// Every loader returns fp32 tensors under OpenLM names, checked against the config's expected
/// names and shapes; a mismatch is a DataError listing every offending tensor.
#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "openlm_cpp/checkpoint/hf_format.h"
#include "openlm_cpp/checkpoint/tensor_file.h"
#include "openlm_cpp/core/config.h"

namespace openlm::checkpoint {

/// A model read from anywhere, in OpenLM terms.
struct ImportedModel {
  ModelConfig model;
  TokenizerConfig tokenizer;                 ///< the SentencePiece model among tokenizer_files, if any
  std::vector<std::string> tokenizer_files;  ///< tokenizer files to carry along (paths on disk)
  TensorMap tensors;                         ///< OpenLM names, fp32, contiguous, CPU
  std::string origin;                        ///< "openlm" | "llama" | "pt" | "native"
  int64_t bos_id = -1, eos_id = -1;          ///< from the HF config, -1 when unknown
};

/// True when `path` is a directory whose config.json is a Hugging Face model config.
bool is_hf_dir(const std::string& path);
/// Refuses a directory that holds weight files (model.safetensors[.index.json],
/// pytorch_model.bin[.index.json]) but neither a config.json nor a checkpoint metadata.json: an HF
/// directory that lost its config.json must not be configured by a parent directory's config.
/// ConfigError naming <dir>/config.json. No-op for anything else.
void require_own_config(const std::string& dir);

/// Loads a Hugging Face directory (config.json + model.safetensors or a sharded set with
/// model.safetensors.index.json). Rotary inv_freq buffers are ignored.
ImportedModel load_hf(const std::string& dir);

/// Loads a raw OpenLM checkpoint written by torch.save (a dict with "state_dict", or a bare state
/// dict) through LibTorch's restricted unpickler, which runs no code. "module." and "_orig_mod."
/// prefixes are stripped. A .pt carries no model config, so `model` must be given.
ImportedModel load_openlm_pt(const std::string& file, const ModelConfig& model);

/// Loads one of our run directories, checkpoint directories (step_N with metadata.json), import
/// outputs, or a model.safetensors beside such a config.
ImportedModel load_native(const std::string& source);

/// Dispatches on what `source` is: an HF directory, a .pt file (needs `model_for_pt`), or native.
ImportedModel load_any(const std::string& source, const ModelConfig* model_for_pt = nullptr);

/// HF tensors (as stored, any dtype) -> OpenLM tensors (fp32), for config `c`. Unknown, missing
/// and misshapen tensors are one DataError naming `where` and listing them all.
TensorMap from_hf_tensors(const hf::HfConfig& c, const TensorMap& hf, const std::string& where);

/// Checks `t` against parameter_shapes(m): DataError naming `where` and listing every missing,
/// unexpected or misshapen tensor.
void check_tensors(const ModelConfig& m, const TensorMap& t, const std::string& where);

/// "" when `a` and `b` describe the same architecture (name and seq_len may differ: fine-tuning at
/// another context length is legitimate), else the first difference ("norm_type: rms_norm vs ...").
std::string architecture_difference(const ModelConfig& a, const ModelConfig& b);

/// The resolved train recipe written beside imported weights: defaults + `im.model`, tokenizer
/// pointing at the copied SentencePiece model in `out_dir` (absolute path), data.default_corpus
/// false and a placeholder manifest (replace it before training on the result).
TrainConfig native_config(const ImportedModel& im, const std::string& out_dir);

/// Writes the native layout (see the file comment) into `out_dir` (created if missing).
void write_native(const ImportedModel& im, const std::string& out_dir);

/// `openlm import-hf SOURCE OUT`: load_any + write_native. Returns what was imported.
ImportedModel import_to_native(const std::string& source, const std::string& out_dir,
                               const ModelConfig* model_for_pt = nullptr);

}  // namespace openlm::checkpoint
