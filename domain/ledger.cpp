#include "domain/ledger.hpp"

#include <cstdio>

namespace hb {

std::string wallet_account(const std::string& user) {
  return "user:" + user;
}

std::string escrow_account(int32_t segment) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "escrow:%03d", static_cast<int>(segment));
  return buf;
}

const char* to_string(history_kind x) {
  switch (x) {
    case history_kind::sent: return "sent";
    case history_kind::received: return "received";
  }
  return "unknown";
}

} // namespace hb
