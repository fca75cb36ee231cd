#pragma once

#include <cstdint>
#include <string>

#include "domain/envelope.hpp"
#include "domain/errc.hpp"

namespace hb {

/// Limits on what a sender may wrap. All configurable ([limits] in config).
struct envelope_limits {
  int64_t share_min_fen = 1;
  int64_t share_max_fen = 20000;  // 200 yuan per share
  int32_t count_max = 100;
  int64_t expiry_ms = 24LL * 3600 * 1000;
  size_t text_size_max = 256;  // sender, group, greeting, keys (bytes)
};

/// What a sender asks for when wrapping an envelope (包).
struct create_request {
  std::string sender;
  std::string group;
  int64_t total_fen = 0;
  int32_t count = 0;
  envelope_kind kind = envelope_kind::random;
  std::string greeting;
  std::string idempotency_key;
};

/// Validates a create request against the limits. Returns errc::none when it
/// is acceptable, otherwise the error code and a message for the client.
failure validate(const create_request& req, const envelope_limits& lim);

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, create_request& x) {
  return f(x.sender, x.group, x.total_fen, x.count, x.kind, x.greeting,
           x.idempotency_key);
}

} // namespace hb

namespace hb {

/// Checks a user id or payment txn from a client: non-empty, at most
/// `size_max` bytes, valid UTF-8 and no NUL byte (PostgreSQL text cannot
/// hold one). Returns errc::none when acceptable.
failure validate_text_id(const std::string& text, const char* what,
                         size_t size_max);

/// Whether `text` is valid UTF-8 without NUL bytes.
bool valid_utf8_text(const std::string& text);

} // namespace hb
