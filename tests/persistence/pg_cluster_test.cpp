// Integration tests of the SET's membership in pg_store (join, renew, take
// on the database clock) and of the second fence of every write in a
// cluster (the owner rows), against a real PostgreSQL (see
// pg_connection_test.cpp for the setup). Each test has a fresh database:
// the SET's identity, leases and owner rows are the database's own.
#define CAF_SUITE persistence.pg_cluster
#include "caf/test/unit_test.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "domain/envelope_id.hpp"
#include "tests/persistence/pg_test_support.hpp"

using namespace hb;
using namespace hb::persistence;
using namespace hb::persistence::test_support;

namespace {

constexpr int32_t long_lease_ms = 60000;
constexpr int32_t short_lease_ms = 800;

struct cluster_fixture {
  /// A node's identity as its store workers share it.
  static std::shared_ptr<node_identity> identity(const std::string& node,
                                                 int64_t incarnation) {
    auto who = std::make_shared<node_identity>();
    who->node = node;
    who->incarnation = incarnation;
    return who;
  }

  /// A join of `node` to set-1, whose segments are 0..9.
  static join_request join_of(const std::string& node, int64_t incarnation,
                              int32_t lease_ms, const std::string& set = "set-1") {
    join_request req;
    req.me.node = node;
    req.me.incarnation = incarnation;
    req.me.zone = "zone-" + node.substr(0, 1);
    req.me.set = set;
    req.me.peer_host = "127.0.0.1";
    req.me.peer_port = 7811;
    req.me.gateway_host = "127.0.0.1";
    req.me.gateway_port = 7711;
    req.lease_ms = lease_ms;
    for (int32_t s = 0; s < 10; ++s)
      req.segments.push_back(s);
    return req;
  }

  /// A connection that writes for `who` (null: a node without a cluster).
  std::unique_ptr<pg_store> store_for(std::shared_ptr<node_identity> who) {
    auto store = connect_or_fail(db.url());
    store->set_identity(std::move(who));
    return store;
  }

  /// Takes `segment` for `who` at the owner_epoch it has now; fails the
  /// test unless it is taken.
  segment_owner take_now(pg_store& store, const node_identity& who,
                         int32_t segment) {
    segment_owner expected;
    expected.segment = segment;
    expected.owner_epoch = owner_epoch_of(segment);
    auto taken = value_of(
      store.take(take_request{who.node, who.incarnation.load(), {expected}}));
    CAF_REQUIRE_EQUAL(taken.size(), 1u);
    return taken[0];
  }

