#include "runtime/failpoints.hpp"

#include <cstdlib>
#include <string>

namespace hb {

bool failpoint(const char* name) {
  static const std::string active = [] {
    auto env = std::getenv("HONGBAO_FAILPOINTS");
    return env != nullptr ? "," + std::string{env} + "," : std::string{};
  }();
  if (active.empty())
    return false;
  return active.find("," + std::string{name} + ",") != std::string::npos;
}

} // namespace hb
