-- The statements hongbao-bench prepares on every baseline connection, one
-- per "-- name:" block ($n are the parameters). Read together with
-- postgres.sql.

-- name: create
-- Idempotent per (sender, key): a repeat returns the existing envelope.
WITH ins AS (
  INSERT INTO bench_envelopes (sender, group_id, greeting, idempotency_key,
                               kind, status, total_fen, count, remaining_fen,
                               remaining_count)
  VALUES ($1, $2, $3, $4, $5, 1, $6, $7, $6, $7)
  ON CONFLICT (sender, idempotency_key) DO NOTHING
  RETURNING id)
SELECT id FROM ins
UNION ALL
SELECT id FROM bench_envelopes WHERE sender = $1 AND idempotency_key = $4
LIMIT 1

-- name: pay
-- 1: paid now or before with this txn; 2: paid with another txn (mismatch);
-- no row: no such envelope.
WITH u AS (
  UPDATE bench_envelopes SET status = 2, payment_txn = $2, paid_at = now()
  WHERE id = $1 AND status = 1
  RETURNING id)
SELECT 1 FROM u
UNION ALL
SELECT CASE WHEN payment_txn = $2 THEN 1 ELSE 2 END FROM bench_envelopes
WHERE id = $1 AND status <> 1
LIMIT 1

-- name: grab
-- The cheap check: status, shares left, and this user's share if any.
SELECT e.status, e.remaining_count, o.amount_fen
FROM bench_envelopes e
LEFT JOIN bench_opens o ON o.envelope_id = e.id AND o.user_id = $2
WHERE e.id = $1

-- name: begin
BEGIN

-- name: lock
-- pg-lock, step 1: lock the envelope row until COMMIT.
SELECT kind, status, total_fen, count, remaining_fen, remaining_count
FROM bench_envelopes WHERE id = $1 FOR UPDATE

-- name: mine
-- pg-lock, step 1 (after the lock, so it sees every committed open).
SELECT amount_fen, seq FROM bench_opens WHERE envelope_id = $1 AND user_id = $2

-- name: insert_open
-- pg-lock, step 2: the share the client computed.
INSERT INTO bench_opens (envelope_id, user_id, amount_fen, seq)
VALUES ($1, $2, $3, $4)

-- name: update_envelope
UPDATE bench_envelopes SET remaining_fen = $2, remaining_count = $3, status = $4
WHERE id = $1

-- name: commit
COMMIT

-- name: rollback
ROLLBACK

-- name: open_update
-- pg-update: one statement. The conditional UPDATE takes the share (computed
-- in SQL from the row it locked: under READ COMMITTED a waiting UPDATE
-- re-evaluates its WHERE and SET on the newest row version), the insert
-- records it, and the answer says which case happened:
-- 1 a new share (amount, seq); 2 this user's earlier share (amount, seq);
-- 3 no share: (status, remaining_count) tell exhausted or not paid.
WITH u AS (
  UPDATE bench_envelopes e
     SET (remaining_fen, remaining_count, status, last_share) =
         (SELECT e.remaining_fen - s.v, e.remaining_count - 1,
                 CASE WHEN e.remaining_count = 1 THEN 3 ELSE 2 END, s.v
            FROM (SELECT bench_share(e.kind, e.total_fen, e.count,
                                     e.remaining_fen, e.remaining_count) AS v) s)
   WHERE e.id = $1 AND e.status = 2 AND e.remaining_count > 0
     AND NOT EXISTS (SELECT 1 FROM bench_opens o
                     WHERE o.envelope_id = $1 AND o.user_id = $2)
  RETURNING e.id, e.last_share, e.count - e.remaining_count AS seq),
ins AS (
  INSERT INTO bench_opens (envelope_id, user_id, amount_fen, seq)
  SELECT id, $2, last_share, seq FROM u
  RETURNING amount_fen, seq)
SELECT 1 AS kind, amount_fen, seq FROM ins
UNION ALL
SELECT 2, amount_fen, seq FROM bench_opens WHERE envelope_id = $1 AND user_id = $2
UNION ALL
SELECT 3, status, remaining_count FROM bench_envelopes WHERE id = $1
ORDER BY 1
LIMIT 1
