#pragma once

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>

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

/// Text from a client (or stored from one) made safe for one log line:
/// control characters (newlines included) and backslashes are escaped as
/// \n, \r, \t, \\ and \xHH, so a client cannot forge or split log lines;
/// anything past `size_max` bytes is cut and marked with "...".
inline std::string log_safe(std::string_view text, size_t size_max = 256) {
  std::string out;
  out.reserve(std::min(text.size(), size_max) + 8);
  size_t n = std::min(text.size(), size_max);
  for (size_t i = 0; i < n; ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char hex[5];
          std::snprintf(hex, sizeof hex, "\\x%02x", c);
          out += hex;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  if (text.size() > size_max)
    out += "...";
  return out;
}

} // namespace hb
