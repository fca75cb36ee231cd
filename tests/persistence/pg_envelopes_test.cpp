// Integration tests of an envelope's row in pg_store (create, activate,
// load) against a real PostgreSQL (see pg_connection_test.cpp for the setup).
#define CAF_SUITE persistence.pg_envelopes
#include "caf/test/unit_test.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "tests/persistence/pg_store_fixture.hpp"

using namespace hb;
using namespace hb::persistence;
using namespace hb::persistence::test_support;

CAF_TEST_FIXTURE_SCOPE(pg_envelopes_tests, store_fixture)

CAF_TEST(create_envelope is idempotent per sender and key) {
  auto env = make_envelope(1000, 10);
  auto first = store->create_envelope(env);
  CAF_REQUIRE_EQUAL(code_of(first), "ok");
  CAF_CHECK(first->created);
  CAF_CHECK_EQUAL(first->env.id, env.id);
  CAF_CHECK(first->env.status == envelope_status::created);
  CAF_CHECK_EQUAL(first->env.remaining_fen, 1000);
  CAF_CHECK_EQUAL(first->env.remaining_count, 10);
  CAF_CHECK_EQUAL(first->env.epoch, 0);
  CAF_CHECK_EQUAL(first->env.created_at_ms, env.created_at_ms);
  CAF_CHECK_EQUAL(first->env.greeting, "恭喜发财");
  CAF_CHECK_EQUAL(first->env.payment_txn, "");
  CAF_CHECK_EQUAL(first->env.paid_at_ms, 0);
  CAF_CHECK_EQUAL(query_int(db.verify(),
                            "SELECT segment FROM envelopes WHERE id = $1",
                            {std::to_string(env.id)}),
                  env.id % 1000);
  // A retry, even one that allocated a fresh id, returns the stored envelope.
  auto retry = env;
  retry.id = make_envelope_id(test_day, 99999999, 1);
  auto second = store->create_envelope(retry);
  CAF_REQUIRE_EQUAL(code_of(second), "ok");
  CAF_CHECK(!second->created);
  CAF_CHECK_EQUAL(second->env.id, env.id);
  CAF_CHECK_EQUAL(query_int(db.verify(),
                            "SELECT count(*) FROM envelopes WHERE id = $1",
                            {std::to_string(retry.id)}),
                  0);
  // The same id and key again (a retry after a lost reply) is also a retry.
  CAF_CHECK(!store->create_envelope(env)->created);
  auto other_total = env;
  other_total.total_fen = 2000;
  CAF_CHECK_EQUAL(code_of(store->create_envelope(other_total)), "conflict");
  auto other_group = env;
  other_group.group = "group-2";
  CAF_CHECK_EQUAL(code_of(store->create_envelope(other_group)), "conflict");
  auto other_kind = env;
  other_kind.kind = envelope_kind::equal;
  CAF_CHECK_EQUAL(code_of(store->create_envelope(other_kind)), "conflict");
  // The key belongs to the sender: another sender may use it.
  auto other_sender = make_envelope(1000, 10);
  other_sender.idempotency_key = env.idempotency_key;
  CAF_CHECK(store->create_envelope(other_sender)->created);
}

