#pragma once
/// Writing Hugging Face directories from our models (`openlm export-hf`):
///
///     OUT/config.json                   hf_format.h make_config (openlm or llama)
///     OUT/generation_config.json
///     OUT/model.safetensors             or model-0000i-of-0000N.safetensors + model.safetensors.index.json
///     OUT/tokenizer.model               SentencePiece model (tokenizer.json etc. when the source had them)
///     OUT/tokenizer_config.json         for a SentencePiece tokenizer without one
///
/// A model the format cannot represent exactly is refused with the reason (hf::unsupported_reason);
/// nothing is written in that case.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "openlm_cpp/checkpoint/hf_format.h"
#include "openlm_cpp/checkpoint/hf_import.h"
#include "openlm_cpp/checkpoint/tensor_file.h"

namespace openlm::checkpoint {

struct ExportOptions {
  hf::Format format = hf::Format::OpenLM;
  c10::ScalarType dtype = c10::ScalarType::Float;  ///< Float or BFloat16 (round to nearest even)
  uint64_t max_shard_bytes = 5'000'000'000ULL;       ///< Hugging Face's default "5GB"
  int64_t bos_id = -1, eos_id = -1;                  ///< override the source's ids when >= 0
};

struct ExportResult {
  ShardedSave weights;                      ///< safetensors files (and index) written
  std::vector<std::string> tokenizer_files; ///< file names copied/written into OUT
};

/// OpenLM tensors (by name, as parameter_shapes(m)) -> the HF tensors of `format`, cast to `dtype`.
///  openlm: "model." + name. llama: in_proj rows [q | k | v] -> q/k/v_proj (q/k rows permuted per
///  head from interleaved pairs to halves for llama_rotary), w12 rows [gate | up] -> gate/up_proj,
///  w3 -> down_proj, norms -> input/post_attention_layernorm, output -> lm_head (absent when tied).
NamedTensors to_hf_tensors(const ModelConfig& m, const TensorMap& openlm, hf::Format format, c10::ScalarType dtype);

/// Writes the HF directory for an already loaded model.
ExportResult write_hf(const ImportedModel& model, const std::string& out_dir, const ExportOptions& opt);

/// `openlm export-hf SOURCE OUT`: SOURCE is a run directory, a checkpoint directory, an import-hf
/// output or an HF directory (converting between the two formats).
ExportResult export_hf(const std::string& source, const std::string& out_dir, const ExportOptions& opt);

}  // namespace openlm::checkpoint
