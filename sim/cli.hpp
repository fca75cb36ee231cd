#pragma once

namespace hb::sim {

/// The command line of hongbao-sim (see docs/simulation.md).
int cli_main(int argc, char** argv);

} // namespace hb::sim
