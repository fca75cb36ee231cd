#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "domain/cluster.hpp"
#include "domain/envelope.hpp"
#include "domain/errc.hpp"
#include "domain/ledger.hpp"
#include "domain/limits.hpp"
#include "domain/segment.hpp"

struct pg_conn;

namespace hb::persistence {

/// The result of an idempotent create: the stored envelope, and whether this
/// call inserted it (false: the idempotency key was seen before).
struct create_result {
  envelope env;
  bool created = false;
};

/// What a store sets on each of its connections ([database] in the node's
/// config, whose defaults live in config/services.hpp). 0 leaves a setting
/// alone: libpq's or the server's default, or what the url says.
///
/// keepalives_* and tcp_user_timeout_ms are libpq connection parameters;
/// the url's own value of any of them wins. The server settings
/// (statement_timeout, lock_timeout, idle_in_transaction_session_timeout,
/// client_connection_check_interval) travel in libpq's `options` as `-c`
/// switches placed BEFORE the url's own `options` (or PGOPTIONS when the
/// url has none), so that a `-c` of the operator's for the same setting
/// wins (the server applies them in order).
struct connection_options {
  uint32_t keepalives_idle_s = 0;      ///< idle time before the first probe
  uint32_t keepalives_interval_s = 0;  ///< between unanswered probes
  uint32_t keepalives_count = 0;       ///< unanswered probes before giving up
  uint32_t tcp_user_timeout_ms = 0;    ///< sent data unacknowledged this long
  uint32_t statement_timeout_ms = 0;
  uint32_t lock_timeout_ms = 0;
  uint32_t idle_in_transaction_session_timeout_ms = 0;
  /// The server checks this often whether the client is still there while
  /// a query runs (PostgreSQL 14+), so that a statement whose caller gave
  /// up (call_timeout_ms) stops and releases its locks.
  uint32_t client_connection_check_interval_ms = 0;
  /// The client side deadline of every round trip to the server, which
  /// needs nothing from the server (a stopped backend or a black-holed
  /// host enforces no server setting): when it passes, the connection is
  /// dropped and the call fails with errc::unavailable; the next call
  /// reconnects. 0: wait as long as the connection lives.
  uint32_t call_timeout_ms = 0;
};

/// The server settings of `opts` as `-c` switches for libpq's `options`,
/// followed by `user_options` (the url's own, which thereby win).
std::string server_options(const connection_options& opts,
                           const std::string& user_options);

/// One PostgreSQL connection and every query the service runs. Blocking:
/// an instance belongs to one thread (a detached store worker actor), never
/// to a CAF scheduler thread.
///
/// Error mapping: connection loss or a server that is down -> errc::unavailable
/// (the next call reconnects); a fencing epoch that is no longer current ->
/// errc::stale_epoch with nothing changed; in a cluster (set_identity), a
/// write by a node that does not own the segment, or whose envelope was
/// activated under an owner_epoch the segment has moved on from ->
/// errc::not_owner with nothing changed; anything unexpected -> errc::internal.
///
/// In detail, every call first reconnects once (PQreset) if the connection
/// is broken. errc::unavailable: no connection, no answer within the call
/// deadline (connection_options::call_timeout_ms), connection lost (SQLSTATE
/// class 08, 57P01-57P03), the server short of resources (classes 53, 58),
/// a statement timeout (57014), a serialization failure or deadlock (40001,
/// 40P01), a lock timeout of partition maintenance (55P03). Nothing is
/// half-written, but after a lost connection a write may or may not have
/// committed: retrying the same call is safe (create, confirm_payment,
/// commit_opens, refund, relay_batch and deposit recognise their own
/// earlier success).
///
/// Storage: envelopes, opens and user records are partitioned by the day of
/// the envelope id; days older than the hot window move to the schema
/// `cold` (detach_cold). Writes go to hot days only; reads that may concern
/// old data (load, activate, history, reconcile, a create retry) read both.
/// Text containing a NUL byte -> errc::invalid_argument. Constraint
/// violations that mean a caller bug -> errc::internal with the server's
/// primary message (never parameter values). Nothing is logged here.
class pg_store {
public:
  // -- Connection and schema (pg_connection.cpp) ---------------------------