CAF_TEST(create_envelopes inserts each new envelope as create_envelope does) {
  auto kept = make_envelope(500, 5);
  CAF_REQUIRE(store->create_envelope(kept)->created);
  auto a = make_envelope(1000, 10);
  a.greeting = "say \"hi\", {a,b} \\ NULL 恭喜";
  auto b = make_envelope(2000, 4);
  b.kind = envelope_kind::equal;
  auto again = make_envelope(500, 5);  // a retry of `kept` with a fresh id
  again.sender = kept.sender;
  again.idempotency_key = kept.idempotency_key;
  auto no_id = make_envelope(300, 3);
  no_id.id = 0;
  auto made = store->create_envelopes({a, again, b, no_id});
  CAF_REQUIRE_EQUAL(code_of(made), "ok");
  CAF_REQUIRE_EQUAL(made->size(), 2u);
  std::map<int64_t, envelope> by_id;
  for (auto& e : *made)
    by_id[e.id] = e;
  for (auto* want : {&a, &b}) {
    CAF_REQUIRE_EQUAL(by_id.count(want->id), 1u);
    auto& got = by_id[want->id];
    // As stored, and as create_envelope reads it back.
    auto loaded = value_of(store->load(want->id)).env;
    for (auto* e : {&got, &loaded}) {
      CAF_CHECK(e->status == envelope_status::created);
      CAF_CHECK_EQUAL(e->sender, want->sender);
      CAF_CHECK_EQUAL(e->group, want->group);
      CAF_CHECK_EQUAL(e->greeting, want->greeting);
      CAF_CHECK_EQUAL(e->idempotency_key, want->idempotency_key);
      CAF_CHECK(e->kind == want->kind);
      CAF_CHECK_EQUAL(e->total_fen, want->total_fen);
      CAF_CHECK_EQUAL(e->count, want->count);
      CAF_CHECK_EQUAL(e->remaining_fen, want->total_fen);
      CAF_CHECK_EQUAL(e->remaining_count, want->count);
      CAF_CHECK_EQUAL(e->created_at_ms, want->created_at_ms);
      CAF_CHECK_EQUAL(e->epoch, 0);
    }
    CAF_CHECK_EQUAL(query_int(db.verify(),
                              "SELECT segment FROM envelopes WHERE id = $1",
                              {std::to_string(want->id)}),
                    want->id % 1000);
    // Its key is taken: alone, the same create finds it.
    auto retry = store->create_envelope(*want);
    CAF_REQUIRE_EQUAL(code_of(retry), "ok");
    CAF_CHECK(!retry->created);
  }
  // The retry was left out; alone it gets the stored envelope.
  CAF_CHECK_EQUAL(query_int(db.verify(),
                            "SELECT count(*) FROM envelopes WHERE id = $1",
                            {std::to_string(again.id)}),
                  0);
  auto alone = store->create_envelope(again);
  CAF_REQUIRE_EQUAL(code_of(alone), "ok");
  CAF_CHECK(!alone->created);
  CAF_CHECK_EQUAL(alone->env.id, kept.id);
  // A day without partitions fails the whole statement: nothing is stored,
  // and alone the create makes the day's partitions and succeeds.
  auto future = make_envelope(700, 7, 20291111);
  auto today = make_envelope(800, 8);
  auto failed = store->create_envelopes({today, future});
  CAF_CHECK_NOT_EQUAL(code_of(failed), "ok");
  CAF_CHECK_EQUAL(query_int(db.verify(),
                            "SELECT count(*) FROM envelope_keys"
                            " WHERE envelope_id = ANY($1::bigint[])",
                            {"{" + std::to_string(today.id) + ","
                             + std::to_string(future.id) + "}"}),
                  0);
  CAF_CHECK(store->create_envelope(future)->created);
  CAF_CHECK(store->create_envelope(today)->created);
}

CAF_TEST(activate bumps the epoch and returns the opens ordered by seq) {
  auto snap = paid_envelope(1000, 5);
  auto id = snap.env.id;
  CAF_CHECK_EQUAL(snap.env.epoch, 1);
  // Over two batches, with seq order unlike the primary key's user order.
  auto b1 = batch_of(snap.env, 900, {{"u2", 60, 1, 1764158402000},
                                     {"u1", 40, 2, 1764158402001}});
  CAF_REQUIRE_EQUAL(code_of(store->commit_opens(b1)), "ok");
  auto again = store->activate(id);
  CAF_REQUIRE_EQUAL(code_of(again), "ok");
  CAF_CHECK_EQUAL(again->env.epoch, 2);
  CAF_CHECK_EQUAL(again->env.remaining_count, 3);
  auto b2 = batch_of(again->env, 870, {{"u3", 30, 3, 1764158403000}});
  CAF_REQUIRE_EQUAL(code_of(store->commit_opens(b2)), "ok");
  auto third = store->activate(id);
  CAF_REQUIRE_EQUAL(code_of(third), "ok");
  CAF_CHECK_EQUAL(third->env.epoch, 3);
  CAF_REQUIRE_EQUAL(third->opens.size(), 3u);
  for (int32_t i = 0; i < 3; ++i)
    CAF_CHECK_EQUAL(third->opens[i].seq, i + 1);
  CAF_CHECK_EQUAL(third->opens[0].user, "u2");
  CAF_CHECK_EQUAL(third->opens[1].user, "u1");
  CAF_CHECK_EQUAL(third->opens[1].opened_at_ms, 1764158402001);
  CAF_CHECK_EQUAL(third->opens[2].user, "u3");
  CAF_CHECK_EQUAL(third->env.remaining_fen, 870);
  CAF_CHECK_EQUAL(check_invariants(third->env, third->opens), "");
  // load reads without bumping.
  auto loaded = store->load(id);
  CAF_REQUIRE_EQUAL(code_of(loaded), "ok");
  CAF_CHECK_EQUAL(loaded->env.epoch, 3);
  CAF_CHECK_EQUAL(loaded->opens.size(), 3u);
  CAF_CHECK_EQUAL(code_of(store->activate(id + 1000)), "not_found");
  CAF_CHECK_EQUAL(code_of(store->load(id + 1000)), "not_found");
}

