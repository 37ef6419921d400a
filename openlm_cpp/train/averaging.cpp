#include "openlm_cpp/train/averaging.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include "openlm_cpp/core/error.h"

namespace openlm {

WeightAverages::WeightAverages(const std::vector<std::string>& specs, const std::vector<at::Tensor>& weights)
    : names_(specs), live_(weights) {
  at::NoGradGuard no_grad;
  for (const auto& s : specs) {
    const bool ema = s.rfind("ema_", 0) == 0;
    if (!ema && s.rfind("poly_", 0) != 0) throw ConfigError("averagers", "", 0, "unknown averager '" + s + "'");
    ema_.push_back(ema);
    param_.push_back(std::stod(s.substr(s.find('_') + 1)));
    std::vector<at::Tensor> copies;
    for (const auto& w : weights) copies.push_back(w.detach().to(at::kFloat, /*non_blocking=*/false, /*copy=*/true));
    avgs_.push_back(std::move(copies));
  }
}

void WeightAverages::reset() {
  at::NoGradGuard no_grad;
  for (auto& avg : avgs_)
    for (std::size_t i = 0; i < live_.size(); ++i) avg[i].copy_(live_[i].detach());
}

void WeightAverages::update(int64_t t) {
  at::NoGradGuard no_grad;
  for (std::size_t k = 0; k < names_.size(); ++k) {
    // Weight of the new weights: 1 - gamma for EMA; (eta + 1) / (eta + t) for the polynomial
    // average (1 at t = 1: the average becomes the first updated weights).
    const double w = ema_[k] ? 1.0 - param_[k] : (param_[k] + 1.0) / (param_[k] + static_cast<double>(t));
    const double keep = ema_[k] ? param_[k] : 1.0 - w;
    for (std::size_t i = 0; i < live_.size(); ++i) {
      at::Tensor& a = avgs_[k][i];
      a.mul_(keep).add_(live_[i].detach().to(at::kFloat), w);
    }
  }
}

}  // namespace openlm
