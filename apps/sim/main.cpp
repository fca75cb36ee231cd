// hongbao-sim: the deterministic simulation of a hongbao node (sim/).

#include "sim/cli.hpp"

int main(int argc, char** argv) {
  return hb::sim::cli_main(argc, argv);
}
