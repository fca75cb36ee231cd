#include "persistence/migrations.hpp"

#include <cassert>
#include <cstddef>

namespace hb::persistence {

namespace {

// The initial schema. Money columns are integer fen; CHECK constraints are
// the last line of defence against an actor bug paying out more than the
// envelope holds.
//
// Hot and cold: envelopes, opens and user_records are partitioned by day of
// the envelope id (yyyymmdd·10^11 + seq·10^3 + segment): day D is the range
// [D·10^11, (D+1)·10^11) in a table <table>_p<yyyymmdd>. There is no default
// partition: hb_ensure_partitions creates days ahead, and create_envelope
// creates a missing day on the fly. Days older than the hot window move into
// the schema `cold` (hb_detach_day), whose partitioned twins have the same
// columns, constraints and indexes; the *_all views read both. Partitioned
// tables cannot have foreign keys between them that survive a detach, nor
// unique constraints without the partition key: envelope_keys and payments
// carry the uniqueness that used to live on envelopes.
//
// The ledger is double entry: every movement is one ledger_entries row from
// a debit to a credit account with a unique idempotency key, posted by
// hb_post together with both balances. A balance is the sum of the entries
// into the account minus those out of it, so all balances sum to zero.
constexpr const char* v1_initial_schema = R"sql(
-- == Envelopes, opens, user records (partitioned by day) =====================

CREATE TABLE envelopes (
  id BIGINT NOT NULL,
  segment INT NOT NULL
    CONSTRAINT envelopes_segment_range CHECK (segment >= 0 AND segment < 1000),
  sender TEXT NOT NULL,
  group_id TEXT NOT NULL,
  greeting TEXT NOT NULL DEFAULT '',
  idempotency_key TEXT NOT NULL,
  kind SMALLINT NOT NULL CONSTRAINT envelopes_kind_known CHECK (kind IN (1, 2)),
  -- 1 CREATED, 2 PAID, 3 EXHAUSTED, 4 EXPIRED, 5 REFUNDED.
  status SMALLINT NOT NULL
    CONSTRAINT envelopes_status_known CHECK (status BETWEEN 1 AND 5),
  total_fen BIGINT NOT NULL CONSTRAINT envelopes_total_positive CHECK (total_fen > 0),
  count INT NOT NULL CONSTRAINT envelopes_count_positive CHECK (count > 0),
  remaining_fen BIGINT NOT NULL CONSTRAINT envelopes_remaining_fen_range
    CHECK (remaining_fen >= 0 AND remaining_fen <= total_fen),
  remaining_count INT NOT NULL CONSTRAINT envelopes_remaining_count_range
    CHECK (remaining_count >= 0 AND remaining_count <= count),
  -- What went back to the sender on expiry (REFUNDED only).
  refunded_fen BIGINT NOT NULL DEFAULT 0 CONSTRAINT envelopes_refunded_range
    CHECK (refunded_fen >= 0 AND remaining_fen + refunded_fen <= total_fen),
  payment_txn TEXT,
  created_at TIMESTAMPTZ NOT NULL,
  paid_at TIMESTAMPTZ,
  expires_at TIMESTAMPTZ,
  epoch BIGINT NOT NULL DEFAULT 0,
  CONSTRAINT envelopes_pkey PRIMARY KEY (id),
  CONSTRAINT envelopes_segment_of_id CHECK (segment = id % 1000),
  -- The state machine's shape: money never stays behind without a share to
  -- carry it, a live envelope can give each remaining share at least 1 fen,
  -- PAID means shares are left and EXHAUSTED means none are. A REFUNDED
  -- envelope keeps its unopened shares (remaining_count > 0) but no money.
  CONSTRAINT envelopes_no_stranded_money
    CHECK (remaining_count > 0 OR remaining_fen = 0),
  CONSTRAINT envelopes_share_min
    CHECK (status NOT IN (1, 2) OR remaining_fen >= remaining_count),
  CONSTRAINT envelopes_paid_has_shares CHECK (status <> 2 OR remaining_count > 0),
  CONSTRAINT envelopes_exhausted_has_none CHECK (status <> 3 OR remaining_count = 0),
  CONSTRAINT envelopes_refunded_holds_nothing
    CHECK (status <> 5 OR (remaining_fen = 0 AND refunded_fen > 0)),
  CONSTRAINT envelopes_refund_only_when_refunded
    CHECK (status = 5 OR refunded_fen = 0)
) PARTITION BY RANGE (id);

-- The expiry sweeper scans paid envelopes by expiry time.
CREATE INDEX envelopes_paid_expiry ON envelopes (expires_at) WHERE status = 2;

CREATE TABLE opens (
  envelope_id BIGINT NOT NULL,
  user_id TEXT NOT NULL,
  amount_fen BIGINT NOT NULL CONSTRAINT opens_amount_positive CHECK (amount_fen >= 1),
  seq INT NOT NULL CONSTRAINT opens_seq_positive CHECK (seq >= 1),
  opened_at TIMESTAMPTZ NOT NULL,
  -- 1 committed, 2 transferred (credited to the wallet by the outbox relay).
  status SMALLINT NOT NULL DEFAULT 1
    CONSTRAINT opens_status_known CHECK (status IN (1, 2)),
  CONSTRAINT opens_pkey PRIMARY KEY (envelope_id, user_id),
  CONSTRAINT opens_seq_key UNIQUE (envelope_id, seq)
) PARTITION BY RANGE (envelope_id);

-- A user's history: what they sent (written with the payment) and received
-- (written by the relay with the credit).
CREATE TABLE user_records (
  user_id TEXT NOT NULL,
  -- 1 sent, 2 received.
  kind SMALLINT NOT NULL CONSTRAINT user_records_kind_known CHECK (kind IN (1, 2)),
  envelope_id BIGINT NOT NULL,
  amount_fen BIGINT NOT NULL
    CONSTRAINT user_records_amount_positive CHECK (amount_fen > 0),
  at_ms BIGINT NOT NULL,
  group_id TEXT NOT NULL,
  counterpart TEXT NOT NULL DEFAULT '',
  CONSTRAINT user_records_pkey PRIMARY KEY (envelope_id, user_id, kind)
) PARTITION BY RANGE (envelope_id);

CREATE INDEX user_records_history
  ON user_records (user_id, kind, at_ms DESC, envelope_id DESC);

-- Cold twins: same columns, constraints and indexes, so that a day partition
-- moves between them without a scan or an index build.
CREATE SCHEMA cold;
CREATE TABLE cold.envelopes (LIKE public.envelopes INCLUDING ALL)
  PARTITION BY RANGE (id);
CREATE TABLE cold.opens (LIKE public.opens INCLUDING ALL)
  PARTITION BY RANGE (envelope_id);
CREATE TABLE cold.user_records (LIKE public.user_records INCLUDING ALL)
  PARTITION BY RANGE (envelope_id);

-- Every read that may concern old data goes through these.
CREATE VIEW envelopes_all AS
  SELECT *, false AS archived FROM public.envelopes
  UNION ALL
  SELECT *, true AS archived FROM cold.envelopes;
CREATE VIEW opens_all AS
  SELECT * FROM public.opens UNION ALL SELECT * FROM cold.opens;
CREATE VIEW user_records_all AS
  SELECT * FROM public.user_records UNION ALL SELECT * FROM cold.user_records;

-- == Uniqueness that partitioned tables cannot carry ===========================

-- A Create is idempotent per sender and client key.
CREATE TABLE envelope_keys (
  sender TEXT NOT NULL,
  idempotency_key TEXT NOT NULL,
  envelope_id BIGINT NOT NULL CONSTRAINT envelope_keys_envelope_id_key UNIQUE,
  CONSTRAINT envelope_keys_pkey PRIMARY KEY (sender, idempotency_key)
);

-- One payment txn pays one envelope, once.
CREATE TABLE payments (
  payment_txn TEXT NOT NULL CONSTRAINT payments_pkey PRIMARY KEY,
  envelope_id BIGINT NOT NULL CONSTRAINT payments_envelope_id_key UNIQUE,
  source TEXT NOT NULL
    CONSTRAINT payments_source_known CHECK (source IN ('external', 'wallet')),
  created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- == Outbox and id leases ======================================================

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

-- == Ledger ====================================================================

CREATE TABLE accounts (
  id TEXT PRIMARY KEY,
  -- 1 user wallet, 2 escrow (one per segment), 3 external.
  kind SMALLINT NOT NULL CONSTRAINT accounts_kind_known CHECK (kind IN (1, 2, 3)),
  balance_fen BIGINT NOT NULL DEFAULT 0,
  CONSTRAINT accounts_wallet_not_negative CHECK (kind <> 1 OR balance_fen >= 0)
);

CREATE TABLE ledger_entries (
  id BIGSERIAL PRIMARY KEY,
  -- 'pay:<envelope>', 'credit:<envelope>:<user>', 'refund:<envelope>',
  -- 'deposit:<client key>'.
  idempotency_key TEXT NOT NULL CONSTRAINT ledger_entries_idempotency_key UNIQUE,
  kind TEXT NOT NULL CONSTRAINT ledger_entries_kind_known
    CHECK (kind IN ('pay', 'credit', 'refund', 'deposit')),
  debit_account TEXT NOT NULL,
  credit_account TEXT NOT NULL,
  amount_fen BIGINT NOT NULL
    CONSTRAINT ledger_entries_amount_positive CHECK (amount_fen > 0),
  envelope_id BIGINT,
  user_id TEXT,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  CONSTRAINT ledger_entries_two_accounts CHECK (debit_account <> credit_account)
);

CREATE INDEX ledger_entries_envelope ON ledger_entries (envelope_id, kind, user_id);

-- Account ids; domain/ledger.cpp spells them the same way.
CREATE FUNCTION hb_wallet(user_id TEXT) RETURNS TEXT
  LANGUAGE sql IMMUTABLE STRICT AS $$ SELECT 'user:' || user_id $$;
CREATE FUNCTION hb_escrow(segment INT) RETURNS TEXT
  LANGUAGE sql IMMUTABLE STRICT AS $$ SELECT 'escrow:' || lpad(segment::text, 3, '0') $$;
CREATE FUNCTION hb_escrow_of(envelope_id BIGINT) RETURNS TEXT
  LANGUAGE sql IMMUTABLE STRICT AS $$ SELECT hb_escrow((envelope_id % 1000)::int) $$;

CREATE FUNCTION hb_account_kind(account TEXT) RETURNS SMALLINT
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
BEGIN
  IF starts_with(account, 'user:') THEN RETURN 1; END IF;
  IF starts_with(account, 'escrow:') THEN RETURN 2; END IF;
  IF starts_with(account, 'external:') THEN RETURN 3; END IF;
  RAISE EXCEPTION 'unknown kind of account %', account;
END $$;

CREATE FUNCTION hb_status_name(status SMALLINT) RETURNS TEXT
  LANGUAGE sql IMMUTABLE AS $$
  SELECT (ARRAY['CREATED', 'PAID', 'EXHAUSTED', 'EXPIRED', 'REFUNDED'])[status] $$;

CREATE FUNCTION hb_ms(t TIMESTAMPTZ) RETURNS BIGINT
  LANGUAGE sql STABLE AS $$ SELECT (extract(epoch FROM t) * 1000)::bigint $$;

-- Posts one entry and moves both balances; a key seen before posts nothing
-- and returns false. Every writer locks (and creates) accounts in id order,
-- so concurrent postings never deadlock. A wallet that would go below zero
-- violates accounts_wallet_not_negative and fails the whole transaction.
CREATE FUNCTION hb_post(p_key TEXT, p_kind TEXT, p_debit TEXT, p_credit TEXT,
                        p_amount BIGINT, p_envelope_id BIGINT, p_user_id TEXT)
RETURNS BOOLEAN LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO ledger_entries (idempotency_key, kind, debit_account,
                              credit_account, amount_fen, envelope_id, user_id)
  VALUES (p_key, p_kind, p_debit, p_credit, p_amount, p_envelope_id, p_user_id)
  ON CONFLICT (idempotency_key) DO NOTHING;
  IF NOT FOUND THEN
    RETURN false;
  END IF;
  INSERT INTO accounts (id, kind)
  SELECT a, hb_account_kind(a) FROM unnest(ARRAY[p_debit, p_credit]) AS a
  ORDER BY a
  ON CONFLICT (id) DO NOTHING;
  UPDATE accounts SET balance_fen = balance_fen
    + CASE WHEN id = p_credit THEN p_amount ELSE -p_amount END
  WHERE id = least(p_debit, p_credit);
  UPDATE accounts SET balance_fen = balance_fen
    + CASE WHEN id = p_credit THEN p_amount ELSE -p_amount END
  WHERE id = greatest(p_debit, p_credit);
  RETURN true;
END $$;

-- hb_post for a posting that must be new (its key belongs to a state change
-- that happens once, e.g. 'pay:<id>' with CREATED -> PAID).
CREATE FUNCTION hb_post_once(p_key TEXT, p_kind TEXT, p_debit TEXT, p_credit TEXT,
                             p_amount BIGINT, p_envelope_id BIGINT, p_user_id TEXT)
RETURNS VOID LANGUAGE plpgsql AS $$
BEGIN
  IF NOT hb_post(p_key, p_kind, p_debit, p_credit, p_amount, p_envelope_id,
                 p_user_id) THEN
    RAISE EXCEPTION 'ledger entry % exists already', p_key;
  END IF;
END $$;

-- == Outbox relay ==============================================================

CREATE TYPE hb_relay_item AS (
  envelope_id BIGINT, user_id TEXT, amount_fen BIGINT, at_ms BIGINT,
  group_id TEXT, sender TEXT, archived BOOLEAN);

-- One relay batch in one transaction (see pg_store::relay_batch). Rows other
-- relays hold are skipped; accounts are locked in id order like hb_post.
-- A batch touches at most p_limit rows: index probes (with run-time
-- partition pruning, which works on the partitioned tables but not through
-- the *_all views) beat hashing whole day partitions, whatever the planner
-- guesses about tables that grew since they were last analysed.
CREATE FUNCTION hb_relay_batch(p_limit INT, OUT taken INT, OUT credited INT,
                               OUT duplicates INT, OUT credited_fen BIGINT)
LANGUAGE plpgsql SET enable_hashjoin = off SET enable_mergejoin = off AS $$
DECLARE
  items hb_relay_item[];   -- the opens to credit
  misses hb_relay_item[];  -- 'open' rows whose envelope is not hot
BEGIN
  -- Take and mark the rows; gather what the credits and records need.
  WITH t AS (
    SELECT id FROM outbox WHERE delivered_at IS NULL
    ORDER BY id LIMIT p_limit FOR UPDATE SKIP LOCKED),
  d AS (
    UPDATE outbox x SET delivered_at = now() FROM t WHERE x.id = t.id
    RETURNING x.kind, x.envelope_id, x.user_id, x.amount_fen)
  SELECT count(*)::int,
         COALESCE(array_agg(ROW(d.envelope_id, d.user_id, d.amount_fen,
                                hb_ms(o.opened_at), e.group_id, e.sender,
                                false)::hb_relay_item
                            ORDER BY d.envelope_id, d.user_id)
                  FILTER (WHERE o.user_id IS NOT NULL), '{}'),
         COALESCE(array_agg(ROW(d.envelope_id, d.user_id, d.amount_fen,
                                NULL, NULL, NULL, true)::hb_relay_item)
                  FILTER (WHERE d.kind = 'open' AND e.id IS NULL), '{}')
  INTO taken, items, misses
  FROM d
  LEFT JOIN envelopes e ON d.kind = 'open' AND e.id = d.envelope_id
  LEFT JOIN opens o ON d.kind = 'open' AND o.envelope_id = d.envelope_id
                   AND o.user_id = d.user_id;

  -- Opens of archived days (re-enqueued by a repair) come from cold. An
  -- 'open' row without an open (never written so) credits nothing.
  IF cardinality(misses) > 0 THEN
    SELECT items || COALESCE(array_agg(ROW(m.envelope_id, m.user_id,
                                           m.amount_fen, hb_ms(o.opened_at),
                                           e.group_id, e.sender,
                                           true)::hb_relay_item), '{}')
    INTO items
    FROM unnest(misses) AS m
    JOIN cold.envelopes e ON e.id = m.envelope_id
    JOIN cold.opens o ON o.envelope_id = m.envelope_id AND o.user_id = m.user_id;
  END IF;

  -- Credits; a key that exists already is a repeated delivery.
  WITH ins AS (
    INSERT INTO ledger_entries (idempotency_key, kind, debit_account,
                                credit_account, amount_fen, envelope_id, user_id)
    SELECT 'credit:' || x.envelope_id || ':' || x.user_id, 'credit',
           hb_escrow_of(x.envelope_id), hb_wallet(x.user_id), x.amount_fen,
           x.envelope_id, x.user_id
    FROM unnest(items) AS x
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING debit_account, credit_account, amount_fen),
  moves AS (
    SELECT debit_account AS id, -amount_fen AS delta FROM ins
    UNION ALL
    SELECT credit_account, amount_fen FROM ins),
  balances AS (
    -- Only wallets gain and only escrow loses here, so the upsert's proposed
    -- rows never break accounts_wallet_not_negative.
    INSERT INTO accounts AS a (id, kind, balance_fen)
    SELECT id, hb_account_kind(id), sum(delta) FROM moves GROUP BY id ORDER BY id
    ON CONFLICT (id) DO UPDATE SET balance_fen = a.balance_fen + excluded.balance_fen)
  SELECT count(*)::int, COALESCE(sum(amount_fen), 0)
  INTO credited, credited_fen FROM ins;
  duplicates := cardinality(items) - credited;

  INSERT INTO user_records (user_id, kind, envelope_id, amount_fen, at_ms,
                            group_id, counterpart)
  SELECT x.user_id, 2, x.envelope_id, x.amount_fen, x.at_ms, x.group_id, x.sender
  FROM unnest(items) AS x WHERE NOT x.archived
  ON CONFLICT DO NOTHING;
  UPDATE opens o SET status = 2 FROM unnest(items) AS x
  WHERE NOT x.archived AND o.envelope_id = x.envelope_id
    AND o.user_id = x.user_id AND o.status = 1;

  -- A repaired open of an archived day lives in the cold tables.
  IF cardinality(misses) > 0 THEN
    INSERT INTO cold.user_records (user_id, kind, envelope_id, amount_fen,
                                   at_ms, group_id, counterpart)
    SELECT x.user_id, 2, x.envelope_id, x.amount_fen, x.at_ms, x.group_id,
           x.sender
    FROM unnest(items) AS x WHERE x.archived
    ON CONFLICT DO NOTHING;
    UPDATE cold.opens o SET status = 2 FROM unnest(items) AS x
    WHERE x.archived AND o.envelope_id = x.envelope_id
      AND o.user_id = x.user_id AND o.status = 1;
  END IF;
END $$;

-- == Day partitions ============================================================

-- Serialises partition maintenance across processes ("hbpart").
CREATE FUNCTION hb_partition_lock_key() RETURNS BIGINT
  LANGUAGE sql IMMUTABLE AS $$ SELECT x'6862706172'::bigint $$;

-- Creates the missing day partitions of days [from_day, to_day] (yyyymmdd)
-- that exist neither hot nor cold; returns how many tables it created. Each
-- is created apart and then attached: ATTACH locks the parent only in SHARE
-- UPDATE EXCLUSIVE mode, so reads and writes go on meanwhile. The day CHECK
-- lets a later move into cold attach without scanning the table.
CREATE FUNCTION hb_ensure_partitions(from_day INT, to_day INT) RETURNS INT
LANGUAGE plpgsql AS $$
DECLARE
  d DATE;
  v_day INT;
  lo BIGINT;
  hi BIGINT;
  tbl TEXT;
  part TEXT;
  col TEXT;
  created INT := 0;
BEGIN
  PERFORM set_config('lock_timeout', '5s', true);
  PERFORM pg_advisory_xact_lock(hb_partition_lock_key());
  FOR d IN SELECT generate_series(to_date(from_day::text, 'YYYYMMDD'),
                                  to_date(to_day::text, 'YYYYMMDD'),
                                  interval '1 day')::date
  LOOP
    v_day := to_char(d, 'YYYYMMDD')::int;
    lo := v_day::bigint * 100000000000;
    hi := (v_day + 1)::bigint * 100000000000;
    FOREACH tbl IN ARRAY ARRAY['envelopes', 'opens', 'user_records'] LOOP
      part := tbl || '_p' || v_day;
      CONTINUE WHEN to_regclass('public.' || part) IS NOT NULL
                 OR to_regclass('cold.' || part) IS NOT NULL;
      col := CASE tbl WHEN 'envelopes' THEN 'id' ELSE 'envelope_id' END;
      EXECUTE format('CREATE TABLE public.%I (LIKE public.%I INCLUDING DEFAULTS'
                     ' INCLUDING CONSTRAINTS, CONSTRAINT %I CHECK (%I >= %s AND %I < %s))',
                     part, tbl, part || '_day', col, lo, col, hi);
      EXECUTE format('ALTER TABLE public.%I ATTACH PARTITION public.%I'
                     ' FOR VALUES FROM (%s) TO (%s)', tbl, part, lo, hi);
      created := created + 1;
    END LOOP;
  END LOOP;
  RETURN created;
END $$;

-- Moves one day's partitions (all three tables) into cold storage unless the
-- day still holds money in escrow: a PAID (or EXPIRED) envelope, or an open
-- the relay has not credited yet. Returns whether it moved the day. The hot
-- parents are locked ACCESS EXCLUSIVE (DETACH needs that) for the short
-- move only, with a lock timeout; the expensive check runs before.
CREATE FUNCTION hb_detach_day(p_day INT) RETURNS BOOLEAN
LANGUAGE plpgsql AS $$
DECLARE
  lo BIGINT := p_day::bigint * 100000000000;
  hi BIGINT := (p_day + 1)::bigint * 100000000000;
  tbl TEXT;
  part TEXT;
BEGIN
  IF to_regclass('public.envelopes_p' || p_day) IS NULL THEN
    RETURN false;
  END IF;
  IF EXISTS (SELECT 1 FROM envelopes WHERE id >= lo AND id < hi AND status IN (2, 4))
     OR EXISTS (SELECT 1 FROM opens
                WHERE envelope_id >= lo AND envelope_id < hi AND status = 1) THEN
    RETURN false;
  END IF;
  PERFORM set_config('lock_timeout', '2s', true);
  PERFORM pg_advisory_xact_lock(hb_partition_lock_key());
  LOCK TABLE ONLY public.envelopes, public.opens, public.user_records
    IN ACCESS EXCLUSIVE MODE;
  -- Nobody writes now; cheap re-check of what may have changed meanwhile
  -- (a payment, a repaired open) through small partial indexes.
  IF EXISTS (SELECT 1 FROM envelopes WHERE id >= lo AND id < hi AND status = 2)
     OR EXISTS (SELECT 1 FROM outbox WHERE delivered_at IS NULL AND kind = 'open'
                AND envelope_id >= lo AND envelope_id < hi) THEN
    RETURN false;
  END IF;
  FOREACH tbl IN ARRAY ARRAY['envelopes', 'opens', 'user_records'] LOOP
    part := tbl || '_p' || p_day;
    CONTINUE WHEN to_regclass('public.' || part) IS NULL;
    EXECUTE format('ALTER TABLE public.%I DETACH PARTITION public.%I', tbl, part);
    EXECUTE format('ALTER TABLE public.%I SET SCHEMA cold', part);
    EXECUTE format('ALTER TABLE cold.%I ATTACH PARTITION cold.%I'
                   ' FOR VALUES FROM (%s) TO (%s)', tbl, part, lo, hi);
  END LOOP;
  RETURN true;
END $$;
)sql";

// Segment health (DB fault masking): a segment whose storage fails is
// blocked here, durably, so that every node's id allocator skips it.
// `mode` tells who blocked it: 'auto' (the health supervisor; probes may
// unblock it) or 'manual' (an operator; only an operator unblocks it).
constexpr const char* v2_segment_states = R"sql(
CREATE TABLE segment_states (
  segment INT PRIMARY KEY CHECK (segment >= 0 AND segment < 1000),
  blocked BOOLEAN NOT NULL,
  mode TEXT NOT NULL CHECK (mode IN ('auto', 'manual')),
  reason TEXT NOT NULL DEFAULT '',
  changed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
)sql";

// Opens are their own outbox: a committed open (status 1) is a credit the
// relay still owes, found through a small partial index, so the commit of
// an open writes one row instead of two and the relay marks one row instead
// of two. The outbox keeps the rows that are not opens ('paid') and the
// re-enqueued opens of archived days (reconciliation repairs). The pending
// outbox 'open' rows of hot opens become plain pending opens.
constexpr const char* v3_opens_as_outbox = R"sql(
CREATE INDEX opens_pending ON opens (opened_at) WHERE status = 1;
CREATE INDEX opens_pending ON cold.opens (opened_at) WHERE status = 1;

DELETE FROM outbox x WHERE x.kind = 'open' AND x.delivered_at IS NULL
  AND EXISTS (SELECT 1 FROM opens o WHERE o.envelope_id = x.envelope_id
              AND o.user_id = x.user_id AND o.status = 1);

-- What the relay still owes: undelivered outbox rows and hot opens not yet
-- credited.
CREATE VIEW relay_backlog AS
  SELECT kind, envelope_id, user_id, created_at FROM outbox
  WHERE delivered_at IS NULL
  UNION ALL
  SELECT 'open', envelope_id, user_id, opened_at FROM opens WHERE status = 1;

-- One relay batch in one transaction (see pg_store::relay_batch): first the
-- outbox rows, then, up to p_limit in all, the oldest pending opens. Rows
-- other relays hold are skipped; accounts are locked in id order like
-- hb_post. Every step is index probes with run-time partition pruning, and
-- the pending opens come in index order (a merge of the partitions'
-- opens_pending indexes), whatever the planner guesses about tables that
-- grew since they were last analysed: on a fresh day partition it guessed
-- a handful of rows and sorted all pending opens, on disk, in every batch.
-- The planner's penalty for the sorts that remain (100 items) makes plans
-- look expensive enough to JIT-compile: no JIT here (it cost 130 ms a batch).
CREATE OR REPLACE FUNCTION hb_relay_batch(p_limit INT, OUT taken INT,
                                          OUT credited INT, OUT duplicates INT,
                                          OUT credited_fen BIGINT)
LANGUAGE plpgsql SET enable_hashjoin = off SET enable_mergejoin = off
  SET enable_sort = off SET enable_bitmapscan = off SET jit = off AS $$
DECLARE
  items hb_relay_item[];   -- the opens to credit
  misses hb_relay_item[];  -- outbox 'open' rows whose envelope is not hot
  more hb_relay_item[];    -- pending opens
  n INT;
BEGIN
  -- Outbox rows: take and mark them; gather what the credits need.
  WITH t AS (
    SELECT id FROM outbox WHERE delivered_at IS NULL
    ORDER BY id LIMIT p_limit FOR UPDATE SKIP LOCKED),
  d AS (
    UPDATE outbox x SET delivered_at = now() FROM t WHERE x.id = t.id
    RETURNING x.kind, x.envelope_id, x.user_id, x.amount_fen)
  SELECT count(*)::int,
         COALESCE(array_agg(ROW(d.envelope_id, d.user_id, d.amount_fen,
                                hb_ms(o.opened_at), e.group_id, e.sender,
                                false)::hb_relay_item)
                  FILTER (WHERE o.user_id IS NOT NULL), '{}'),
         COALESCE(array_agg(ROW(d.envelope_id, d.user_id, d.amount_fen,
                                NULL, NULL, NULL, true)::hb_relay_item)
                  FILTER (WHERE d.kind = 'open' AND e.id IS NULL), '{}')
  INTO taken, items, misses
  FROM d
  LEFT JOIN envelopes e ON d.kind = 'open' AND e.id = d.envelope_id
  LEFT JOIN opens o ON d.kind = 'open' AND o.envelope_id = d.envelope_id
                   AND o.user_id = d.user_id;

