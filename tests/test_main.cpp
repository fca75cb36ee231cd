// The one translation unit per test binary that provides CAF's test main().
#define CAF_TEST_NO_MAIN
#include "caf/test/unit_test_impl.hpp"

#include <spdlog/spdlog.h>

int main(int argc, char** argv) {
  // Expected warnings of fault tests stay visible; routine events do not.
  spdlog::set_level(spdlog::level::warn);
  return caf::test::main(argc, argv);
}