  /// Opens a connection (connect_timeout 5 s unless `url` sets one; client
  /// encoding UTF8). Does not apply migrations. A malformed `url` ->
  /// errc::invalid_argument; a server that cannot be reached or refuses the
  /// login -> errc::unavailable.
  static outcome<std::unique_ptr<pg_store>> connect(const std::string& url);

  /// connect() with the keepalives, timeouts and call deadline of `opts`.
  static outcome<std::unique_ptr<pg_store>> connect(
    const std::string& url, const connection_options& opts);

  ~pg_store();
  pg_store(const pg_store&) = delete;
  pg_store& operator=(const pg_store&) = delete;

  /// Applies every migration not yet recorded in schema_migrations, each in
  /// its own transaction, serialised across processes by an advisory lock.
  /// Returns how many were applied now.
  outcome<int> migrate();

  /// The highest applied migration version (0 on an empty database).
  outcome<int> schema_version();

  /// Runs trusted SQL, possibly several statements, without parameters and
  /// discards any rows (tests and tools). Never pass user data in `sql`.
  outcome<done> exec(const std::string& sql);

  /// Whether the connection is currently usable.
  bool connected() const;

  /// Changes the call deadline (connection_options::call_timeout_ms) of the
  /// calls from now on; 0: none.
  void set_call_timeout(uint32_t timeout_ms);

  // -- An envelope's row (pg_envelopes.cpp) --------------------------------

  /// Inserts a new envelope (status CREATED), or, when (sender,
  /// idempotency_key) exists already, returns the stored one with
  /// created = false. A reused key with a different total, count or kind is
  /// errc::conflict. Only id, sender, group, greeting, idempotency_key, kind,
  /// total_fen, count and created_at_ms (0: now) are read from `env`; the
  /// segment is id % 1000 and the rest starts as CREATED, remaining =
  /// total/count, epoch 0. A retry with another id returns the stored id.
  /// The first envelope of a day without partitions creates them (see
  /// ensure_partitions) and retries once; a day already moved to cold
  /// storage takes no new envelopes -> errc::internal.
  /// In a cluster the insert happens only while this node owns the id's
  /// segment at its incarnation (same statement), and the envelope stores
  /// the segment's owner_epoch; otherwise nothing is written (not the key
  /// either) -> errc::not_owner, before any idempotency answer.
  outcome<create_result> create_envelope(const envelope& env);

  /// Many creates in one statement, for a burst of them (the create
  /// batcher): each envelope whose (sender, idempotency key) is new is
  /// inserted as create_envelope inserts it; returns those, as stored. An
  /// envelope whose key was seen before (or twice in `envs`) is left out, and
  /// so is one with an id <= 0: the caller creates it alone, which finds the
  /// stored one or explains. Any failure changes nothing, e.g. the first
  /// envelope of a day whose partitions nobody made (alone, that is done).
  /// In a cluster, an envelope of a segment this node does not own is left
  /// out too (alone: errc::not_owner).
  outcome<std::vector<envelope>> create_envelopes(
    const std::vector<envelope>& envs);

  /// Activation: bumps the envelope's fencing epoch and loads it with all its
  /// opens (ordered by seq), in one transaction. errc::not_found if absent.
  /// Waits for an in-flight write of the previous owner and includes it.
  /// An envelope in cold storage is returned with archived = true and its
  /// epoch untouched: it is read-only (every write to it is refused).
  /// In a cluster the bump happens only while this node owns the segment at
  /// its incarnation (same statement) and stores the segment's owner_epoch
  /// in the envelope; a node that does not own it -> errc::not_owner
  /// (checked before not_found and archived).
  outcome<envelope_snapshot> activate(int64_t envelope_id);