  /// Waits (at most 10 s) until the database says the node's lease expired.
  void wait_expired(const std::string& node) {
    for (int i = 0; i < 200; ++i) {
      if (query(db.verify(), "SELECT lease_expires_at <= now() FROM node_leases"
                             " WHERE node = $1", {node}) == "t")
        return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    CAF_FAIL("the lease of " << node << " did not expire");
  }

  /// A fresh envelope description in `segment`; ids and keys never repeat.
  envelope make_envelope(int32_t segment, int64_t total_fen, int32_t count) {
    auto n = ++envelopes_made;
    envelope env;
    env.id = make_envelope_id(test_day, n, segment);
    env.sender = "sender-" + std::to_string(n);
    env.group = "group-1";
    env.idempotency_key = "key-" + std::to_string(n);
    env.kind = envelope_kind::random;
    env.total_fen = total_fen;
    env.count = count;
    env.created_at_ms = 1764158400123;
    return env;
  }

  /// Creates, activates and pays an envelope through `store`.
  envelope paid_envelope(pg_store& store, int32_t segment, int64_t total_fen,
                         int32_t count) {
    auto env = activated_envelope(store, segment, total_fen, count);
    payment p{env.id, env.epoch, "txn-" + std::to_string(env.id),
              1764158401000, live_expiry_ms};
    CAF_REQUIRE_EQUAL(code_of(store.confirm_payment(p)), "ok");
    env.status = envelope_status::paid;
    return env;
  }

  /// Lets the database's clock pass the envelope's expiry, as time would.
  void expire_now(int64_t id) {
    query(db.verify(), "UPDATE envelopes SET expires_at = now() - interval"
                       " '1 ms' WHERE id = $1",
          {std::to_string(id)});
  }

  /// Creates and activates an envelope through `store` (still CREATED).
  envelope activated_envelope(pg_store& store, int32_t segment,
                              int64_t total_fen, int32_t count) {
    auto created = store.create_envelope(make_envelope(segment, total_fen, count));
    CAF_REQUIRE_EQUAL(code_of(created), "ok");
    auto snap = store.activate(created->env.id);
    CAF_REQUIRE_EQUAL(code_of(snap), "ok");
    return snap->env;
  }

  static open_batch batch_of(const envelope& env, std::vector<open_record> opens) {
    open_batch b;
    b.envelope_id = env.id;
    b.epoch = env.epoch;
    int64_t sum = 0;
    for (auto& o : opens)
      sum += o.amount_fen;
    b.remaining_fen = env.remaining_fen - sum;
    b.remaining_count = env.remaining_count - static_cast<int32_t>(opens.size());
    b.opens = std::move(opens);
    b.status = b.remaining_count == 0 ? envelope_status::exhausted
                                      : envelope_status::paid;
    return b;
  }

  int64_t owner_epoch_of(int32_t segment) {
    return query_int(db.verify(), "SELECT owner_epoch FROM segment_owners"
                                  " WHERE segment = $1",
                     {str(segment)});
  }

  /// What a refused write must leave as it was: status, remaining amount
  /// and count, epoch, owner_epoch and the number of opens.
  std::string state_of(int64_t id) {
    return query(db.verify(),
                 "SELECT status || '/' || remaining_fen || '/' || remaining_count"
                 " || '/' || epoch || '/' || owner_epoch || '/' ||"
                 " (SELECT count(*) FROM opens WHERE envelope_id = $1)"
                 " FROM envelopes WHERE id = $1",
                 {str(id)});
  }

  int64_t count_where(const std::string& table, const std::string& cond,
                      int64_t id) {
    return query_int(db.verify(), "SELECT count(*) FROM " + table + " WHERE "
                                    + cond,
                     {str(id)});
  }

  fresh_db db;
  int64_t envelopes_made = 0;
};

bool contains(const std::string& text, const std::string& piece) {
  return text.find(piece) != std::string::npos;
}

/// Whether the store's own session has a statement prepared that contains
/// every one of `pieces`.
bool prepared(pg_store& store, const std::vector<std::string>& pieces) {
  std::string cond;
  for (auto& p : pieces)
    cond += " AND strpos(statement, '" + p + "') > 0";
  return store
    .exec("DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_prepared_statements"
          " WHERE true" + cond + ") THEN RAISE EXCEPTION 'not prepared';"
          " END IF; END $$")
    .ok();
}

} // namespace

CAF_TEST_FIXTURE_SCOPE(pg_cluster_tests, cluster_fixture)

// -- Join, renew and take ------------------------------------------------------

CAF_TEST(join names the SET and writes a lease and the owner rows) {
  auto store = store_for(nullptr);
  CAF_CHECK_EQUAL(value_of(store->cluster_set()), "");
  auto view = value_of(store->join(join_of("a1", 5, 3000)));
  CAF_CHECK_EQUAL(view.set, "set-1");
  CAF_CHECK_EQUAL(value_of(store->cluster_set()), "set-1");
  // The database's clock, not ours: its now() at the join, and the lease
  // exactly lease_ms after it.
  auto db_now = query_int(db.verify(), "SELECT hb_ms(now())");
  CAF_CHECK_LESS_OR_EQUAL(view.db_now_ms, db_now);
  CAF_CHECK_GREATER(view.db_now_ms, db_now - 10000);
  CAF_REQUIRE_EQUAL(view.nodes.size(), 1u);
  auto& me = view.nodes[0];
  CAF_CHECK_EQUAL(me.node, "a1");
  CAF_CHECK_EQUAL(me.incarnation, 5);
  CAF_CHECK_EQUAL(me.zone, "zone-a");
  CAF_CHECK_EQUAL(me.set, "set-1");
  CAF_CHECK_EQUAL(me.peer_host, "127.0.0.1");
  CAF_CHECK_EQUAL(me.peer_port, 7811);
  CAF_CHECK_EQUAL(me.gateway_port, 7711);
  CAF_CHECK_EQUAL(me.expires_at_ms - view.db_now_ms, 3000);
  CAF_CHECK(lease_alive(view, me));
  CAF_REQUIRE_EQUAL(view.owners.size(), 10u);
  for (int32_t s = 0; s < 10; ++s) {
    CAF_CHECK_EQUAL(view.owners[s].segment, s);
    CAF_CHECK_EQUAL(view.owners[s].owner, "");
    CAF_CHECK_EQUAL(view.owners[s].owner_epoch, 0);
  }
  CAF_CHECK(view.blocked.empty());
  // A second node of the SET, and a blocked segment: both in the next view.
  CAF_REQUIRE_EQUAL(code_of(store->set_segment_state({3, true, true, "disk"})),
                    "ok");
  view = value_of(store->join(join_of("b1", 1, 3000)));
  CAF_REQUIRE_EQUAL(view.nodes.size(), 2u);
  CAF_CHECK_EQUAL(view.nodes[0].node, "a1");
  CAF_CHECK_EQUAL(view.nodes[1].node, "b1");
  CAF_CHECK_EQUAL(view.owners.size(), 10u);
  CAF_REQUIRE_EQUAL(view.blocked.size(), 1u);
  CAF_CHECK_EQUAL(view.blocked[0].segment, 3);
  CAF_CHECK(view.blocked[0].blocked);
  CAF_CHECK(view.blocked[0].manual);
  CAF_CHECK_EQUAL(view.blocked[0].reason, "disk");
}

CAF_TEST(a node of another SET is refused with a conflict naming both SETs) {
  auto store = store_for(nullptr);
  value_of(store->join(join_of("a1", 1, 3000, "set-1")));
  auto refused = store->join(join_of("x1", 1, 3000, "set-2"));
  CAF_CHECK_EQUAL(code_of(refused), "conflict");
  CAF_MESSAGE("refused with: " << message_of(refused));
  CAF_CHECK(contains(message_of(refused), "'set-1'"));
  CAF_CHECK(contains(message_of(refused), "'set-2'"));
  CAF_CHECK_EQUAL(query_int(db.verify(), "SELECT count(*) FROM node_leases"), 1);
  CAF_CHECK_EQUAL(value_of(store->cluster_set()), "set-1");
  // A malformed join is the caller's bug and writes nothing.
  auto bad = join_of("a2", 0, 3000);
  CAF_CHECK_EQUAL(code_of(store->join(bad)), "invalid_argument");
  bad = join_of("a2", 1, 3000);
  bad.segments.push_back(1000);
  CAF_CHECK_EQUAL(code_of(store->join(bad)), "invalid_argument");
  CAF_CHECK_EQUAL(query_int(db.verify(), "SELECT count(*) FROM node_leases"), 1);
}

CAF_TEST(renew extends a current lease and refuses an expired one) {
  auto store = store_for(nullptr);
  value_of(store->join(join_of("a1", 1, short_lease_ms)));
  auto view = value_of(store->renew(renew_request{"a1", 1, 5000}));
  auto* me = find_lease(view, "a1");
  CAF_REQUIRE(me != nullptr);
  CAF_CHECK_EQUAL(me->expires_at_ms - view.db_now_ms, 5000);
  CAF_CHECK_EQUAL(view.owners.size(), 10u);
  value_of(store->renew(renew_request{"a1", 1, short_lease_ms}));
  wait_expired("a1");
  auto refused = store->renew(renew_request{"a1", 1, short_lease_ms});
  CAF_CHECK_EQUAL(code_of(refused), "not_owner");
  CAF_MESSAGE("refused with: " << message_of(refused));
  CAF_CHECK(contains(message_of(refused), "expired"));
  // Nothing renewed: the lease is still over.
  CAF_CHECK_EQUAL(query(db.verify(), "SELECT lease_expires_at <= now()"
                                     " FROM node_leases WHERE node = 'a1'"),
                  "t");
  // A node that never joined cannot renew either.
  auto never = store->renew(renew_request{"zz", 1, 1000});
  CAF_CHECK_EQUAL(code_of(never), "not_owner");
  CAF_CHECK(contains(message_of(never), "never joined"));
}

CAF_TEST(a replaced incarnation cannot renew and an older one cannot join) {
  auto store = store_for(nullptr);
  value_of(store->join(join_of("a1", 1, long_lease_ms)));
  auto view = value_of(store->join(join_of("a1", 2, long_lease_ms)));
  CAF_REQUIRE_EQUAL(view.nodes.size(), 1u);
  CAF_CHECK_EQUAL(view.nodes[0].incarnation, 2);
  auto refused = store->renew(renew_request{"a1", 1, long_lease_ms});
  CAF_CHECK_EQUAL(code_of(refused), "not_owner");
  CAF_MESSAGE("refused with: " << message_of(refused));
  CAF_CHECK(contains(message_of(refused), "replaced by incarnation 2"));
  // A late join of the replaced process does not push the new one out.
  auto late = store->join(join_of("a1", 1, long_lease_ms));
  CAF_CHECK_EQUAL(code_of(late), "conflict");
  CAF_CHECK_EQUAL(query(db.verify(), "SELECT incarnation FROM node_leases"
                                     " WHERE node = 'a1'"),
                  "2");
  // The same incarnation again (a retry after a lost reply) is a renewal.
  CAF_CHECK_EQUAL(code_of(store->join(join_of("a1", 2, long_lease_ms))), "ok");
  CAF_CHECK_EQUAL(code_of(store->renew(renew_request{"a1", 2, long_lease_ms})),
                  "ok");
}

CAF_TEST(take is a compare-and-set on the owner_epoch) {
  auto store = store_for(nullptr);
  value_of(store->join(join_of("a1", 3, long_lease_ms)));
  segment_owner wrong;
  wrong.segment = 1;
  wrong.owner_epoch = 7;
  CAF_CHECK(value_of(store->take(take_request{"a1", 3, {wrong}})).empty());
  CAF_CHECK_EQUAL(owner_epoch_of(1), 0);
  CAF_CHECK_EQUAL(query(db.verify(), "SELECT owner IS NULL AND taken_at IS NULL"
                                     " FROM segment_owners WHERE segment = 1"),
                  "t");
  segment_owner one, two;
  one.segment = 1;
  two.segment = 2;
  auto taken = value_of(store->take(take_request{"a1", 3, {two, one}}));
  CAF_REQUIRE_EQUAL(taken.size(), 2u);
  CAF_CHECK_EQUAL(taken[0].segment, 1);
  CAF_CHECK_EQUAL(taken[1].segment, 2);
  for (auto& row : taken) {
    CAF_CHECK_EQUAL(row.owner, "a1");
    CAF_CHECK_EQUAL(row.owner_incarnation, 3);
    CAF_CHECK_EQUAL(row.owner_epoch, 1);
  }
  CAF_CHECK_EQUAL(query(db.verify(), "SELECT taken_at IS NOT NULL"
                                     " FROM segment_owners WHERE segment = 1"),
                  "t");
  // The row as read before the take is stale now.
  CAF_CHECK(value_of(store->take(take_request{"a1", 3, {one}})).empty());
  CAF_CHECK_EQUAL(owner_epoch_of(1), 1);
  auto view = value_of(store->renew(renew_request{"a1", 3, long_lease_ms}));
  CAF_CHECK(owned_segments(view, "a1", 3) == (std::vector<int32_t>{1, 2}));
}

CAF_TEST(a live owner keeps its segment and an expired one loses it) {
  auto store = store_for(nullptr);
  value_of(store->join(join_of("a1", 1, short_lease_ms)));
  value_of(store->join(join_of("b1", 1, long_lease_ms)));
  auto a1 = identity("a1", 1);
  auto b1 = identity("b1", 1);
  take_now(*store, *a1, 4);
  segment_owner seen;
  seen.segment = 4;
  seen.owner_epoch = 1;
  CAF_CHECK(value_of(store->take(take_request{"b1", 1, {seen}})).empty());
  CAF_CHECK_EQUAL(query(db.verify(), "SELECT owner FROM segment_owners"
                                     " WHERE segment = 4"),
                  "a1");
  wait_expired("a1");
  auto taken = value_of(store->take(take_request{"b1", 1, {seen}}));
  CAF_REQUIRE_EQUAL(taken.size(), 1u);
  CAF_CHECK_EQUAL(taken[0].owner, "b1");
  CAF_CHECK_EQUAL(taken[0].owner_epoch, 2);
  // A node that rejoins under a new incarnation replaces its old lease:
  // the old incarnation's segments can be taken at once, by itself too.
  value_of(store->join(join_of("c1", 1, long_lease_ms)));
  take_now(*store, *identity("c1", 1), 5);
  value_of(store->join(join_of("c1", 2, long_lease_ms)));
  auto back = take_now(*store, *identity("c1", 2), 5);
  CAF_CHECK_EQUAL(back.owner_incarnation, 2);
  CAF_CHECK_EQUAL(back.owner_epoch, 2);
}

CAF_TEST(a taker without a current lease takes nothing) {
  auto store = store_for(nullptr);
  value_of(store->join(join_of("a1", 1, short_lease_ms)));
  segment_owner free_row;
  free_row.segment = 6;
  // Not at its current incarnation.
  CAF_CHECK(value_of(store->take(take_request{"a1", 2, {free_row}})).empty());
  // Not a node of the SET.
  CAF_CHECK(value_of(store->take(take_request{"zz", 1, {free_row}})).empty());
  wait_expired("a1");
  CAF_CHECK(value_of(store->take(take_request{"a1", 1, {free_row}})).empty());
  CAF_CHECK_EQUAL(owner_epoch_of(6), 0);
}

CAF_TEST(of two racing takers exactly one wins each segment) {
  auto setup = store_for(nullptr);
  value_of(setup->join(join_of("x1", 1, long_lease_ms)));
  value_of(setup->join(join_of("x2", 1, long_lease_ms)));
  std::vector<segment_owner> rows(10);
  for (int32_t s = 0; s < 10; ++s)
    rows[s].segment = s;
  std::atomic<bool> go{false};
  std::vector<segment_owner> won[2];
  std::vector<std::thread> takers;
  for (int i = 0; i < 2; ++i)
    takers.emplace_back([&, i] {
      auto store = connect_or_fail(db.url());
      auto node = "x" + std::to_string(i + 1);
      auto order = rows;
      if (i == 1)  // the other way round: locks in segment order anyway
        std::reverse(order.begin(), order.end());
      while (!go)
        std::this_thread::yield();
      auto res = store->take(take_request{node, 1, order});
      if (res)
        won[i] = std::move(*res);
    });
  go = true;
  for (auto& t : takers)
    t.join();
  CAF_MESSAGE("x1 won " << won[0].size() << ", x2 won " << won[1].size());
  std::set<int32_t> segments;
  for (auto& w : won)
    for (auto& row : w) {
      CAF_CHECK(segments.insert(row.segment).second);
      CAF_CHECK_EQUAL(row.owner_epoch, 1);
    }
  CAF_CHECK_EQUAL(segments.size(), 10u);
  CAF_CHECK_EQUAL(query_int(db.verify(), "SELECT count(*) FROM segment_owners"
                                         " WHERE owner_epoch = 1"),
                  10);
}

// -- Fencing twice ---------------------------------------------------------------

// The key property of the cluster: A owns segment 7 and has envelopes there
// activated, paid and ready to write; A's lease expires and B takes the
// segment. B has activated none of them, so their epochs are still A's, yet
// every write of A is refused (not_owner) and changes nothing, because the
// segment's owner_epoch is no longer the one A activated them under.
CAF_TEST(a deposed owner cannot write although the new owner activated nothing) {
  auto setup = store_for(nullptr);
  value_of(setup->join(join_of("a1", 1, short_lease_ms)));
  value_of(setup->join(join_of("b1", 1, long_lease_ms)));
  auto a1 = identity("a1", 1);
  auto b1 = identity("b1", 1);
  auto a = store_for(a1);
  auto b = store_for(b1);
  auto taken = take_now(*a, *a1, 7);
  take_now(*a, *a1, 8);  // A keeps this one
  CAF_REQUIRE_EQUAL(taken.owner_epoch, 1);
  auto x = paid_envelope(*a, 7, 1000, 4);     // to open
  auto w = paid_envelope(*a, 7, 500, 2);      // to open in a group commit
  auto y = paid_envelope(*a, 7, 900, 3);      // to refund
  auto z = activated_envelope(*a, 7, 300, 3);  // to pay
  auto k = paid_envelope(*a, 8, 600, 2);      // still A's segment
  CAF_CHECK_EQUAL(query_int(db.verify(), "SELECT owner_epoch FROM envelopes"
                                         " WHERE id = $1", {str(x.id)}),
                  1);
  // A's commit is ready; then A's lease runs out and B takes segment 7.
  auto commit = batch_of(x, {{"ann", 100, 1, 1764158402000}});
  wait_expired("a1");
  segment_owner seen;
  seen.segment = 7;
  seen.owner_epoch = 1;
  CAF_REQUIRE_EQUAL(value_of(b->take(take_request{"b1", 1, {seen}})).size(), 1u);
  auto before_x = state_of(x.id);
  auto before_w = state_of(w.id);
  auto before_y = state_of(y.id);
  auto before_z = state_of(z.id);
  // An open.
  auto refused = a->commit_opens(commit);
  CAF_CHECK_EQUAL(code_of(refused), "not_owner");
  CAF_MESSAGE("commit refused with: " << message_of(refused));
  CAF_CHECK_EQUAL(state_of(x.id), before_x);
  CAF_CHECK_EQUAL(count_where("credits_owed", "$1 = ANY(envelope_ids)", x.id), 0);
  // A group commit: the deposed envelopes refused, A's own segment not.
  auto many = value_of(a->commit_many(
    {commit, batch_of(w, {{"bob", 100, 1, 1764158402000}}),
     batch_of(k, {{"cat", 100, 1, 1764158402000}})}));
  CAF_REQUIRE_EQUAL(many.size(), 3u);
  CAF_CHECK_EQUAL(to_string(many[0].code), "not_owner");
  CAF_CHECK_EQUAL(to_string(many[1].code), "not_owner");
  CAF_CHECK_EQUAL(to_string(many[2].code), "none");
  CAF_CHECK_EQUAL(state_of(x.id), before_x);
  CAF_CHECK_EQUAL(state_of(w.id), before_w);
  CAF_CHECK_EQUAL(count_where("opens", "envelope_id = $1", k.id), 1);
  // A payment, alone and in a burst.
  payment pay{z.id, z.epoch, "txn-z", 1764158401000, live_expiry_ms};
  auto unpaid = a->confirm_payment(pay);
  CAF_CHECK_EQUAL(code_of(unpaid), "not_owner");
  CAF_MESSAGE("payment refused with: " << message_of(unpaid));
  CAF_CHECK(value_of(a->confirm_payments({pay})).empty());
  CAF_CHECK_EQUAL(state_of(z.id), before_z);
  CAF_CHECK_EQUAL(count_where("payments", "envelope_id = $1", z.id), 0);
  CAF_CHECK_EQUAL(count_where("ledger_entries", "envelope_id = $1", z.id), 0);
  // A refund.
  auto kept = a->refund(y.id, y.epoch);
  CAF_CHECK_EQUAL(code_of(kept), "not_owner");
  CAF_CHECK_EQUAL(state_of(y.id), before_y);
  CAF_CHECK_EQUAL(count_where("ledger_entries",
                              "envelope_id = $1 AND kind = 'refund'", y.id),
                  0);
  // A create, alone and in a burst, and an activation.
  auto fresh = make_envelope(7, 100, 1);
  CAF_CHECK_EQUAL(code_of(a->create_envelope(fresh)), "not_owner");
  CAF_CHECK(value_of(a->create_envelopes({make_envelope(7, 100, 1)})).empty());
  CAF_CHECK_EQUAL(count_where("envelopes", "segment = $1", 7), 4);
  CAF_CHECK_EQUAL(count_where("envelope_keys", "envelope_id % 1000 = $1", 7), 4);
  CAF_CHECK_EQUAL(code_of(a->activate(x.id)), "not_owner");
  CAF_CHECK(value_of(a->activate_many({x.id})).empty());
  CAF_CHECK_EQUAL(state_of(x.id), before_x);
  // The new owner activates and writes as usual.
  auto bx = value_of(b->activate(x.id)).env;
  CAF_CHECK_EQUAL(bx.epoch, x.epoch + 1);
  CAF_CHECK_EQUAL(query_int(db.verify(), "SELECT owner_epoch FROM envelopes"
                                         " WHERE id = $1", {str(x.id)}),
                  2);
  CAF_CHECK_EQUAL(code_of(b->commit_opens(batch_of(bx, {{"dan", 100, 1,
                                                          1764158403000}}))),
                  "ok");
  auto by = value_of(b->activate(y.id)).env;
  expire_now(y.id);
  CAF_CHECK_EQUAL(value_of(b->refund(y.id, by.epoch)), 900);
  auto bz = value_of(b->activate(z.id)).env;
  pay.epoch = bz.epoch;
  CAF_CHECK_EQUAL(code_of(b->confirm_payment(pay)), "ok");
  CAF_CHECK_EQUAL(code_of(b->create_envelope(fresh)), "ok");
  // Once B has activated the envelope, A's epoch is stale too, and that is
  // what A hears; still nothing of A's is written.
  CAF_CHECK_EQUAL(code_of(a->commit_opens(commit)), "stale_epoch");
  CAF_CHECK_EQUAL(count_where("opens", "envelope_id = $1 AND user_id = 'ann'",
                              x.id),
                  0);
}

CAF_TEST(a node that does not own a segment can neither create nor activate there) {
  auto setup = store_for(nullptr);
  value_of(setup->join(join_of("a1", 1, long_lease_ms)));
  value_of(setup->join(join_of("b1", 1, long_lease_ms)));
  auto a1 = identity("a1", 1);
  auto b1 = identity("b1", 1);
  auto a = store_for(a1);
  auto b = store_for(b1);
  take_now(*a, *a1, 2);
  auto x = activated_envelope(*a, 2, 1000, 4);
  auto before = state_of(x.id);
  // Owned by another node.
  auto refused = b->activate(x.id);
  CAF_CHECK_EQUAL(code_of(refused), "not_owner");
  CAF_MESSAGE("activation refused with: " << message_of(refused));
  CAF_CHECK(contains(message_of(refused), "owned by a1"));
  CAF_CHECK(value_of(b->activate_many({x.id})).empty());
  CAF_CHECK_EQUAL(state_of(x.id), before);
  auto env = make_envelope(2, 100, 1);
  CAF_CHECK_EQUAL(code_of(b->create_envelope(env)), "not_owner");
  CAF_CHECK(value_of(b->create_envelopes({env})).empty());
  CAF_CHECK_EQUAL(count_where("envelope_keys", "envelope_id = $1", env.id), 0);
  // Owned by nobody yet, or by an envelope id nobody made.
  CAF_CHECK_EQUAL(code_of(a->create_envelope(make_envelope(3, 100, 1))),
                  "not_owner");
  CAF_CHECK_EQUAL(code_of(a->activate(make_envelope_id(test_day, 999, 3))),
                  "not_owner");
  // A fenced node (incarnation 0) owns nothing.
  a1->incarnation = 0;
  CAF_CHECK_EQUAL(code_of(a->activate(x.id)), "not_owner");
  CAF_CHECK_EQUAL(code_of(a->create_envelope(make_envelope(2, 100, 1))),
                  "not_owner");
  a1->incarnation = 1;
  // The owner: a create retried under another id returns the stored one,
  // and an unknown envelope is not found.
  auto created = value_of(a->create_envelope(env));
  CAF_CHECK(created.created);
  auto retry = env;
  retry.id = make_envelope_id(test_day, 998, 2);
  auto again = value_of(a->create_envelope(retry));
  CAF_CHECK(!again.created);
  CAF_CHECK_EQUAL(again.env.id, env.id);
  CAF_CHECK_EQUAL(code_of(a->activate(make_envelope_id(test_day, 997, 2))),
                  "not_found");
  CAF_CHECK_EQUAL(value_of(a->activate_many({x.id, env.id})).size(), 2u);
}

CAF_TEST(without an identity no write checks the owner rows) {
  // A database of a node without a cluster: no SET, no owner rows.
  auto store = store_for(nullptr);
  auto x = paid_envelope(*store, 7, 1000, 4);
  CAF_CHECK_EQUAL(value_of(store->cluster_set()), "");
  CAF_CHECK_EQUAL(query_int(db.verify(), "SELECT owner_epoch FROM envelopes"
                                         " WHERE id = $1", {str(x.id)}),
                  0);
  CAF_CHECK_EQUAL(code_of(store->commit_opens(
                    batch_of(x, {{"ann", 100, 1, 1764158402000}}))),
                  "ok");
  x.remaining_fen -= 100;
  x.remaining_count -= 1;
  auto w = paid_envelope(*store, 8, 500, 2);
  auto many = value_of(store->commit_many(
    {batch_of(x, {{"bob", 100, 1, 1764158402000}}),
     batch_of(w, {{"cat", 100, 1, 1764158402000}})}));
  CAF_CHECK_EQUAL(to_string(many[0].code), "none");
  CAF_CHECK_EQUAL(to_string(many[1].code), "none");
  expire_now(x.id);
  CAF_CHECK_EQUAL(value_of(store->refund(x.id, x.epoch)), 800);
  CAF_CHECK_EQUAL(count_where("opens", "envelope_id = $1", x.id), 2);
  // A stale epoch is still refused as before.
  auto stale = batch_of(w, {{"dan", 100, 1, 1764158402000}});
  value_of(store->activate(w.id));
  CAF_CHECK_EQUAL(code_of(store->commit_opens(stale)), "stale_epoch");
}

CAF_TEST(a cluster node warms up the fenced commit statements) {
  auto day = "envelopes_p" + str(test_day);
  auto plain = store_for(nullptr);
  CAF_REQUIRE_EQUAL(code_of(plain->ensure_partitions(test_day, test_day)), "ok");
  CAF_REQUIRE(plain->warm_up(test_day));
  CAF_CHECK(prepared(*plain, {"UPDATE " + day + " SET"}));
  CAF_CHECK(prepared(*plain, {"UPDATE " + day + " v"}));
  CAF_CHECK(!prepared(*plain, {"segment_owners"}));
  auto fenced = store_for(identity("a1", 1));
  CAF_REQUIRE(fenced->warm_up(test_day));
  CAF_CHECK(prepared(*fenced, {"UPDATE " + day + " SET", "segment_owners so",
                               "so.segment = " + day + ".segment"}));
  CAF_CHECK(prepared(*fenced, {"UPDATE " + day + " v", "segment_owners so",
                               "so.segment = v.segment"}));
}

// -- Planned moves: give, drain, leave -----------------------------------------

CAF_TEST(give moves a segment by compare-and-set to a live receiver) {
  auto store = store_for(nullptr);
  value_of(store->join(join_of("a1", 1, long_lease_ms)));
  value_of(store->join(join_of("b1", 2, long_lease_ms)));
  auto a1 = identity("a1", 1);
  auto a = store_for(a1);
  auto b = store_for(identity("b1", 2));
  take_now(*a, *a1, 3);
  take_now(*a, *a1, 4);
  auto x = paid_envelope(*a, 3, 1000, 4);
  auto commit = batch_of(x, {{"ann", 100, 1, 1764158402000}});
  // Refused, nothing moved: a stale owner_epoch, a wrong giver, a receiver
  // at another incarnation, a move to itself or to nobody.
  CAF_CHECK(value_of(a->give(give_request{"a1", 1, {{3, 7, "b1", 2}}})).empty());
  CAF_CHECK(value_of(a->give(give_request{"b1", 2, {{3, 1, "a1", 1}}})).empty());
  CAF_CHECK(value_of(a->give(give_request{"a1", 1, {{3, 1, "b1", 9}}})).empty());
  CAF_CHECK_EQUAL(code_of(a->give(give_request{"a1", 1, {{3, 1, "a1", 1}}})),
                  "invalid_argument");
  CAF_CHECK_EQUAL(code_of(a->give(give_request{"a1", 1, {{3, 1, "", 2}}})),
                  "invalid_argument");
  CAF_CHECK_EQUAL(owner_epoch_of(3), 1);
  CAF_CHECK_EQUAL(query(db.verify(), "SELECT owner FROM segment_owners"
                                     " WHERE segment = 3"),
                  "a1");
  // The move: segment 3 to b1 (segment 4 stays), owner_epoch + 1.
  auto moved = value_of(a->give(give_request{"a1", 1, {{3, 1, "b1", 2}}}));
  CAF_REQUIRE_EQUAL(moved.size(), 1u);
  CAF_CHECK_EQUAL(moved[0].segment, 3);
  CAF_CHECK_EQUAL(moved[0].owner, "b1");
  CAF_CHECK_EQUAL(moved[0].owner_incarnation, 2);
  CAF_CHECK_EQUAL(moved[0].owner_epoch, 2);
  CAF_CHECK_EQUAL(query(db.verify(), "SELECT owner FROM segment_owners"
                                     " WHERE segment = 4"),
                  "a1");
  // The giver's late commit is refused; the receiver activates and writes.
  auto before = state_of(x.id);
  CAF_CHECK_EQUAL(code_of(a->commit_opens(commit)), "not_owner");
  CAF_CHECK_EQUAL(state_of(x.id), before);
  auto bx = value_of(b->activate(x.id)).env;
  CAF_CHECK_EQUAL(code_of(b->commit_opens(batch_of(bx, {{"bob", 100, 1,
                                                          1764158403000}}))),
                  "ok");
  // Given twice: the second finds the owner_epoch moved on.
  CAF_CHECK(value_of(a->give(give_request{"a1", 1, {{3, 1, "b1", 2}}})).empty());
}

CAF_TEST(give needs both leases current) {
  auto store = store_for(nullptr);
  value_of(store->join(join_of("a1", 1, long_lease_ms)));
  value_of(store->join(join_of("b1", 1, short_lease_ms)));
  auto a1 = identity("a1", 1);
  auto a = store_for(a1);
  take_now(*a, *a1, 5);
  wait_expired("b1");
  CAF_CHECK(value_of(a->give(give_request{"a1", 1, {{5, 1, "b1", 1}}})).empty());
  CAF_CHECK_EQUAL(owner_epoch_of(5), 1);
}

CAF_TEST(drain marks a node and a new incarnation or undrain clears it) {
  auto store = store_for(nullptr);
  value_of(store->join(join_of("a1", 1, long_lease_ms)));
  value_of(store->join(join_of("b1", 1, long_lease_ms)));
  CAF_CHECK_EQUAL(code_of(store->drain(drain_request{"zz", true})), "not_found");
  auto view = value_of(store->drain(drain_request{"a1", true}));
  CAF_REQUIRE(find_lease(view, "a1") != nullptr);
  CAF_CHECK(find_lease(view, "a1")->draining);
  CAF_CHECK(!find_lease(view, "b1")->draining);
  auto since = find_lease(view, "a1")->since_ms;
  CAF_CHECK_GREATER(since, 0);
  // The view says so after a renewal too.
  view = value_of(store->renew(renew_request{"a1", 1, long_lease_ms}));
  CAF_CHECK(find_lease(view, "a1")->draining);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  // Serving again restarts the in-service time.
  view = value_of(store->drain(drain_request{"a1", false}));
  CAF_CHECK(!find_lease(view, "a1")->draining);
  CAF_CHECK_GREATER(find_lease(view, "a1")->since_ms, since);
  // A restart (new incarnation) clears a drain; the same incarnation's
  // retried join keeps it.
  value_of(store->drain(drain_request{"b1", true}));
  view = value_of(store->join(join_of("b1", 1, long_lease_ms)));
  CAF_CHECK(find_lease(view, "b1")->draining);
  view = value_of(store->join(join_of("b1", 2, long_lease_ms)));
  CAF_CHECK(!find_lease(view, "b1")->draining);
}

CAF_TEST(leave ends a lease at once and only at the current incarnation) {
  auto store = store_for(nullptr);
  value_of(store->join(join_of("a1", 4, long_lease_ms)));
  CAF_CHECK_EQUAL(value_of(store->leave(leave_request{"a1", 3})), false);
  CAF_CHECK_EQUAL(query(db.verify(), "SELECT lease_expires_at > now()"
                                     " FROM node_leases WHERE node = 'a1'"),
                  "t");
  CAF_CHECK_EQUAL(value_of(store->leave(leave_request{"a1", 4})), true);
  CAF_CHECK_EQUAL(query(db.verify(), "SELECT lease_expires_at <= now()"
                                     " FROM node_leases WHERE node = 'a1'"),
                  "t");
  CAF_CHECK_EQUAL(value_of(store->leave(leave_request{"a1", 4})), false);
  CAF_CHECK_EQUAL(code_of(store->renew(renew_request{"a1", 4, long_lease_ms})),
                  "not_owner");
}

CAF_TEST_FIXTURE_SCOPE_END()
