#pragma once
/// Learning-rate schedules as stateless functions of the 0-based optimizer step (OpenLM's
/// convention: the rate applied in step s is lr_at(s)). No torch.
#include <cstdint>

#include "openlm_cpp/core/config.h"

namespace openlm {

/// cosine: linear warmup lr*(s+1)/warmup, then cosine from lr to lr_cooldown_end over the
///         remaining steps, floored at force_min_lr.
/// const:  warmup, then lr.
/// wsd:    warmup, lr until the last cooldown_fraction of the steps, then linear to lr_cooldown_end.
double lr_at(const ScheduleConfig& s, double base_lr, int64_t step, int64_t total_steps);

}  // namespace openlm
