#pragma once

// The workloads of hongbao-bench (issue 5):
//
//   hot     one envelope of 10 000 shares; 10 000 distinct users grab and
//           open it at once.
//   spread  10 000 envelopes × 10 shares, 10 users each, all at once.
//   storm   a festival minute: senders wrap (create) and pay envelopes while
//           their groups grab and open them as soon as they are paid; groups
//           are half again as large as the share count (the late ones hear
//           手慢了), a tenth of the users who got a share open again (the
//           same share must come back), a tenth of the envelopes are equal
//           (普通) ones.
//
// A flow is one person's part: a sender creates then pays; a group member
// grabs, opens if the grab says can_open, and maybe opens again.

#include <cstdint>
#include <string>
#include <vector>

#include "load/target.hpp"

namespace hb::bench {

/// Hard limits, so that a typo cannot make a run allocate without bound.
constexpr uint32_t envelopes_max = 1000000;
constexpr int32_t shares_max = 100000;
constexpr uint64_t flows_max = 5000000;

struct scenario_options {
  std::string name = "hot";
  uint32_t envelopes = 0;  ///< 0: the scenario's default
  int32_t shares = 0;      ///< shares per envelope; 0: the default
  uint32_t grabbers = 0;   ///< users per envelope; 0: the default
  uint64_t seed = 1;
};

struct flow {
  uint32_t env = 0;
  uint32_t user = 0;
  bool sender = false;  ///< create, then pay; else grab, then open
  bool repeat = false;  ///< opens a second time after getting a share
  /// Starts only once its envelope is paid (storm); else at once.
  bool held = false;
};

struct scenario {
  std::string name;
  run_book book;
  /// Run before the clock starts (hot, spread: wrapping and paying).
  std::vector<flow> setup;
  /// The measured flows, in the order they start.
  std::vector<flow> flows;
};

/// "user-00042" for index 41 of 50 000 users: zero-padded to the digits of
/// `users`, so that names sort in number order.
std::string user_name(uint64_t index, uint64_t users);

/// The demo's storm: every one of `users` grabs every one of `envelopes`
/// (already paid, so nothing is held) and opens when the grab says
/// can_open, in a seeded random order: users do not queue up politely.
std::vector<flow> grab_every_envelope(uint32_t users, uint32_t envelopes,
                                      uint64_t seed);

/// Builds a scenario; errors are errc::invalid_argument.
outcome<scenario> make_scenario(const scenario_options& opts,
                                const std::string& run_id);

} // namespace hb::bench
