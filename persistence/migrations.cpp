#include "persistence/migrations.hpp"

#include <cassert>
#include <cstddef>

namespace hb::persistence {

namespace {

// Money columns are integer fen; CHECK constraints are the last line of
// defence against an actor bug paying out more than the envelope holds.
constexpr const char* v1_initial_schema = R"sql(
CREATE TABLE envelopes (
  id BIGINT PRIMARY KEY,
  segment INT NOT NULL
    CONSTRAINT envelopes_segment_range CHECK (segment >= 0 AND segment < 1000),
  sender TEXT NOT NULL,
  group_id TEXT NOT NULL,
  greeting TEXT NOT NULL DEFAULT '',
  idempotency_key TEXT NOT NULL,
  kind SMALLINT NOT NULL CONSTRAINT envelopes_kind_known CHECK (kind IN (1, 2)),
  status SMALLINT NOT NULL
    CONSTRAINT envelopes_status_known CHECK (status BETWEEN 1 AND 5),
  total_fen BIGINT NOT NULL CONSTRAINT envelopes_total_positive CHECK (total_fen > 0),
  count INT NOT NULL CONSTRAINT envelopes_count_positive CHECK (count > 0),
  remaining_fen BIGINT NOT NULL CONSTRAINT envelopes_remaining_fen_range
    CHECK (remaining_fen >= 0 AND remaining_fen <= total_fen),
  remaining_count INT NOT NULL CONSTRAINT envelopes_remaining_count_range
    CHECK (remaining_count >= 0 AND remaining_count <= count),
  payment_txn TEXT CONSTRAINT envelopes_payment_txn_key UNIQUE,
  created_at TIMESTAMPTZ NOT NULL,
  paid_at TIMESTAMPTZ,
  expires_at TIMESTAMPTZ,
  epoch BIGINT NOT NULL DEFAULT 0,
  CONSTRAINT envelopes_idempotency_key UNIQUE (sender, idempotency_key),
  -- The state machine's shape: money never stays behind without a share to
  -- carry it, a live envelope can give each remaining share at least 1 fen,
  -- PAID means shares are left and EXHAUSTED means none are.
  CONSTRAINT envelopes_no_stranded_money
    CHECK (remaining_count > 0 OR remaining_fen = 0),
  CONSTRAINT envelopes_share_min
    CHECK (status NOT IN (1, 2) OR remaining_fen >= remaining_count),
  CONSTRAINT envelopes_paid_has_shares CHECK (status <> 2 OR remaining_count > 0),
  CONSTRAINT envelopes_exhausted_has_none CHECK (status <> 3 OR remaining_count = 0)
);

-- The expiry sweeper scans paid envelopes by expiry time.
CREATE INDEX envelopes_paid_expiry ON envelopes (expires_at) WHERE status = 2;

CREATE TABLE opens (
  envelope_id BIGINT NOT NULL REFERENCES envelopes (id),
  user_id TEXT NOT NULL,
  amount_fen BIGINT NOT NULL CHECK (amount_fen >= 1),
  seq INT NOT NULL CHECK (seq >= 1),
  opened_at TIMESTAMPTZ NOT NULL,
  -- 1 committed, 2 transferred (credited to the wallet by the outbox relay).
  status SMALLINT NOT NULL DEFAULT 1 CHECK (status IN (1, 2)),
  PRIMARY KEY (envelope_id, user_id),
  UNIQUE (envelope_id, seq)
);

CREATE TABLE outbox (
  id BIGSERIAL PRIMARY KEY,
  kind TEXT NOT NULL CHECK (kind IN ('paid', 'open')),
  envelope_id BIGINT NOT NULL,
  user_id TEXT,
  amount_fen BIGINT,
  -- 'open:<envelope>:<user>' or 'paid:<envelope>': the relay's exactly-once key.
  idempotency_key TEXT NOT NULL UNIQUE,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  delivered_at TIMESTAMPTZ
);

-- The relay drains undelivered rows in id order.
CREATE INDEX outbox_pending ON outbox (id) WHERE delivered_at IS NULL;

CREATE TABLE segment_leases (
  segment INT NOT NULL,
  day INT NOT NULL,
  next_seq BIGINT NOT NULL CHECK (next_seq >= 1),
  PRIMARY KEY (segment, day)
);
)sql";

const std::vector<migration> migrations = {
  {1, "initial_schema", v1_initial_schema},
};

bool strictly_ascending(const std::vector<migration>& xs) {
  for (std::size_t i = 1; i < xs.size(); ++i)
    if (xs[i].version <= xs[i - 1].version)
      return false;
  return true;
}

} // namespace

const std::vector<migration>& all_migrations() {
  // A misordered list would apply changes out of order on some databases.
  static const bool ordered = strictly_ascending(migrations);
  assert(ordered && "migrations must have strictly ascending versions");
  (void) ordered;
  return migrations;
}

} // namespace hb::persistence
