#pragma once

// The simulated database: every table the PostgreSQL store keeps, in memory,
// with the semantics documented in persistence/pg_store.hpp -- transactions
// (each call applies entirely or not at all), unique keys, fencing epochs,
// the double-entry ledger with idempotency keys, the relay's backlog
// (committed opens and the outbox) and its batches,
// refunds, sequence leases, the expired scan, minimal history and balances,
// and the reconciliation computed in memory. No CAF, no I/O: the sim store
// actor (sim_store.hpp) puts faults and latency in front of it.
//
// Besides the tables it records, for the invariant checker, every guarded
// write attempt (pay, commit, refund) with the epoch it carried, the epoch
// current when it was applied and which actor owned the envelope then.

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "domain/envelope.hpp"
#include "domain/errc.hpp"
#include "domain/ledger.hpp"
#include "domain/segment.hpp"

namespace hb::sim {

/// Who sent a call: the actor id and whether it is an envelope actor (only
/// those own envelopes; the ownership oracle follows them).
struct caller {
  uint64_t actor_id = 0;
  bool envelope_actor = false;
};

/// An open as stored: the record and its relay status. A committed open is
/// itself the relay's work item (migration v3): no outbox row goes with it.
struct db_open {
  open_record rec;
  int status = 1;  ///< 1 committed (the relay owes its credit), 2 transferred
};

struct outbox_row {
  int64_t id = 0;
  /// "paid", or "open" only where a repair re-enqueues an open of an
  /// archived envelope -- never here: the simulation archives nothing.
  std::string kind;
  int64_t envelope_id = 0;
  std::string user;
  int64_t amount_fen = 0;
  std::string key;
  bool delivered = false;
  int64_t created_at_ms = 0;
};

struct ledger_entry {
  int64_t id = 0;
  std::string key;
  std::string kind;  ///< pay, credit, refund, deposit
  std::string debit;
  std::string credit;
  int64_t amount_fen = 0;
  int64_t envelope_id = 0;  ///< 0: none (deposits)
  std::string user;
};

struct user_record {
  std::string user;
  int kind = 1;  ///< 1 sent, 2 received
  int64_t envelope_id = 0;
  int64_t amount_fen = 0;
  int64_t at_ms = 0;
  std::string group;
  std::string counterpart;
};

/// One guarded write (pay, commit, refund) as the database saw it.
struct write_attempt {
  const char* what = "";
  int64_t envelope_id = 0;
  int64_t carried_epoch = 0;
  int64_t current_epoch = 0;   ///< the stored epoch when it was applied
  uint64_t sender = 0;         ///< actor id
  uint64_t owner = 0;          ///< actor id holding the current epoch, 0: none
  bool accepted = false;       ///< changed the state (not a replay)
  int64_t at_ms = 0;
};

struct create_outcome {
  envelope env;
  bool created = false;
};

struct lag_info {
  int64_t pending = 0;
  int64_t oldest_age_ms = 0;
};

class sim_db {
public:
  /// The database's wall clock (Unix ms), the simulation's clock.
  std::function<int64_t()> now_ms;

  // -- the tables --------------------------------------------------------------
  std::map<int64_t, envelope> envelopes;
  std::map<std::pair<std::string, std::string>, int64_t> keys;  // (sender, key)
  std::map<int64_t, std::vector<db_open>> opens;                 // by seq
  std::map<std::string, std::pair<int64_t, std::string>> payments;  // txn
  std::vector<outbox_row> outbox;
  std::map<std::string, size_t> outbox_keys;
  std::vector<ledger_entry> ledger;
  std::map<std::string, size_t> ledger_keys;
  std::map<std::string, int64_t> accounts;  // balances, kept like the table
  std::map<std::tuple<int64_t, std::string, int>, user_record> user_records;
  std::map<std::pair<int32_t, int32_t>, int64_t> leases;  // next sequence
  std::map<int32_t, segment_state> segment_states;

  // -- what the oracle needs ---------------------------------------------------
  /// Envelope -> actor id of its most recent activation by an envelope actor.
  std::map<int64_t, uint64_t> owner;
  /// (envelope, epoch) -> the envelope actor that holds that epoch: its
  /// activation (or load) reached the store from it, or the snapshot with
  /// that epoch was delivered to it (activations through the batcher).
  std::map<std::pair<int64_t, int64_t>, uint64_t> epoch_owner;
  /// Records that `actor` holds `epoch` of the envelope (claim).
  void claim(int64_t envelope_id, int64_t epoch, uint64_t actor);
  /// Guarded writes that were accepted although stale (must stay empty).
  std::vector<write_attempt> stale_accepted;
  uint64_t guarded_writes = 0;
  uint64_t stale_refused = 0;
  uint64_t commits = 0;  ///< open batches committed
  uint64_t segment_blocks = 0;  ///< segments recorded as blocked
  /// Refunds applied before the envelope's expiry (must stay empty).
  std::vector<int64_t> early_refunds;
  /// Writes the database's clock refused: refunds of envelopes not expired
  /// yet, commits of expired ones.
  uint64_t refunds_refused_early = 0;
  uint64_t commits_refused_expired = 0;
  /// Envelope ids that a create tried to insert twice (must stay empty).
  std::vector<int64_t> id_collisions;

