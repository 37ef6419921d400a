#include "openlm_cpp/core/log.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>

namespace openlm::log {
namespace {
std::atomic<int> g_level{static_cast<int>(Level::Info)};
std::atomic<int> g_rank{-1};
std::mutex g_mu;
}  // namespace

void set_level(Level l) { g_level = static_cast<int>(l); }
Level level() { return static_cast<Level>(g_level.load()); }
void set_rank(int rank) { g_rank = rank; }

void write(Level l, const std::string& msg) {
  static const char* names[] = {"D", "I", "W", "E"};
  auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  std::tm tm{};
  localtime_r(&t, &tm);
  char ts[32];
  std::strftime(ts, sizeof ts, "%H:%M:%S", &tm);
  std::string rank = g_rank >= 0 ? fmt::format(" [r{}]", g_rank.load()) : std::string();
  std::lock_guard<std::mutex> lk(g_mu);
  std::fprintf(stderr, "%s %s%s %s\n", ts, names[static_cast<int>(l)], rank.c_str(), msg.c_str());
  std::fflush(stderr);
}

}  // namespace openlm::log
