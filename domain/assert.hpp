#pragma once

#include <sstream>
#include <string>
#include <utility>

namespace hb::detail {

/// Renders `format` with each "{}" replaced by the next argument (streamed
/// with operator<<); arguments without a "{}" are appended, "{}" without an
/// argument stays. Only a failed assertion pays for it.
inline void format_next(std::ostringstream& out, const char*& format) {
  out << format;
  format += std::char_traits<char>::length(format);
}

template <class T, class... Ts>
void format_next(std::ostringstream& out, const char*& format, const T& x,
                 const Ts&... xs) {
  const char* p = format;
  while (*p != '\0' && !(p[0] == '{' && p[1] == '}'))
    ++p;
  out.write(format, p - format);
  if (*p == '\0') {
    out << ' ' << x;
  } else {
    out << x;
    p += 2;
  }
  format = p;
  format_next(out, format, xs...);
}

template <class... Ts>
std::string format_message(const char* format, const Ts&... xs) {
  std::ostringstream out;
  format_next(out, format, xs...);
  return out.str();
}

/// Prints "hongbao: assertion failed at FILE:LINE: CONDITION: MESSAGE" to
/// stderr and aborts.
[[noreturn]] void assert_failed(const char* file, int line,
                                const char* condition,
                                const std::string& message);

} // namespace hb::detail

/// The one assertion for invariants: a broken invariant is a bug, so it
/// crashes loudly in release builds too (NDEBUG does not switch it off).
/// The message is a format with "{}" fields, e.g.
///   HB_ASSERT(sum == total, "envelope {}: sum {} != total {}", id, sum, total);
/// and is rendered only when the condition is false.
#define HB_ASSERT(condition, ...)                                              \
  do {                                                                         \
    if (!(condition))                                                          \
      ::hb::detail::assert_failed(__FILE__, __LINE__, #condition,              \
                                  ::hb::detail::format_message(__VA_ARGS__));  \
  } while (false)