  -- Opens of archived days (re-enqueued by a repair) come from cold. An
  -- 'open' row without an open (never written so) credits nothing.
  IF cardinality(misses) > 0 THEN
    SELECT items || COALESCE(array_agg(ROW(m.envelope_id, m.user_id,
                                           m.amount_fen, hb_ms(o.opened_at),
                                           e.group_id, e.sender,
                                           true)::hb_relay_item), '{}')
    INTO items
    FROM unnest(misses) AS m
    JOIN cold.envelopes e ON e.id = m.envelope_id
    JOIN cold.opens o ON o.envelope_id = m.envelope_id AND o.user_id = m.user_id;
  END IF;

  -- Pending opens, oldest first; locked until the batch commits, so that
  -- a second relay skips them.
  IF taken < p_limit THEN
    WITH t AS (
      SELECT envelope_id, user_id, amount_fen, opened_at FROM opens
      WHERE status = 1 ORDER BY opened_at LIMIT p_limit - taken
      FOR UPDATE SKIP LOCKED)
    SELECT count(*)::int,
           COALESCE(array_agg(ROW(t.envelope_id, t.user_id, t.amount_fen,
                                  hb_ms(t.opened_at), e.group_id, e.sender,
                                  false)::hb_relay_item), '{}')
    INTO n, more
    FROM t JOIN envelopes e ON e.id = t.envelope_id;
    taken := taken + n;
    items := items || more;
  END IF;

