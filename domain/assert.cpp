#include "domain/assert.hpp"

#include <cstdio>
#include <cstdlib>

namespace hb::detail {

void assert_failed(const char* file, int line, const char* condition,
                   const std::string& message) {
  std::fprintf(stderr, "hongbao: assertion failed at %s:%d: %s: %s\n", file,
               line, condition, message.c_str());
  std::fflush(stderr);
  std::abort();
}

} // namespace hb::detail
