#pragma once
/// Weight averages kept beside the trained weights (recipe `averagers:`, OpenLM's --averagers),
/// updated after every optimizer step on whatever this rank holds: the whole fp32 parameters in a
/// one-process run, the fp32 master shards in a sharded one. With t = optimizer steps done (1, 2,
/// ...) and p the new weights:
///   ema_<g>:  avg = g * avg + (1 - g) * p
///   poly_<e>: avg = (1 - w) * avg + w * p,  w = (e + 1) / (e + t)   (poly_0 = the uniform mean)
/// Both start from the weights the run starts with. Saved in checkpoints (resume stays bit-exact)
/// and written as RUN/model_<name>.safetensors at the end of a run.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace openlm {

class WeightAverages {
 public:
  /// `specs` as validated by the recipe ("ema_0.999", "poly_8"); `weights` the live tensors the
  /// optimizer updates (the averages copy them now, in fp32).
  WeightAverages(const std::vector<std::string>& specs, const std::vector<at::Tensor>& weights);

  /// After optimizer step `t` (1-based, counted over the whole run, resumes included).
  void update(int64_t t);
  /// Every average becomes a copy of the live weights again.
  void reset();

  std::size_t size() const { return names_.size(); }
  const std::string& name(std::size_t k) const { return names_[k]; }
  /// Average k of weight i (same shape as the live tensor, fp32).
  const at::Tensor& average(std::size_t k, std::size_t i) const { return avgs_[k][i]; }
  const std::vector<at::Tensor>& averages(std::size_t k) const { return avgs_[k]; }

 private:
  std::vector<std::string> names_;
  std::vector<bool> ema_;
  std::vector<double> param_;  ///< gamma (ema) or eta (poly)
  std::vector<at::Tensor> live_;
  std::vector<std::vector<at::Tensor>> avgs_;
};

}  // namespace openlm
