#pragma once

#include <cstdint>
#include <string>

namespace hb {

/// The health state of one id segment (a database and table group).
struct segment_state {
  int32_t segment = 0;
  bool blocked = false;
  bool manual = false;  ///< blocked by an operator; only an operator unblocks
  std::string reason;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, segment_state& x) {
  return f(x.segment, x.blocked, x.manual, x.reason);
}

} // namespace hb