  -- Credits, in a stable order; a key that exists already is a repeated
  -- delivery.
  WITH ins AS (
    INSERT INTO ledger_entries (idempotency_key, kind, debit_account,
                                credit_account, amount_fen, envelope_id, user_id)
    SELECT 'credit:' || x.envelope_id || ':' || x.user_id, 'credit',
           hb_escrow_of(x.envelope_id), hb_wallet(x.user_id), x.amount_fen,
           x.envelope_id, x.user_id
    FROM unnest(items) AS x ORDER BY x.envelope_id, x.user_id
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING debit_account, credit_account, amount_fen),
  moves AS (
    SELECT debit_account AS id, -amount_fen AS delta FROM ins
    UNION ALL
    SELECT credit_account, amount_fen FROM ins),
  balances AS (
    -- Only wallets gain and only escrow loses here, so the upsert's proposed
    -- rows never break accounts_wallet_not_negative.
    INSERT INTO accounts AS a (id, kind, balance_fen)
    SELECT id, hb_account_kind(id), sum(delta) FROM moves GROUP BY id ORDER BY id
    ON CONFLICT (id) DO UPDATE SET balance_fen = a.balance_fen + excluded.balance_fen)
  SELECT count(*)::int, COALESCE(sum(amount_fen), 0)
  INTO credited, credited_fen FROM ins;
  duplicates := cardinality(items) - credited;

