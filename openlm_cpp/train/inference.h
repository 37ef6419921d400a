#pragma once
/// Loading a trained model for generation and evaluation from a run directory, a native
/// checkpoint directory, or a model.safetensors next to a config.json.
#include <memory>
#include <string>
#include <vector>

#include "openlm_cpp/core/config.h"
#include "openlm_cpp/model/transformer.h"
#include "openlm_cpp/tokenizer/tokenizer.h"
#include "openlm_cpp/train/generate.h"

namespace openlm {

struct LoadedModel {
  TrainConfig config;                      ///< the run's resolved config
  std::unique_ptr<Transformer> model;      ///< fp32, eval mode, on CUDA when available
  std::unique_ptr<Tokenizer> tokenizer;    ///< null when the run has none and none was given
};

LoadedModel load_for_inference(const std::string& source, const std::string& tokenizer_override = "");

struct EvalResult {
  double loss = 0;      ///< mean next-token cross entropy over all predicted positions (fp32)
  int64_t tokens = 0;   ///< predicted positions
};
/// Each sequence is scored on its own (inputs seq[:-1], targets seq[1:]), cropped to seq_len+1.
EvalResult evaluate_sequences(Transformer& model, const std::vector<std::vector<int64_t>>& seqs);

/// The model's fp32 logits [sequences, T, vocab] (on CPU) at every position of each whole
/// sequence (inputs = the sequence itself, nothing cropped, as Hugging Face's `model(ids).logits`).
/// Throws DataError when the sequences differ in length (naming the first that differs), when
/// T exceeds the model's seq_len, or when a token id is outside the vocabulary.
at::Tensor sequence_logits(Transformer& model, const std::vector<std::vector<int64_t>>& seqs);

}  // namespace openlm