CAF_TEST(activation waits for an in-flight write and sees all of it) {
  auto snap = paid_envelope(1000, 5);
  auto old_owner = begin_old_owner_write(snap.env);
  auto activated = activate_behind(
    old_owner, [&] { return store->activate(snap.env.id); });
  CAF_REQUIRE_EQUAL(code_of(activated), "ok");
  CAF_CHECK_EQUAL(activated->env.epoch, snap.env.epoch + 1);
  CAF_CHECK_EQUAL(activated->env.remaining_fen, 900);
  CAF_REQUIRE_EQUAL(activated->opens.size(), 1u);
  CAF_CHECK_EQUAL(activated->opens[0].user, "in-flight");
  CAF_CHECK_EQUAL(check_invariants(activated->env, activated->opens), "");
}

// Batched activation reads each envelope exactly as activate does, bumps
// each epoch once, leaves out what it did not bump, and fences the old
// owners of all of them.
CAF_TEST(activate_many bumps and reads many envelopes as activate does) {
  auto a = paid_envelope(1000, 5);
  auto b = paid_envelope(500, 2);
  auto c = paid_envelope(300, 3);
  auto ba = batch_of(a.env, 900, {{"u2", 60, 1, 1764158402000},
                                  {"u1", 40, 2, 1764158402001}});
  CAF_REQUIRE_EQUAL(code_of(store->commit_opens(ba)), "ok");
  auto bb = batch_of(b.env, 0, {{"v1", 200, 1, 1764158402002},
                                {"v2", 300, 2, 1764158402003}});
  CAF_REQUIRE_EQUAL(code_of(store->commit_opens(bb)), "ok");
  auto unknown = a.env.id + 990000;  // a well-formed id nobody created
  auto many = store->activate_many({c.env.id, unknown, a.env.id, b.env.id});
  CAF_REQUIRE_EQUAL(code_of(many), "ok");
  CAF_REQUIRE_EQUAL(many->size(), 3u);
  // In id order, each as load now reads it (load does not bump).
  std::vector<int64_t> want{a.env.id, b.env.id, c.env.id};
  std::sort(want.begin(), want.end());
  for (size_t i = 0; i < want.size(); ++i) {
    auto& got = (*many)[i];
    CAF_CHECK_EQUAL(got.env.id, want[i]);
    CAF_CHECK(!got.archived);
    auto loaded = store->load(want[i]);
    CAF_REQUIRE_EQUAL(code_of(loaded), "ok");
    CAF_CHECK_EQUAL(got.env.epoch, loaded->env.epoch);
    CAF_CHECK_EQUAL(got.env.epoch, 2);  // paid_envelope activated once
    CAF_CHECK_EQUAL(got.env.remaining_fen, loaded->env.remaining_fen);
    CAF_CHECK_EQUAL(got.env.remaining_count, loaded->env.remaining_count);
    CAF_CHECK(got.env.status == loaded->env.status);
    CAF_CHECK_EQUAL(got.env.sender, loaded->env.sender);
    CAF_CHECK_EQUAL(got.env.greeting, loaded->env.greeting);
    CAF_CHECK_EQUAL(got.env.expires_at_ms, loaded->env.expires_at_ms);
    CAF_REQUIRE_EQUAL(got.opens.size(), loaded->opens.size());
    for (size_t k = 0; k < got.opens.size(); ++k) {
      CAF_CHECK_EQUAL(got.opens[k].user, loaded->opens[k].user);
      CAF_CHECK_EQUAL(got.opens[k].seq, loaded->opens[k].seq);
      CAF_CHECK_EQUAL(got.opens[k].amount_fen, loaded->opens[k].amount_fen);
      CAF_CHECK_EQUAL(got.opens[k].opened_at_ms, loaded->opens[k].opened_at_ms);
    }
    CAF_CHECK_EQUAL(check_invariants(got.env, got.opens), "");
  }
  auto& got_a = *std::find_if(many->begin(), many->end(), [&](auto& x) {
    return x.env.id == a.env.id;
  });
  CAF_REQUIRE_EQUAL(got_a.opens.size(), 2u);
  CAF_CHECK_EQUAL(got_a.opens[0].user, "u2");  // by seq, not by user
  CAF_CHECK_EQUAL(got_a.opens[1].user, "u1");
  // The old owners are fenced; the new ones write.
  // (The old owner's batch continues the stored state; only its epoch is
  // old.)
  auto stale = batch_of(a.env, 800, {{"old", 100, 3, 1764158403000}});
  stale.remaining_count = 2;
  CAF_CHECK_EQUAL(code_of(store->commit_opens(stale)), "stale_epoch");
  auto fresh = batch_of(got_a.env, 800, {{"new", 100, 3, 1764158403000}});
  CAF_CHECK_EQUAL(code_of(store->commit_opens(fresh)), "ok");
  // Nothing to bump: an empty answer, not an error.
  auto none = store->activate_many({unknown});
  CAF_REQUIRE_EQUAL(code_of(none), "ok");
  CAF_CHECK(none->empty());
}