  INSERT INTO user_records (user_id, kind, envelope_id, amount_fen, at_ms,
                            group_id, counterpart)
  SELECT x.user_id, 2, x.envelope_id, x.amount_fen, x.at_ms, x.group_id, x.sender
  FROM unnest(items) AS x WHERE NOT x.archived
  ON CONFLICT DO NOTHING;
  -- status <> 2 (= 1, by the CHECK) keeps the planner off opens_pending:
  -- with stale statistics it scanned that whole index once per item.
  UPDATE opens o SET status = 2 FROM unnest(items) AS x
  WHERE NOT x.archived AND o.envelope_id = x.envelope_id
    AND o.user_id = x.user_id AND o.status <> 2;

  -- A repaired open of an archived day lives in the cold tables.
  IF cardinality(misses) > 0 THEN
    INSERT INTO cold.user_records (user_id, kind, envelope_id, amount_fen,
                                   at_ms, group_id, counterpart)
    SELECT x.user_id, 2, x.envelope_id, x.amount_fen, x.at_ms, x.group_id,
           x.sender
    FROM unnest(items) AS x WHERE x.archived
    ON CONFLICT DO NOTHING;
    UPDATE cold.opens o SET status = 2 FROM unnest(items) AS x
    WHERE x.archived AND o.envelope_id = x.envelope_id
      AND o.user_id = x.user_id AND o.status <> 2;
  END IF;
END $$;

-- Moves a day into cold storage (see v1); a pending open now counts in the
-- re-check under the lock too (it was an outbox row before).
CREATE OR REPLACE FUNCTION hb_detach_day(p_day INT) RETURNS BOOLEAN
LANGUAGE plpgsql AS $$
DECLARE
  lo BIGINT := p_day::bigint * 100000000000;
  hi BIGINT := (p_day + 1)::bigint * 100000000000;
  tbl TEXT;
  part TEXT;
BEGIN
  IF to_regclass('public.envelopes_p' || p_day) IS NULL THEN
    RETURN false;
  END IF;
  IF EXISTS (SELECT 1 FROM envelopes WHERE id >= lo AND id < hi AND status IN (2, 4))
     OR EXISTS (SELECT 1 FROM opens
                WHERE envelope_id >= lo AND envelope_id < hi AND status = 1) THEN
    RETURN false;
  END IF;
  PERFORM set_config('lock_timeout', '2s', true);
  PERFORM pg_advisory_xact_lock(hb_partition_lock_key());
  LOCK TABLE ONLY public.envelopes, public.opens, public.user_records
    IN ACCESS EXCLUSIVE MODE;
  -- Nobody writes now; cheap re-check of what may have changed meanwhile
  -- (a payment, a repaired open) through small partial indexes.
  IF EXISTS (SELECT 1 FROM envelopes WHERE id >= lo AND id < hi AND status = 2)
     OR EXISTS (SELECT 1 FROM opens WHERE status = 1
                AND envelope_id >= lo AND envelope_id < hi)
     OR EXISTS (SELECT 1 FROM outbox WHERE delivered_at IS NULL AND kind = 'open'
                AND envelope_id >= lo AND envelope_id < hi) THEN
    RETURN false;
  END IF;
  FOREACH tbl IN ARRAY ARRAY['envelopes', 'opens', 'user_records'] LOOP
    part := tbl || '_p' || p_day;
    CONTINUE WHEN to_regclass('public.' || part) IS NULL;
    EXECUTE format('ALTER TABLE public.%I DETACH PARTITION public.%I', tbl, part);
    EXECUTE format('ALTER TABLE public.%I SET SCHEMA cold', part);
    EXECUTE format('ALTER TABLE cold.%I ATTACH PARTITION cold.%I'
                   ' FOR VALUES FROM (%s) TO (%s)', tbl, part, lo, hi);
  END LOOP;
  RETURN true;
END $$;
)sql";

// The seq of an open is computed by the commit statements from the guarded
// envelope row (see pg_store's run_commit), which makes an envelope's seqs
// consecutive without a unique index; that index cost ~0.65 µs of every
// open's insert, a sixth of a hot envelope's commit. (The cold twin got its
// copy of the constraint under a generated name.)
constexpr const char* v4_seqs_from_the_commit = R"sql(
ALTER TABLE public.opens DROP CONSTRAINT opens_seq_key;
ALTER TABLE cold.opens DROP CONSTRAINT opens_envelope_id_seq_key;
)sql";

