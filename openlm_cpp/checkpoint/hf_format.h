#pragma once
/// Hugging Face config.json <-> ModelConfig for the two export formats (docs/HF_FORMAT.md).
///
///  - "openlm": the apple/DCLM-7B layout read by OpenLM's own HF classes (model_type "openlm",
///    flat Params fields dim, n_layers, ...; tensors "model." + OpenLM names). Also read: the older
///    uploads whose config nests the switches under `params_args_dict` and names the size through
///    `params_args_dict.model`, resolved through our registry of named configs (load_model).
///  - "llama": LlamaForCausalLM (model_type "llama"), including grouped-query attention.
///
/// Torch-free: the tensor layout conversions live in hf_export.cpp / hf_import.cpp.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "openlm_cpp/core/config.h"

namespace openlm::hf {

enum class Format { OpenLM, Llama };

/// "openlm" | "llama" -> Format; anything else is a ConfigError naming `key`.
Format parse_format(const std::string& name, const std::string& key = "--format");
const char* format_name(Format f);

/// Why `m` cannot be written exactly in format `f` (e.g. "qk-norm is on: LlamaForCausalLM has no
/// q/k norm"); empty when it can. An exporter must refuse rather than write a different model.
std::string unsupported_reason(const ModelConfig& m, Format f);

/// Extra facts written into config.json / generation_config.json.
struct ExportMeta {
  std::string torch_dtype = "float32";  ///< "float32" | "bfloat16"
  int64_t bos_id = -1;                  ///< -1 = unknown (not written)
  int64_t eos_id = -1;
};

/// config.json for `m` in format `f`. Throws Error carrying unsupported_reason() when `m` is not
/// representable. A llama export of a "llama_rotary" (interleaved) model records
/// "openlm_positional_embedding_type" so that import can undo the q/k row permutation exactly.
nlohmann::json make_config(const ModelConfig& m, Format f, const ExportMeta& meta);
/// generation_config.json (bos/eos when known).
nlohmann::json make_generation_config(const ExportMeta& meta);

/// What an HF config.json describes.
struct HfConfig {
  Format format = Format::OpenLM;
  ModelConfig model;              ///< validated; n_kv_heads = 0 when equal to n_heads
  bool old_openlm = false;        ///< the params_args_dict variant
  std::string torch_dtype;        ///< as written ("" when absent)
  int64_t bos_id = -1, eos_id = -1;
};

/// True when `j` is a Hugging Face model config (model_type / architectures / params_args_dict)
/// rather than one of our resolved train recipes.
bool is_hf_config(const nlohmann::json& j);

/// Parses an HF config.json (already read into `j`; `file` names it in errors). Unsupported
/// settings (an unknown model_type, rope_scaling, biases, a non-SiLU activation, ...) are
/// ConfigErrors naming the file and the key.
HfConfig parse_config(const nlohmann::json& j, const std::string& file);
/// Reads and parses <dir>/config.json.
HfConfig read_config(const std::string& dir);

/// The parameter names and shapes an OpenLM model of config `m` has (exactly the set that
/// Transformer::named_parameters() returns, tied output.weight included), computed without
/// building the model so that checks on a 7B checkpoint cost nothing.
std::vector<std::pair<std::string, std::vector<int64_t>>> parameter_shapes(const ModelConfig& m);

}  // namespace openlm::hf