// Like activate, each bump of a batch waits for an old owner's write in
// flight, and the batch then reads that write.
CAF_TEST(activate_many waits for an in-flight write and sees all of it) {
  auto a = paid_envelope(1000, 5);
  auto b = paid_envelope(800, 4);
  auto old_owner = begin_old_owner_write(b.env);
  auto activated = activate_behind(
    old_owner, [&] { return store->activate_many({a.env.id, b.env.id}); });
  CAF_REQUIRE_EQUAL(code_of(activated), "ok");
  CAF_REQUIRE_EQUAL(activated->size(), 2u);
  for (auto& snap : *activated) {
    CAF_CHECK_EQUAL(snap.env.epoch, 2);
    if (snap.env.id != b.env.id)
      continue;
    CAF_CHECK_EQUAL(snap.env.remaining_fen, 700);
    CAF_REQUIRE_EQUAL(snap.opens.size(), 1u);
    CAF_CHECK_EQUAL(snap.opens[0].user, "in-flight");
    CAF_CHECK_EQUAL(check_invariants(snap.env, snap.opens), "");
  }
}

CAF_TEST(user ids with special characters round-trip exactly) {
  std::string long_id;
  while (long_id.size() + 3 <= 255)
    long_id += "红";
  long_id += "x";  // 256 bytes
  std::vector<std::string> users = {
    "a\"b",   "c,d",         "back\\slash", "{brace}",  "sp ace",
    "红包用户", "NULL",        "",            "\\\"}{,\"", "tab\tnew\nline",
    "'quote'", "trailing\\", long_id,
  };
  auto count = static_cast<int32_t>(users.size());
  auto snap = paid_envelope(10000, count);
  std::vector<open_record> opens;
  int64_t sum = 0;
  for (int32_t i = 0; i < count; ++i) {
    opens.push_back({users[i], 100 + i, i + 1, 1764158402000 + i});
    sum += 100 + i;
  }
  auto b = batch_of(snap.env, 10000 - sum, opens);
  CAF_REQUIRE(b.status == envelope_status::exhausted);
  // Exhausting needs the remainder paid out: give it to the last share.
  b.opens.back().amount_fen += b.remaining_fen;
  b.remaining_fen = 0;
  CAF_REQUIRE_EQUAL(code_of(store->commit_opens(b)), "ok");
  auto loaded = store->load(snap.env.id);
  CAF_REQUIRE_EQUAL(code_of(loaded), "ok");
  CAF_REQUIRE_EQUAL(loaded->opens.size(), users.size());
  for (size_t i = 0; i < users.size(); ++i) {
    CAF_CHECK_EQUAL(loaded->opens[i].user, users[i]);
    CAF_CHECK_EQUAL(loaded->opens[i].amount_fen, b.opens[i].amount_fen);
    CAF_CHECK_EQUAL(query_int(db.verify(),
                              "SELECT count(*) FROM relay_backlog"
                              " WHERE envelope_id = $1 AND user_id = $2",
                              {std::to_string(snap.env.id), users[i]}),
                    1);
  }
  CAF_CHECK_EQUAL(check_invariants(loaded->env, loaded->opens), "");
  // A NUL byte cannot be stored; it is refused before reaching the server.
  auto more = paid_envelope(100, 2);
  auto nul = batch_of(more.env, 50, {{std::string("a\0b", 3), 50, 1, 0}});
  CAF_CHECK_EQUAL(code_of(store->commit_opens(nul)), "invalid_argument");
  CAF_CHECK_EQUAL(count_rows("opens", more.env.id), 0);
}

CAF_TEST_FIXTURE_SCOPE_END()