// The relay's queue is a row per commit, not a status per open (see
// pg_store's commit statements): a commit writes, beside its opens, one
// credits_owed row per 64 of them listing (envelope, user), and the relay
// deletes the rows it credited in its own transaction. Marking every open
// TRANSFERRED was a new version of the open row with two index entries
// (not a HOT update: opens_pending named the status), and locking it first
// wrote the row once more: ~12 of the ~45 µs of PostgreSQL per credit, and
// a dead open per credit for vacuum. What is owed is now what the queue
// lists; the opens are written once and never updated. Opens of archived
// days re-enqueued by a repair still go through outbox 'open' rows.
constexpr const char* v5_credits_owed = R"sql(
CREATE TABLE credits_owed (
  id BIGSERIAL PRIMARY KEY,
  envelope_ids BIGINT[] NOT NULL,
  user_ids TEXT[] NOT NULL,
  queued_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  CONSTRAINT credits_owed_pairs CHECK (
    cardinality(envelope_ids) = cardinality(user_ids)
    AND cardinality(envelope_ids) BETWEEN 1 AND 64)
);

-- The opens owed so far, in commit order, 64 to a row.
INSERT INTO credits_owed (envelope_ids, user_ids, queued_at)
SELECT array_agg(envelope_id ORDER BY n), array_agg(user_id ORDER BY n),
       min(opened_at)
