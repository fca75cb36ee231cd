#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>

namespace hb {

/// At most one log line per interval for one kind of event. A flood of
/// refused or closed connections (10 000 sockets from one script) must not
/// write 10 000 lines: the lines held back are counted and the next line
/// written says how many (`suppressed=N`).
class log_throttle {
public:
  using clock = std::chrono::steady_clock;

  log_throttle() = default;

  explicit log_throttle(std::chrono::milliseconds interval)
    : interval_(interval) {
  }

  /// Whether a line may be written at `now`. If so, `held` is the number of
  /// lines held back since the last one written (and the count restarts);
  /// if not, this line is counted as held back.
  bool admit(clock::time_point now, uint64_t& held) {
    std::lock_guard<std::mutex> guard{mtx_};
    if (now < next_) {
      ++held_;
      return false;
    }
    held = held_;
    held_ = 0;
    next_ = now + interval_;
    return true;
  }

  bool admit(uint64_t& held) {
    return admit(clock::now(), held);
  }

private:
  std::mutex mtx_;
  std::chrono::milliseconds interval_{1000};
  clock::time_point next_{};
  uint64_t held_ = 0;
};

} // namespace hb