  /// Activation of many envelopes in one transaction (a burst of grabs on
  /// cold envelopes after a restart or a failover): bumps the epochs of
  /// those of `ids` that are hot, locking them in id order, then reads them
  /// with their opens, each exactly as activate would. Returns their
  /// snapshots in id order; an id it did not bump (unknown or archived) is
  /// left out, and the caller activates it alone, which says why. The ids
  /// must be distinct: one bump serves one new owner. One plan per
  /// statement and one commit for the lot, instead of four round trips and
  /// a commit each. In a cluster, only the envelopes of segments this node
  /// owns are bumped (the others are left out), as activate does.
  outcome<std::vector<envelope_snapshot>> activate_many(
    const std::vector<int64_t>& ids);

  /// Reads an envelope and its opens, hot or cold (archived tells), without
  /// touching the epoch.
  outcome<envelope_snapshot> load(int64_t envelope_id);

  // -- Group commit of opens (pg_commits.cpp) ------------------------------

  /// One group-commit transaction: checks the epoch and updates remaining
  /// amount/count/status, inserts every open and queues them for the relay
  /// (a credits_owed row per 64 opens, no outbox row). A stale epoch or
  /// any failure changes nothing.
  /// One statement, one round trip. It applies only if the envelope is PAID
  /// under `batch.epoch` and its stored remaining amount/count equal the
  /// batch's remaining plus the batch's shares (the batch continues exactly
  /// the state the actor holds). Outcomes: done; done again for a replay of
  /// a batch that already committed; errc::stale_epoch if the epoch is not
  /// current or the envelope is no longer PAID (reload via activate);
  /// errc::not_found; errc::internal for a batch that does not continue the
  /// stored state, a user or seq twice in the batch, a user who opened
  /// before, a status other than PAID/EXHAUSTED, or a CHECK violation
  /// (e.g. remaining below 0, EXHAUSTED with shares left, PAID with none).
  /// In a cluster the update also requires that the segment is still at the
  /// owner_epoch the envelope was created or activated under (one probe of
  /// segment_owners' primary key; an envelope with owner_epoch 0 is not
  /// checked); otherwise errc::not_owner (after the replay check, before
  /// stale_epoch), even when nobody has activated the envelope since.
  /// The database's clock decides expiry: an envelope whose expires_at is
  /// at or before now() takes no opens (errc::expired, after stale_epoch;
  /// nothing written), whatever the node's clock said when it planned them.
  outcome<done> commit_opens(const open_batch& batch);

  /// Group commit across envelopes: the batches of many envelopes in one
  /// transaction (one WAL flush for all of them). Each batch keeps its own
  /// epoch guard and outcome: the result has one failure per batch
  /// (errc::none for committed). If the transaction itself fails, every
  /// batch fails with that error (outcome unknown: errc::unavailable); a
  /// statement error in one batch makes the others retry one by one. In a
  /// cluster each batch is fenced as commit_opens fences it.
  outcome<std::vector<failure>> commit_many(const std::vector<open_batch>& batches);

  /// Prepares the commit statements of day `day` (yyyymmdd) on this
  /// connection and runs each once on no envelope, so that the first commit
  /// after a (re)connect does not pay for the statement's preparation, its
  /// first plan and the backend's first look at the day's partitions and
  /// their indexes (a few to tens of ms on a busy machine, in the path of a
  /// hot envelope's serial commits). Writes nothing. False when the day has
  /// no partitions yet or the database refused (the first commit then
  /// prepares as before).
  bool warm_up(int32_t day);

  // -- Payment and refund (pg_payments.cpp) --------------------------------

