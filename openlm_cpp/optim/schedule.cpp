#include "openlm_cpp/optim/schedule.h"

#include <algorithm>
#include <cmath>

namespace openlm {

double lr_at(const ScheduleConfig& s, double base, int64_t step, int64_t total) {
  if (s.warmup > 0 && step < s.warmup)
    return base * static_cast<double>(step + 1) / static_cast<double>(s.warmup);
  double lr = base;
  if (s.lr_scheduler == "cosine") {
    int64_t span = std::max<int64_t>(total - s.warmup, 1);
    double e = static_cast<double>(std::min(step - s.warmup, span));
    lr = s.lr_cooldown_end + 0.5 * (1.0 + std::cos(M_PI * e / static_cast<double>(span))) * (base - s.lr_cooldown_end);
  } else if (s.lr_scheduler == "wsd") {
    int64_t decay = static_cast<int64_t>(std::llround(s.cooldown_fraction * static_cast<double>(total)));
    int64_t start = std::max(total - decay, s.warmup);
    if (step >= start && decay > 0) {
      double f = std::min(1.0, static_cast<double>(step - start + 1) / static_cast<double>(total - start));
      lr = base + f * (s.lr_cooldown_end - base);
    }
  }
  return std::max(lr, s.force_min_lr);
}

}  // namespace openlm