  // -- the calls of pg_store, same semantics -------------------------------------
  outcome<create_outcome> create_envelope(const envelope& env);
  /// As pg_store::create_envelopes, one transaction: the envelopes with
  /// new keys are inserted (the first of each key); an id in use fails the
  /// lot, changing nothing.
  outcome<std::vector<envelope>> create_envelopes(
    const std::vector<envelope>& envs);
  outcome<envelope_snapshot> activate(int64_t id, const caller& who);
  outcome<envelope_snapshot> load(int64_t id, const caller& who);
  outcome<done> confirm_payment(const payment& p, const caller& who);
  /// As pg_store::confirm_payments, one transaction: the external payments
  /// of CREATED envelopes under their epoch (the first of each envelope)
  /// are confirmed; a txn used already fails the lot, changing nothing.
  outcome<std::vector<int64_t>> confirm_payments(
    const std::vector<payment>& ps, const std::vector<caller>& who);
  outcome<done> commit_opens(const open_batch& b, const caller& who);
  outcome<int64_t> lease_sequence(int32_t segment, int32_t day, int64_t block);
  outcome<int64_t> refund(int64_t id, int64_t epoch, const caller& who);
  /// Takes up to `limit` items: undelivered outbox rows (oldest first),
  /// then committed opens (oldest opened_at first); credits each open once,
  /// writes its received record, marks it transferred and the rows
  /// delivered. `rows` counts every item taken.
  outcome<relay_batch_result> relay_batch(int32_t limit);
  /// Marks what relay_batch(limit) would take now: outbox rows delivered,
  /// their opens and the committed opens transferred. Only the relay bug of
  /// runtime/bugs.hpp marks in this separate step.
  void mark_relayed(int32_t limit);
  /// The relay's backlog (view relay_backlog): undelivered outbox rows and
  /// committed opens, and the age of the oldest.
  outcome<lag_info> outbox_lag();
  outcome<std::vector<int64_t>> expired_envelopes(int64_t now_ms, int32_t limit,
                                                  int64_t after_id = 0);
  outcome<history_page> history(const history_query& q);
  outcome<balance_info> balance(const std::string& user);
  outcome<reconcile_report> reconcile(int64_t since_ms, int64_t now_ms,
                                      bool repair);
  outcome<done> deposit(const std::string& user, int64_t amount_fen,
                        const std::string& key);
  outcome<std::vector<segment_state>> blocked_segments();
  outcome<done> set_segment_state(const segment_state& s);

  // -- helpers for the checker -------------------------------------------------
  const db_open* find_open(int64_t envelope_id, const std::string& user) const;
  std::vector<open_record> open_records(int64_t envelope_id) const;
  int64_t balance_of(const std::string& account) const;
  /// Ledger entries of one kind for an envelope (and user, if not empty).
  std::vector<const ledger_entry*> entries(const std::string& kind,
                                           int64_t envelope_id,
                                           const std::string& user = {}) const;
  /// Items the relay still owes: undelivered outbox rows + committed opens.
  int64_t relay_backlog() const;

private:
  /// Calls f(at_ms) for every item the relay still owes: undelivered
  /// outbox rows (created_at) and committed opens (opened_at).
  template <class F>
  void for_each_owed(F f) const {
    for (auto& row : outbox)
      if (!row.delivered)
        f(row.created_at_ms);
    for (auto& kv : opens)
      for (auto& o : kv.second)
        if (o.status == 1)
          f(o.rec.opened_at_ms);
  }

  /// What one relay batch takes, in order.
  struct relay_take {
    std::vector<size_t> rows;                              ///< outbox indexes
    std::vector<std::pair<int64_t, std::string>> opens;   ///< committed opens
  };
  relay_take take_relay(int32_t limit) const;
  void mark_taken(const relay_take& t);
  /// Posts one ledger entry unless its key exists (then returns false).
  bool post(const std::string& key, const std::string& kind,
            const std::string& debit, const std::string& credit,
            int64_t amount_fen, int64_t envelope_id, const std::string& user);
  void add_outbox(const std::string& kind, int64_t envelope_id,
                  const std::string& user, int64_t amount_fen,
                  const std::string& key);
  void record_attempt(const char* what, int64_t envelope_id, int64_t carried,
                      int64_t current, const caller& who, bool accepted);
  envelope_snapshot snapshot(int64_t id) const;
  int64_t next_outbox_id_ = 1;
  int64_t next_ledger_id_ = 1;
};

/// The account names of the ledger, as in the PostgreSQL store.
std::string escrow_of(int64_t envelope_id);

} // namespace hb::sim
