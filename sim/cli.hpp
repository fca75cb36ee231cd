#pragma once

namespace hb::sim {

/// The command line of hongbao-sim (see docs/simulation.md). `planted`
/// names the bug planted into this build ("" for the real simulator).
int cli_main(int argc, char** argv, const char* planted);

} // namespace hb::sim