FROM (SELECT envelope_id, user_id, opened_at,
             row_number() OVER (ORDER BY opened_at, envelope_id, user_id) AS n
      FROM public.opens WHERE status = 1) s
GROUP BY (n - 1) / 64 ORDER BY (n - 1) / 64;

-- What the relay still owes: undelivered outbox rows and queued opens.
CREATE OR REPLACE VIEW relay_backlog AS
  SELECT kind, envelope_id, user_id, created_at FROM outbox
  WHERE delivered_at IS NULL
  UNION ALL
  SELECT 'open', x.envelope_id, x.user_id, c.queued_at FROM credits_owed c,
    unnest(c.envelope_ids, c.user_ids) AS x(envelope_id, user_id);

-- The status of an open is gone (a cold open re-enqueued by a repair has
-- its outbox row); opens_all lists the columns it was created with.
DROP VIEW opens_all;
DROP INDEX public.opens_pending;
DROP INDEX cold.opens_pending;
ALTER TABLE public.opens DROP COLUMN status;
ALTER TABLE cold.opens DROP COLUMN status;
CREATE VIEW opens_all AS
  SELECT * FROM public.opens UNION ALL SELECT * FROM cold.opens;

-- One relay batch in one transaction (see pg_store::relay_batch): first the
-- outbox rows, then, up to p_limit opens in all, the oldest rows of
-- credits_owed (the first of them cut when it holds more than is left of
-- p_limit: the rest stays queued). Rows other relays hold are skipped;
-- accounts are locked in id order like hb_post. Every step is index probes
-- with run-time partition pruning (see v3 for the planner settings).
CREATE OR REPLACE FUNCTION hb_relay_batch(p_limit INT, OUT taken INT,
                                          OUT credited INT, OUT duplicates INT,
                                          OUT credited_fen BIGINT)
