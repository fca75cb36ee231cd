#include "runtime/bugs.hpp"

namespace hb::bugs {

bool switched_on[bug_count] = {};

void plant(bug b) {
  switched_on[static_cast<size_t>(b)] = true;
}

const char* to_string(bug b) {
  switch (b) {
    case bug::store_stale_epoch:
      return "store-stale-epoch";
    case bug::relay_credit_before_mark:
      return "relay-credit-before-mark";
    case bug::skip_epoch_bump:
      return "skip-epoch-bump";
    case bug::reply_on_failed_write:
      return "reply-on-failed-write";
    case bug::exhausted_while_pending:
      return "exhausted-while-pending";
  }
  return "?";
}

bool parse(const std::string& name, bug& out) {
  for (size_t i = 0; i < bug_count; ++i) {
    auto b = static_cast<bug>(i);
    if (name == to_string(b)) {
      out = b;
      return true;
    }
  }
  return false;
}

} // namespace hb::bugs