  /// CREATED -> PAID guarded by the epoch, in one transaction: records the
  /// payment txn (payments row), paid and expiry times, posts 'pay:<id>'
  /// moving the total from the external account (or, with from_wallet, the
  /// sender's wallet) into the segment's escrow, writes the sender's 'sent'
  /// record and an outbox row of kind 'paid' (the group notification).
  /// Nothing changes unless the envelope is CREATED under `p.epoch`.
  /// Already paid with the same txn -> done (idempotent). errc::stale_epoch
  /// if the epoch is not current (checked first), errc::payment_mismatch if
  /// paid with another txn or the txn paid another envelope, errc::not_found,
  /// errc::invalid_argument for an empty txn, errc::insufficient_funds
  /// ("wallet of U holds X fen, needs Y") when the wallet holds less than
  /// the total (nothing changed: the envelope stays CREATED and may still be
  /// paid), errc::expired for an unpaid envelope already in cold storage.
  /// paid_at_ms 0 means now; expires_at_ms 0 means never. In a cluster,
  /// fenced as commit_opens is: errc::not_owner after the repeat check.
  outcome<done> confirm_payment(const payment& p);

  /// Many payments in one transaction, for a burst of them (the pay
  /// batcher): every external payment (not from_wallet, txn not empty) whose
  /// envelope is CREATED under its epoch is confirmed as confirm_payment
  /// does, with one update of each account it moves (locked in id order)
  /// and one commit for the lot; returns the ids it confirmed. Any other
  /// item, and a repeated envelope id after its first, is left unchanged:
  /// the caller confirms it alone, which answers or explains it. Any failure
  /// (e.g. a txn already used for another envelope) changes nothing. In a
  /// cluster, a payment fenced off as confirm_payment's is left unchanged.
  outcome<std::vector<int64_t>> confirm_payments(
    const std::vector<payment>& ps);

  /// PAID -> REFUNDED, guarded by the epoch, in one transaction: the
  /// remainder moves to refunded_fen (remaining_fen becomes 0) and a ledger
  /// entry 'refund:<id>' moves it from the segment's escrow to the sender's
  /// wallet. Returns the refunded amount. errc::stale_epoch when the epoch
  /// is not current or the envelope is not PAID (nothing changed), checked
  /// in that order; errc::not_found. A retry under the same (current) epoch
  /// of a refund that committed returns the refunded amount again and posts
  /// nothing. The database's clock decides whether the envelope is due: a
  /// PAID envelope whose expires_at is after now() (or that has none) is
  /// not refunded (errc::not_expired, after stale_epoch, saying when it
  /// expires by that clock; nothing changed), whatever the caller's clock
  /// says. In a cluster, fenced as commit_opens is: errc::not_owner after
  /// the retry check.
  outcome<int64_t> refund(int64_t envelope_id, int64_t epoch);

  // -- Relay, balances and deposits (pg_ledger.cpp) ------------------------

  /// One relay batch, one transaction: takes up to `limit` items (FOR
  /// UPDATE SKIP LOCKED): undelivered outbox rows first (oldest first), then
  /// the opens queued in credits_owed (oldest rows first). For an open (or
  /// an outbox 'open' row, written only when a repair re-enqueues an
  /// archived open) it posts 'credit:<envelope>:<user>' from escrow to the
  /// user's wallet (a second delivery of the same open finds the key and
  /// posts nothing) and writes the user's received record; the opens leave
  /// the queue and outbox rows are marked delivered in the same transaction
  /// ('paid' rows need nothing else: the sent record was written with the
  /// payment). Concurrent batches (other nodes) take
  /// disjoint items and never deadlock with each other or with payments
  /// (accounts are locked in id order everywhere). rows < limit means the
  /// backlog is drained for now. limit < 1 -> errc::invalid_argument.
  outcome<relay_batch_result> relay_batch(int32_t limit);

  /// What the relay still owes (view relay_backlog: undelivered outbox rows
  /// and the opens in credits_owed), and the age of the oldest in ms.
  struct outbox_lag_info {
    int64_t pending = 0;
    int64_t oldest_age_ms = 0;
  };
  outcome<outbox_lag_info> outbox_lag();

