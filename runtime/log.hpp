#pragma once

#include <memory>

#include <spdlog/spdlog.h>

namespace hb {

/// The named logger of one folder ("actors", "node", ...). Created on first
/// use from the default logger's sinks and registered, so that the level and
/// pattern set at start-up apply to it too.
inline spdlog::logger& named_logger(const char* name) {
  auto found = spdlog::get(name);
  if (found)
    return *found;
  auto created = spdlog::default_logger()->clone(name);
  spdlog::register_logger(created);
  return *created;
}

inline spdlog::logger& actors_log() {
  static auto& ref = named_logger("actors");
  return ref;
}

} // namespace hb
