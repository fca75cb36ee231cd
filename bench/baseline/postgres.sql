-- The PostgreSQL baselines of hongbao-bench: red envelopes the way they are
-- usually built on a relational database. hongbao-bench applies this file
-- (idempotently) to the database it is given with --db-url before a run of
-- the targets pg-lock and pg-update; both share these tables.
--
-- Same semantics as hongbao (docs/protocol.md): a create is idempotent per
-- (sender, idempotency key); a pay moves CREATED -> PAID once per payment
-- txn; a user opens an envelope at most once (the primary key of
-- bench_opens), a repeated open returns the same share; random shares follow
-- the double-mean rule, uniform in [1, floor(2 * remaining / remaining_count)
-- - 1], the last share takes the rest; equal shares are total / count with
-- the remainder spread over the first shares. Every answer is sent after
-- COMMIT returned, with synchronous_commit = on: as durable as hongbao.

CREATE TABLE IF NOT EXISTS bench_envelopes (
  id BIGSERIAL PRIMARY KEY,
  sender TEXT NOT NULL,
  group_id TEXT NOT NULL,
  greeting TEXT NOT NULL DEFAULT '',
  idempotency_key TEXT NOT NULL,
  kind SMALLINT NOT NULL CHECK (kind IN (1, 2)),
  -- 1 CREATED, 2 PAID, 3 EXHAUSTED (as in hongbao).
  status SMALLINT NOT NULL CHECK (status BETWEEN 1 AND 3),
  total_fen BIGINT NOT NULL CHECK (total_fen > 0),
  count INT NOT NULL CHECK (count > 0),
  remaining_fen BIGINT NOT NULL CHECK (remaining_fen >= 0),
  remaining_count INT NOT NULL CHECK (remaining_count >= 0),
  -- The share the last conditional UPDATE took (pg-update only): lets one
  -- statement both decrement the envelope and insert the open.
  last_share BIGINT NOT NULL DEFAULT 0,
  payment_txn TEXT UNIQUE,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  paid_at TIMESTAMPTZ,
  UNIQUE (sender, idempotency_key),
  CHECK (remaining_fen <= total_fen AND remaining_count <= count),
  CHECK (remaining_count > 0 OR remaining_fen = 0),
  CHECK (remaining_fen >= remaining_count)
);

CREATE TABLE IF NOT EXISTS bench_opens (
  envelope_id BIGINT NOT NULL REFERENCES bench_envelopes (id),
  user_id TEXT NOT NULL,
  amount_fen BIGINT NOT NULL CHECK (amount_fen >= 1),
  seq INT NOT NULL CHECK (seq >= 1),
  opened_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (envelope_id, user_id),
  UNIQUE (envelope_id, seq)
);

-- The next share of an envelope (pg-update computes it in SQL; pg-lock
-- computes the same thing in the client). random() is uniform in [0, 1).
CREATE OR REPLACE FUNCTION bench_share(p_kind SMALLINT, p_total BIGINT,
                                       p_count INT, p_remaining BIGINT,
                                       p_left INT)
RETURNS BIGINT LANGUAGE sql VOLATILE AS $$
  SELECT CASE
    WHEN p_kind = 2 THEN p_total / p_count
      + CASE WHEN p_count - p_left < p_total % p_count THEN 1 ELSE 0 END
    WHEN p_left = 1 THEN p_remaining
    ELSE 1 + floor(random() * ((2 * p_remaining) / p_left - 1))::BIGINT
  END
$$;
