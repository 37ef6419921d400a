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

/// `--weights NAME`: a run directory's weight average RUN/model_<NAME>.safetensors (recipe
/// `averagers:`); "" or "model" is `source` itself. ConfigError naming the averages the run has
/// when it has no such file.
std::string weights_source(const std::string& source, const std::string& weights);

/// The model a source describes without loading weights: a run or checkpoint directory's config
/// (config.json or metadata.json, here or above), a weights file's neighbouring config, or a
/// Hugging Face directory's config.json.
ModelConfig model_config_of(const std::string& source);

/// `cuda_device`: the GPU the model goes to when CUDA is there (a launched rank passes its local
/// rank, so that ranks do not all load onto GPU 0).
LoadedModel load_for_inference(const std::string& source, const std::string& tokenizer_override = "",
                               int cuda_device = 0);

struct EvalResult {
  double loss = 0;       ///< mean next-token cross entropy over all scored positions (fp32 per window)
  int64_t tokens = 0;    ///< scored positions: every target of every sequence (length - 1 each)
  int64_t sequences = 0;
  int64_t windows = 0;   ///< forward passes
  double sum_nll = 0;    ///< summed cross entropy (loss = sum_nll / tokens)
};

/// Scores one sequence s_0..s_{N-1} (N >= 2) into `r`: every target s_1..s_{N-1} exactly once, in
/// windows of at most seq_len inputs. With L = seq_len and stride S (0 = L; 1 <= S <= L), window k
/// takes tokens [kS, min(kS + L + 1, N)) (inputs all but its last token, targets all but its
/// first) and scores only its targets that no earlier window scored; the last window is the first
/// that reaches s_{N-1}. A sequence of at most L + 1 tokens is one window (inputs s[:-1]). With the
/// default S = L the windows are disjoint: the targets of window k >= 1 see 1..L tokens of
/// context; with S < L every target past s_L sees at least L - S + 1 (S = 1: always L, one
/// forward per target). Throws DataError "<label>: ..." for fewer than 2 tokens or a token id
/// outside the vocabulary, ConfigError ("--stride") for a stride outside [0, L].
void score_sequence(Transformer& model, const std::vector<int64_t>& seq, int64_t stride, EvalResult& r,
                    const std::string& label);

/// score_sequence over every sequence (labels "sequence <1-based index>"), loss set.
EvalResult evaluate_sequences(Transformer& model, const std::vector<std::vector<int64_t>>& seqs, int64_t stride = 0);

/// The model's fp32 logits [sequences, T, vocab] (on CPU) at every position of each whole
/// sequence (inputs = the sequence itself, nothing cropped, as Hugging Face's `model(ids).logits`).
/// Throws DataError when the sequences differ in length (naming the first that differs), when
/// T exceeds the model's seq_len, or when a token id is outside the vocabulary.
at::Tensor sequence_logits(Transformer& model, const std::vector<std::vector<int64_t>>& seqs);

}  // namespace openlm