LANGUAGE plpgsql SET enable_hashjoin = off SET enable_mergejoin = off
  SET enable_sort = off SET enable_bitmapscan = off SET jit = off AS $$
DECLARE
  items hb_relay_item[];   -- the opens to credit
  misses hb_relay_item[];  -- outbox 'open' rows whose envelope is not hot
  q RECORD;
  n INT;
  done_ids BIGINT[] := '{}';  -- credits_owed rows taken whole
  es BIGINT[] := '{}';        -- the queued opens taken
  us TEXT[] := '{}';
BEGIN
  -- Outbox rows: take and mark them; gather what the credits need.
  WITH t AS (
    SELECT id FROM outbox WHERE delivered_at IS NULL
    ORDER BY id LIMIT p_limit FOR UPDATE SKIP LOCKED),
  d AS (
    UPDATE outbox x SET delivered_at = now() FROM t WHERE x.id = t.id
    RETURNING x.kind, x.envelope_id, x.user_id, x.amount_fen)
  SELECT count(*)::int,
         COALESCE(array_agg(ROW(d.envelope_id, d.user_id, d.amount_fen,
                                hb_ms(o.opened_at), e.group_id, e.sender,
                                false)::hb_relay_item)
                  FILTER (WHERE o.user_id IS NOT NULL), '{}'),
         COALESCE(array_agg(ROW(d.envelope_id, d.user_id, d.amount_fen,
                                NULL, NULL, NULL, true)::hb_relay_item)
                  FILTER (WHERE d.kind = 'open' AND e.id IS NULL), '{}')
  INTO taken, items, misses
  FROM d
  LEFT JOIN envelopes e ON d.kind = 'open' AND e.id = d.envelope_id
  LEFT JOIN opens o ON d.kind = 'open' AND o.envelope_id = d.envelope_id
                   AND o.user_id = d.user_id;

  -- Opens of archived days (re-enqueued by a repair) come from cold. An
  -- 'open' row without an open (never written so) credits nothing.
  IF cardinality(misses) > 0 THEN
    SELECT items || COALESCE(array_agg(ROW(m.envelope_id, m.user_id,
                                           m.amount_fen, hb_ms(o.opened_at),
                                           e.group_id, e.sender,
                                           true)::hb_relay_item), '{}')
    INTO items
    FROM unnest(misses) AS m
    JOIN cold.envelopes e ON e.id = m.envelope_id
    JOIN cold.opens o ON o.envelope_id = m.envelope_id AND o.user_id = m.user_id;
  END IF;

  -- Queued opens, oldest rows first; the rows stay locked until the batch
  -- commits, so that a second relay skips them.
  IF taken < p_limit THEN
    FOR q IN SELECT c.id, c.envelope_ids, c.user_ids FROM credits_owed c
             ORDER BY c.id LIMIT p_limit FOR UPDATE SKIP LOCKED LOOP
      n := cardinality(q.envelope_ids);
      IF taken + n <= p_limit THEN
        done_ids := done_ids || q.id;
        es := es || q.envelope_ids;
        us := us || q.user_ids;
        taken := taken + n;
      ELSE
        n := p_limit - taken;
        es := es || q.envelope_ids[1:n];
        us := us || q.user_ids[1:n];
        taken := p_limit;
        UPDATE credits_owed SET envelope_ids = envelope_ids[n + 1:],
                                user_ids = user_ids[n + 1:]
        WHERE id = q.id;
      END IF;
      EXIT WHEN taken >= p_limit;
    END LOOP;
    DELETE FROM credits_owed WHERE id = ANY(done_ids);
    -- A queued open that is not there (never written so) credits nothing.
    SELECT items || COALESCE(array_agg(ROW(o.envelope_id, o.user_id,
                                           o.amount_fen, hb_ms(o.opened_at),
                                           e.group_id, e.sender,
                                           false)::hb_relay_item), '{}')
    INTO items
    FROM unnest(es, us) AS x(envelope_id, user_id)
    JOIN opens o ON o.envelope_id = x.envelope_id AND o.user_id = x.user_id
    JOIN envelopes e ON e.id = x.envelope_id;
  END IF;

  -- Credits, in a stable order; a key that exists already is a repeated
  -- delivery.
  WITH ins AS (
    INSERT INTO ledger_entries (idempotency_key, kind, debit_account,
                                credit_account, amount_fen, envelope_id, user_id)
    SELECT 'credit:' || x.envelope_id || ':' || x.user_id, 'credit',
           hb_escrow_of(x.envelope_id), hb_wallet(x.user_id), x.amount_fen,
           x.envelope_id, x.user_id
    FROM unnest(items) AS x ORDER BY x.envelope_id, x.user_id
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING debit_account, credit_account, amount_fen),
  moves AS (
    SELECT debit_account AS id, -amount_fen AS delta FROM ins
    UNION ALL
    SELECT credit_account, amount_fen FROM ins),
  balances AS (
    -- Only wallets gain and only escrow loses here, so the upsert's proposed
    -- rows never break accounts_wallet_not_negative.
    INSERT INTO accounts AS a (id, kind, balance_fen)
    SELECT id, hb_account_kind(id), sum(delta) FROM moves GROUP BY id ORDER BY id
    ON CONFLICT (id) DO UPDATE SET balance_fen = a.balance_fen + excluded.balance_fen)
  SELECT count(*)::int, COALESCE(sum(amount_fen), 0)
  INTO credited, credited_fen FROM ins;
  duplicates := cardinality(items) - credited;

  INSERT INTO user_records (user_id, kind, envelope_id, amount_fen, at_ms,
                            group_id, counterpart)
  SELECT x.user_id, 2, x.envelope_id, x.amount_fen, x.at_ms, x.group_id, x.sender
  FROM unnest(items) AS x WHERE NOT x.archived
  ON CONFLICT DO NOTHING;

  -- A repaired open of an archived day has its record in the cold tables.
  IF cardinality(misses) > 0 THEN
    INSERT INTO cold.user_records (user_id, kind, envelope_id, amount_fen,
                                   at_ms, group_id, counterpart)
    SELECT x.user_id, 2, x.envelope_id, x.amount_fen, x.at_ms, x.group_id,
           x.sender
    FROM unnest(items) AS x WHERE x.archived
    ON CONFLICT DO NOTHING;
  END IF;
