#pragma once
// Shared by the Hugging Face export and import tests (test_hf_export.cpp, test_hf_import.cpp): small
// model configs, native models written to disk, logits, weight comparisons and a plain-torch Llama
// forward run by Debian's python3-torch.
#include <ATen/core/Tensor.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "../common/tensor_util.h"
#include "openlm_cpp/checkpoint/tensor_file.h"
#include "openlm_cpp/core/config.h"
#include "openlm_cpp/model/transformer.h"

namespace openlm::hf_test {

using checkpoint::TensorMap;
using openlm::test_util::same_bytes;

std::string tmpdir(const std::string& name);
/// Runs `script` with /usr/bin/python3 in `dir`; returns its output (fails the test on error).
std::string run_python(const std::string& dir, const std::string& script, const std::string& args);
/// A small Llama-shaped model: RMSNorm, SwiGLU, rotary, GQA 4 heads / 2 kv heads.
ModelConfig llama_like();
/// A small model with DCLM's switches (gain-only LP LayerNorm, qk-norm, swiglu_torch).
ModelConfig dclm_like();
/// A model with seeded weights written as a native model directory (model.safetensors + config).
std::unique_ptr<Transformer> make_native(const std::string& dir, const ModelConfig& m, uint64_t seed);
at::Tensor tokens(const ModelConfig& m);
at::Tensor logits_of(const ModelConfig& m, const TensorMap& t);
void expect_same_weights(Transformer& original, const TensorMap& back, bool bf16 = false);
void expect_same_arch(ModelConfig a, ModelConfig b);
/// The message of the exception `f` throws, or "(no error)".
std::string error_of(const std::function<void()>& f);
/// Plain-torch Llama forward from an HF llama directory (argv: dir, token ids); prints logits.
extern const char* const kPyLlama;
std::vector<float> parse_floats(const std::string& s);

}  // namespace openlm::hf_test