  /// A wallet's balance (0 for a user without an account).
  outcome<balance_info> balance(const std::string& user);

  /// Credits a wallet from the external account, idempotent on `key`
  /// (tests, demos and operator top-ups). The key used before with another
  /// user or amount -> errc::conflict; an empty user or key, or an amount
  /// below 1 fen -> errc::invalid_argument.
  outcome<done> deposit(const std::string& user, int64_t amount_fen,
                        const std::string& key);

  // -- History (pg_history.cpp) --------------------------------------------

  /// A page of a user's sent or received history, newest first by (at_ms,
  /// envelope id), hot and cold. The cursor is opaque to callers (it is
  /// "<at_ms>:<envelope_id>" of the page's last item). errc::invalid_argument
  /// for a malformed cursor or a limit outside 1..1000.
  outcome<history_page> history(const history_query& q);

  // -- Reconciliation (pg_reconcile.cpp) -----------------------------------

  /// Reconciliation (对账) over envelopes created since `since_ms` (0: all)
  /// plus the global ledger checks, all read in one consistent snapshot.
  /// Discrepancy kinds: sum_mismatch, missing_credit, double_credit,
  /// credit_amount_mismatch, credit_without_open, refund_missing,
  /// refund_double, refund_amount_mismatch, refund_overdue (any PAID
  /// envelope more than 60 s past its expiry at `now_ms`), payment_missing,
  /// payment_mismatch, balance_mismatch and escrow_mismatch (user = the
  /// account id, envelope 0), ledger_unbalanced. With `repair`, re-enqueues
  /// the relay for committed opens that lost their credit (never anything
  /// else), in a separate short transaction, and only while the wallet and
  /// escrow involved match their entries (otherwise the money may have moved
  /// without its entry, and the detail says why it was not repaired).
  outcome<reconcile_report> reconcile(int64_t since_ms, int64_t now_ms,
                                      bool repair);

  // -- Segments: leases and health (pg_segments.cpp) -----------------------

  /// Leases `block` sequence numbers of a segment for a day; returns the first
  /// of them. Leases never overlap, across processes too. Sequences of a
  /// (segment, day) start at 1. block < 1 -> errc::internal. The caller
  /// checks the end of the block against sequence_max.
  outcome<int64_t> lease_sequence(int32_t segment, int32_t day, int64_t block);

  /// Every segment recorded as blocked.
  outcome<std::vector<segment_state>> blocked_segments();

  /// Records a segment's state durably (upsert).
  outcome<done> set_segment_state(const segment_state& s);

  /// Exercises a segment's storage the way real traffic does -- an insert
  /// and, if the segment has rows, an update of one -- inside a transaction
  /// that is always rolled back. Fails like the real statements would.
  outcome<done> probe_segment(int32_t segment, int32_t day);

  // -- Maintenance: partitions and expiry (pg_maintenance.cpp) -------------

  /// Creates the day partitions (envelopes, opens, user_records) for every
  /// day in [from_day, to_day] (yyyymmdd) that has none yet, hot or cold.
  /// Returns how many tables were created. Safe to run from several nodes
  /// at once. Days that are no calendar days, from after to, or a range of
  /// more than 1000 days -> errc::invalid_argument.
  outcome<int> ensure_partitions(int32_t from_day, int32_t to_day);

  /// Moves the day partitions older than `cutoff_day` (yyyymmdd) into the
  /// cold schema, except days that still hold money in escrow: a PAID
  /// envelope or an open not yet credited. Returns how many days moved.
  /// Each day moves in its own short transaction that locks the hot tables
  /// exclusively (2 s lock timeout -> errc::unavailable; run it off-peak,
  /// e.g. daily with cutoff = today - 31).
  outcome<int> detach_cold(int32_t cutoff_day);