END $$;

-- Moves a day into cold storage (see v1); a day with opens still queued
-- for the relay stays hot.
CREATE OR REPLACE FUNCTION hb_detach_day(p_day INT) RETURNS BOOLEAN
LANGUAGE plpgsql AS $$
DECLARE
  lo BIGINT := p_day::bigint * 100000000000;
  hi BIGINT := (p_day + 1)::bigint * 100000000000;
  tbl TEXT;
  part TEXT;
BEGIN
  IF to_regclass('public.envelopes_p' || p_day) IS NULL THEN
    RETURN false;
  END IF;
  IF EXISTS (SELECT 1 FROM envelopes WHERE id >= lo AND id < hi AND status IN (2, 4))
     OR EXISTS (SELECT 1 FROM credits_owed c, unnest(c.envelope_ids) AS e
                WHERE e >= lo AND e < hi) THEN
    RETURN false;
  END IF;
  PERFORM set_config('lock_timeout', '2s', true);
  PERFORM pg_advisory_xact_lock(hb_partition_lock_key());
  LOCK TABLE ONLY public.envelopes, public.opens, public.user_records
    IN ACCESS EXCLUSIVE MODE;
  -- Nobody writes opens now (credits_owed is written with them); cheap
  -- re-check of what may have changed meanwhile (a payment, a repair).
  IF EXISTS (SELECT 1 FROM envelopes WHERE id >= lo AND id < hi AND status = 2)
     OR EXISTS (SELECT 1 FROM credits_owed c, unnest(c.envelope_ids) AS e
                WHERE e >= lo AND e < hi)
     OR EXISTS (SELECT 1 FROM outbox WHERE delivered_at IS NULL AND kind = 'open'
                AND envelope_id >= lo AND envelope_id < hi) THEN
    RETURN false;
  END IF;
  FOREACH tbl IN ARRAY ARRAY['envelopes', 'opens', 'user_records'] LOOP
    part := tbl || '_p' || p_day;
    CONTINUE WHEN to_regclass('public.' || part) IS NULL;
    EXECUTE format('ALTER TABLE public.%I DETACH PARTITION public.%I', tbl, part);
    EXECUTE format('ALTER TABLE public.%I SET SCHEMA cold', part);
    EXECUTE format('ALTER TABLE cold.%I ATTACH PARTITION cold.%I'
                   ' FOR VALUES FROM (%s) TO (%s)', tbl, part, lo, hi);
  END LOOP;
  RETURN true;
END $$;
)sql";

// The cluster (see DESIGN.md, "Cluster"): each SET has a database of its
// own, which says whose it is (cluster_identity: one row, the SET's name;
// a node of another SET is refused), who serves it (node_leases: one row
// per node name, its current incarnation and a lease that expires on this
// database's clock) and who owns each of its segments (segment_owners: the
// owner's name and incarnation and owner_epoch, +1 on every compare-and-set
// take). An envelope remembers the owner_epoch it was created or last
// activated under; opens, payments and refunds apply only while the
// segment's owner_epoch is still that one (0: written without a cluster,
// never checked), so a deposed owner's late write is refused even for an
// envelope its successor has not activated. The column is added to both
// partitioned parents (every day partition, hot or cold, gets it; new day
// partitions copy it with LIKE), and envelopes_all, whose column list was
// fixed when it was created, is made again to show it.
constexpr const char* v6_cluster = R"sql(
CREATE TABLE cluster_identity (
  only_row BOOLEAN PRIMARY KEY DEFAULT true
    CONSTRAINT cluster_identity_one_row CHECK (only_row),
  set_name TEXT NOT NULL CONSTRAINT cluster_identity_set_named CHECK (set_name <> ''),
  created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE node_leases (
  node TEXT PRIMARY KEY CONSTRAINT node_leases_node_named CHECK (node <> ''),
  incarnation BIGINT NOT NULL CONSTRAINT node_leases_incarnation_positive
    CHECK (incarnation > 0),
  zone TEXT NOT NULL,
  set_name TEXT NOT NULL,
  peer_host TEXT NOT NULL,
  peer_port INT NOT NULL,
  gateway_host TEXT NOT NULL,
  gateway_port INT NOT NULL,
  lease_expires_at TIMESTAMPTZ NOT NULL,
  -- When this incarnation joined.
  joined_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- owner NULL: nobody has taken the segment yet (owner_epoch 0).
CREATE TABLE segment_owners (
  segment INT PRIMARY KEY
    CONSTRAINT segment_owners_segment_range CHECK (segment >= 0 AND segment < 1000),
  owner TEXT,
  owner_incarnation BIGINT NOT NULL DEFAULT 0,
  owner_epoch BIGINT NOT NULL DEFAULT 0
    CONSTRAINT segment_owners_epoch_not_negative CHECK (owner_epoch >= 0),
  taken_at TIMESTAMPTZ
);

-- A constant default: no table rewrite, every existing row reads 0.
ALTER TABLE public.envelopes ADD COLUMN owner_epoch BIGINT NOT NULL DEFAULT 0;
ALTER TABLE cold.envelopes ADD COLUMN owner_epoch BIGINT NOT NULL DEFAULT 0;

DROP VIEW envelopes_all;
CREATE VIEW envelopes_all AS
  SELECT *, false AS archived FROM public.envelopes
  UNION ALL
  SELECT *, true AS archived FROM cold.envelopes;
)sql";

// Planned moves (docs/cluster.md, "Handoff, drain and rebalance"): a node
// marked draining is nobody's preferred owner and hands its segments over;
// joined_at now says since when a node serves (its join, or the end of its
// last drain), which rebalancing waits on.
constexpr const char* v7_draining = R"sql(
ALTER TABLE node_leases ADD COLUMN draining BOOLEAN NOT NULL DEFAULT false;
COMMENT ON COLUMN node_leases.joined_at IS
  'In service since: the join of this incarnation, or the end of its last drain';
)sql";

const std::vector<migration> migrations = {
  {1, "initial_schema", v1_initial_schema},
  {2, "segment_states", v2_segment_states},
  {3, "opens_as_outbox", v3_opens_as_outbox},
  {4, "seqs_from_the_commit", v4_seqs_from_the_commit},
  {5, "credits_owed", v5_credits_owed},
  {6, "cluster", v6_cluster},
  {7, "draining", v7_draining},
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
