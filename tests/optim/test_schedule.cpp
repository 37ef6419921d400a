// LR schedules at chosen steps, computed by hand from OpenLM's formulas.
#include <gtest/gtest.h>

#include <cmath>

#include "openlm_cpp/optim/schedule.h"

using namespace openlm;

TEST(Schedule, CosineWarmupThenCosineToCooldownEnd) {
  ScheduleConfig s;
  s.lr_scheduler = "cosine";
  s.warmup = 10;
  s.lr_cooldown_end = 1e-4;
  const double lr = 1e-2;
  EXPECT_DOUBLE_EQ(lr_at(s, lr, 0, 110), lr * 1 / 10);
  EXPECT_DOUBLE_EQ(lr_at(s, lr, 9, 110), lr);
  EXPECT_DOUBLE_EQ(lr_at(s, lr, 10, 110), lr);  // cosine starts at the peak
  EXPECT_NEAR(lr_at(s, lr, 60, 110), 1e-4 + 0.5 * (lr - 1e-4), 1e-12);  // halfway
  EXPECT_NEAR(lr_at(s, lr, 35, 110), 1e-4 + 0.5 * (1 + std::cos(M_PI * 25 / 100)) * (lr - 1e-4), 1e-12);
  EXPECT_NEAR(lr_at(s, lr, 110, 110), 1e-4, 1e-12);
}

TEST(Schedule, ForceMinLrFloors) {
  ScheduleConfig s;
  s.warmup = 0;
  s.lr_cooldown_end = 0;
  s.force_min_lr = 5e-4;
  EXPECT_DOUBLE_EQ(lr_at(s, 1e-2, 99, 100), 5e-4);
  EXPECT_GT(lr_at(s, 1e-2, 10, 100), 5e-4);
}

TEST(Schedule, ConstantAfterWarmup) {
  ScheduleConfig s;
  s.lr_scheduler = "const";
  s.warmup = 4;
  EXPECT_DOUBLE_EQ(lr_at(s, 1.0, 1, 100), 0.5);
  EXPECT_DOUBLE_EQ(lr_at(s, 1.0, 50, 100), 1.0);
  EXPECT_DOUBLE_EQ(lr_at(s, 1.0, 99, 100), 1.0);
}

TEST(Schedule, WarmupStableDecay) {
  ScheduleConfig s;
  s.lr_scheduler = "wsd";
  s.warmup = 10;
  s.cooldown_fraction = 0.2;
  s.lr_cooldown_end = 0.0;
  EXPECT_DOUBLE_EQ(lr_at(s, 1.0, 5, 100), 0.6);
  EXPECT_DOUBLE_EQ(lr_at(s, 1.0, 79, 100), 1.0);  // stable until the last 20 steps
  EXPECT_NEAR(lr_at(s, 1.0, 89, 100), 0.5, 1e-12);
  EXPECT_NEAR(lr_at(s, 1.0, 99, 100), 0.0, 1e-12);
}
