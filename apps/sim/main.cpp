// hongbao-sim: the deterministic simulation of a hongbao node. The planted-
// bug variants (tests/sim/CMakeLists.txt) compile this file again with
// HB_SIM_PLANTED naming their bug.

#include "sim/cli.hpp"

#ifndef HB_SIM_PLANTED
#define HB_SIM_PLANTED ""
#endif

int main(int argc, char** argv) {
  return hb::sim::cli_main(argc, argv, HB_SIM_PLANTED);
}
