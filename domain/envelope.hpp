#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "domain/errc.hpp"

namespace hb {

enum class envelope_kind : uint8_t {
  random = 1,  ///< 拼手气: double-mean random shares.
  equal = 2,   ///< 普通: total / count, the remainder spread one fen each.
};

/// The envelope state machine:
///   CREATED --pay--> PAID --last share--> EXHAUSTED
///                    PAID --expiry------> EXPIRED --refund--> REFUNDED
enum class envelope_status : uint8_t {
  created = 1,
  paid = 2,
  exhausted = 3,
  expired = 4,
  refunded = 5,
};

const char* to_string(envelope_kind x);
const char* to_string(envelope_status x);
bool parse_kind(const std::string& text, envelope_kind& out);

/// Returns whether the state machine allows `from` -> `to`.
bool transition_allowed(envelope_status from, envelope_status to);

/// One envelope as stored. Amounts in fen, times in Unix milliseconds.
struct envelope {
  int64_t id = 0;
  std::string sender;
  std::string group;
  std::string greeting;
  std::string idempotency_key;
  envelope_kind kind = envelope_kind::random;
  envelope_status status = envelope_status::created;
  int64_t total_fen = 0;
  int32_t count = 0;
  int64_t remaining_fen = 0;
  int32_t remaining_count = 0;
  /// Money returned to the sender when the envelope expired (REFUNDED).
  int64_t refunded_fen = 0;
  std::string payment_txn;
  int64_t created_at_ms = 0;
  int64_t paid_at_ms = 0;
  int64_t expires_at_ms = 0;
  /// Fencing epoch: bumped by every activation; writes carry it and the
  /// database refuses a stale one.
  int64_t epoch = 0;
};

/// One committed open (拆) of an envelope.
struct open_record {
  std::string user;
  int64_t amount_fen = 0;
  int32_t seq = 0;  ///< 1-based position of this share.
  int64_t opened_at_ms = 0;
};

/// An envelope with all its committed opens, as loaded on activation.
struct envelope_snapshot {
  envelope env;
  std::vector<open_record> opens;
  /// Read from cold storage (older than the hot window): read-only, the
  /// epoch was not bumped.
  bool archived = false;
};

/// One group-commit write: the opens decided in one batch and the envelope's
/// resulting remaining amount/count, guarded by `epoch`.
struct open_batch {
  int64_t envelope_id = 0;
  int64_t epoch = 0;
  std::vector<open_record> opens;
  int64_t remaining_fen = 0;
  int32_t remaining_count = 0;
  envelope_status status = envelope_status::paid;
};

/// The payment system's confirmation that the sender paid.
struct payment {
  int64_t envelope_id = 0;
  int64_t epoch = 0;
  std::string payment_txn;
  int64_t paid_at_ms = 0;
  int64_t expires_at_ms = 0;
  /// Pay from the sender's wallet instead of the external payment system.
  bool from_wallet = false;
};

/// Checks the money invariant of one envelope and its opens: shares >= 1 fen,
/// at most `count` shares, each user once, and
/// sum(opens) + refunded + remaining = total. Returns an empty string when it holds,
/// otherwise a description of the violation.
std::string check_invariants(const envelope& env,
                             const std::vector<open_record>& opens);

/// The shape rules of one open batch, checked before it is written (the
/// database and the simulated store share them): it leaves the envelope PAID
/// or EXHAUSTED, no user appears twice, and its seqs are consecutive and
/// ascending (the store derives each stored seq from the guarded envelope
/// row and the open's position, which gives these seqs exactly when the
/// first one follows the envelope's last). Returns an empty string when it
/// holds, otherwise what is wrong.
std::string batch_problem(const open_batch& b);

/// The share with the highest amount (手气最佳); ties go to the earlier seq.
/// Returns nullptr for no opens.
const open_record* best_luck(const std::vector<open_record>& opens);

// -- CAF inspection (templates only: the domain itself does not need CAF) ----

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, envelope& x) {
  return f(x.id, x.sender, x.group, x.greeting, x.idempotency_key, x.kind,
           x.status, x.total_fen, x.count, x.remaining_fen, x.remaining_count,
           x.refunded_fen, x.payment_txn, x.created_at_ms, x.paid_at_ms,
           x.expires_at_ms, x.epoch);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, open_record& x) {
  return f(x.user, x.amount_fen, x.seq, x.opened_at_ms);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, envelope_snapshot& x) {
  return f(x.env, x.opens, x.archived);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, open_batch& x) {
  return f(x.envelope_id, x.epoch, x.opens, x.remaining_fen, x.remaining_count,
           x.status);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, payment& x) {
  return f(x.envelope_id, x.epoch, x.payment_txn, x.paid_at_ms,
           x.expires_at_ms, x.from_wallet);
}

} // namespace hb
