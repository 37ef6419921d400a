#pragma once
/// Autoregressive sampling from a Transformer: greedy, temperature, top-k, top-p, with or
/// without the KV cache (both give the same tokens).
#include <cstdint>
#include <vector>

#include "openlm_cpp/core/config.h"

namespace openlm {

class Transformer;

struct SampleOptions {
  int64_t max_new_tokens = 32;
  double temperature = 0.0;  ///< 0 = greedy
  int64_t top_k = 0;         ///< 0 = off
  double top_p = 1.0;        ///< 1 = off
  bool use_kv_cache = true;
  uint64_t seed = 0;
  int32_t stop_token = -1;   ///< stop after emitting this id (-1 = never)
};

/// Returns prompt + generated ids. The context is cropped to the model's seq_len.
std::vector<int64_t> generate(Transformer& model, const std::vector<int64_t>& prompt, const SampleOptions& o);

}  // namespace openlm