  /// Ids of PAID envelopes whose expiry is at or before `now_ms`, in
  /// (expiry, id) order, at most `limit` (< 1 -> errc::invalid_argument).
  /// With `after_id` the list starts after that envelope in this order (a
  /// page after the last one); an id that is not found starts it at the
  /// oldest.
  outcome<std::vector<int64_t>> expired_envelopes(int64_t now_ms,
                                                  int32_t limit,
                                                  int64_t after_id = 0);

  /// The database's clock (clock_timestamp()) in Unix ms: the expiry
  /// sweeper compares it with the node's to watch their skew.
  outcome<int64_t> db_now_ms();

  // -- Cluster membership (pg_cluster.cpp) ---------------------------------
  //
  // Every time is the database's clock (now(): the transaction's start).
  // A set_view is read in one statement (one snapshot): the SET's name, the
  // database's now() in ms, every node lease (by node name), every segment
  // owner (by segment) and the blocked segments of segment_states. A
  // database older than migration 6 -> errc::internal saying so.

  /// Who this connection writes for; null (the default): a node without a
  /// cluster, whose writes check no owner rows (the statements of a single
  /// node, unchanged). The incarnation is read at every call.
  void set_identity(std::shared_ptr<node_identity> who) { identity_ = std::move(who); }

  /// The SET this database belongs to (empty: not a cluster database yet).
  outcome<std::string> cluster_set();

  /// Joins the SET, in one transaction: names the database's SET
  /// (cluster_identity) if nobody has, else errc::conflict naming both SETs
  /// when it is another; writes the node's lease row (expiring lease_ms after
  /// now()) with req.me.incarnation, replacing an older incarnation, renewing
  /// the same one (a retry), and refusing an older one (errc::conflict: a
  /// newer incarnation joined since); creates the owner rows of req.segments
  /// that are missing (owner NULL, owner_epoch 0); returns the view. A
  /// missing node name or SET, an incarnation <= 0, lease_ms <= 0 or a
  /// segment outside 0..999 -> errc::invalid_argument.
  outcome<set_view> join(const join_request& req);

  /// Renews the lease for lease_ms after now() and reads the view, in one
  /// transaction, only while the row has the same incarnation and has not
  /// expired; else errc::not_owner saying whether it was replaced (by which
  /// incarnation), has expired (how long ago) or never joined: the node
  /// must fence itself and rejoin. lease_ms <= 0 -> errc::invalid_argument.
  outcome<set_view> renew(const renew_request& req);

  /// Compare-and-set takes, one statement: each expected row's segment is
  /// taken (owner, owner_incarnation := the taker; owner_epoch + 1; taken_at
  /// now()) only if its owner_epoch is still the expected one, its current
  /// owner has no current lease at the owner's incarnation, and the taker's
  /// own lease (at req.incarnation) is current. Returns the rows taken, as
  /// they are now, by segment; the others are left unchanged.
  outcome<std::vector<segment_owner>> take(const take_request& req);

  /// Planned moves, one statement: each segment goes to its named receiver
  /// by compare-and-set on the owner_epoch read, only while req.node owns
  /// it at req.incarnation with a current lease and the receiver's lease
  /// (at the incarnation named) is current. Returns the rows moved (the
  /// others stay as they were). A move to nobody or to itself ->
  /// errc::invalid_argument, nothing moved.
  outcome<std::vector<segment_owner>> give(const give_request& req);

  /// Marks a node of this SET draining (or serving again, which restarts
  /// its in-service time) and returns the SET's view; errc::not_found if no
  /// node of that name ever joined.
  outcome<set_view> drain(const drain_request& req);

  /// Ends the node's lease now if it is still current at that incarnation
  /// (a stopping node); true if it was.
  outcome<bool> leave(const leave_request& req);

private:
  explicit pg_store(pg_conn* conn, std::string url);
  bool ensure_connected();

  pg_conn* conn_;
  std::string url_;
  std::shared_ptr<node_identity> identity_;
};

} // namespace hb::persistence
