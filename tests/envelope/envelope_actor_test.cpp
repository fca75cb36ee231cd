#define CAF_SUITE envelope.envelope_actor

#include "tests/support/actor_fixture.hpp"

#include <numeric>

using namespace hb;
using namespace hb::test;

namespace {

constexpr int64_t env_id = 2027011500000001100;

int64_t sum_opens(const fake_db& db, int64_t id) {
  int64_t sum = 0;
  auto it = db.opens.find(id);
  if (it != db.opens.end())
    for (auto& o : it->second)
      sum += o.amount_fen;
  return sum;
}

// Σ opened + refunded + remaining = total, in the fake database.
void check_conserved(const fake_db& db, int64_t id) {
  auto& env = db.envelopes.at(id);
  CAF_CHECK_EQUAL(sum_opens(db, id) + env.refunded_fen + env.remaining_fen,
                  env.total_fen);
  CAF_CHECK_EQUAL(check_invariants(env, db.opens.at(id)), "");
}

// Refunded exactly once, by the actor, with the money conserved.
void check_refunded(const fake_db& db, int64_t id) {
  CAF_CHECK_EQUAL(db.refunds, 1);
  CAF_CHECK_EQUAL(db.envelopes.at(id).status, envelope_status::refunded);
  check_conserved(db, id);
}

} // namespace

// Moves the wall clock and the actors' clock on together and runs what
// became due.
struct expiry_fixture : actor_fixture {
  void pass(int64_t ms) {
    now += ms;
    advance_time(std::chrono::milliseconds(ms));
    run();
  }
};

CAF_TEST_FIXTURE_SCOPE(envelope_expiry_tests, expiry_fixture)

CAF_TEST(the expiry timer of a live envelope refunds it) {
  // Expiring within one idle period (30 s) of the activation: armed at once.
  db->add(env_id, 1000, 10, envelope_kind::random, envelope_status::paid,
          now + 20000);
  auto env = spawn_env(env_id);
  auto a = ask(env, open_atom::value, env_id, std::string{"a"}, int64_t{0});
  run();
  CAF_REQUIRE(take<open_result>(a).ok());
  pass(20000);
  check_refunded(*db, env_id);
}

CAF_TEST(a busy envelope arms its expiry timer once the expiry is near) {
  // Expiring in 100 s: no timer at first (a day-long timer would hold every
  // envelope in the clock), then the idle checks of a busy actor arm it
  // when the expiry is one idle period away.
  db->add(env_id, 1000, 10, envelope_kind::random, envelope_status::paid,
          now + 100000);
  auto env = spawn_env(env_id);
  for (int i = 0; i < 5; ++i) {  // a request every 20 s keeps it busy
    auto g = ask(env, grab_atom::value, env_id, "u" + std::to_string(i));
    run();
    CAF_REQUIRE(take<grab_result>(g).ok());
    pass(20000);
  }
  check_refunded(*db, env_id);
}

CAF_TEST(an idle envelope leaves its far expiry to the sweeper) {
  db->add(env_id, 1000, 10, envelope_kind::random, envelope_status::paid,
          now + 100000);
  auto env = spawn_env(env_id);
  auto a = ask(env, open_atom::value, env_id, std::string{"a"}, int64_t{0});
  run();
  CAF_REQUIRE(take<open_result>(a).ok());
  pass(100000);
  CAF_CHECK_EQUAL(idle_reports.size(), 1u);
  CAF_CHECK_EQUAL(db->refunds, 0);
  // The sweeper's refund request is answered as before.
  auto r = ask(env, refund_atom::value, env_id);
  run();
  CAF_CHECK(take<int64_t>(r).ok());
  check_refunded(*db, env_id);
}

CAF_TEST_FIXTURE_SCOPE_END()

// After a failed write stopped the actor: a new activation (the second)
// serves user "a"'s retry from the database, and no money was lost.
struct failover_fixture : actor_fixture {
  void check_retry_served() {
    auto env2 = spawn_env(env_id);
    auto a2 = ask(env2, open_atom::value, env_id, std::string{"a"}, int64_t{0});
    run();
    CAF_CHECK(take<open_result>(a2).ok());
    CAF_CHECK_EQUAL(db->activations, 2);
    check_conserved(*db, env_id);
  }
};

CAF_TEST_FIXTURE_SCOPE(envelope_actor_tests, failover_fixture)

CAF_TEST(group commit batches the opens queued behind a write) {
  db->add(env_id, 10000, 10);
  db->hold_commits = true;
  auto env = spawn_env(env_id);
  std::vector<decltype(ask(env, open_atom::value, env_id, std::string{}, int64_t{0}))> hs;
  for (int i = 0; i < 5; ++i)
    hs.push_back(ask(env, open_atom::value, env_id, "u" + std::to_string(i), int64_t{0}));
  run();
  // The first open went out alone; the other four wait behind it.
  CAF_REQUIRE_EQUAL(db->batch_sizes.size(), 1u);
  CAF_CHECK_EQUAL(db->batch_sizes[0], 1u);
  CAF_CHECK_EQUAL(db->opens[env_id].size(), 0u);
  release_commits();
  CAF_REQUIRE_EQUAL(db->batch_sizes.size(), 2u);
  CAF_CHECK_EQUAL(db->batch_sizes[1], 4u);
  release_commits();
  CAF_CHECK_EQUAL(db->commits_applied, 2);
  CAF_CHECK_EQUAL(db->opens[env_id].size(), 5u);
  int64_t replied = 0;
  for (auto& h : hs) {
    auto r = take<open_result>(h);
    CAF_REQUIRE(r.ok());
    CAF_CHECK(r->first_time);
    CAF_CHECK_GREATER_OR_EQUAL(r->amount_fen, 1);
    replied += r->amount_fen;
  }
  // Every reply is exactly what was committed.
  CAF_CHECK_EQUAL(replied, sum_opens(*db, env_id));
  check_conserved(*db, env_id);
}

CAF_TEST(a handoff commits the queued opens then stops and refuses new ones) {
  db->add(env_id, 10000, 10);
  db->hold_commits = true;
  auto env = spawn_env(env_id);
  self->monitor(env);
  std::vector<decltype(ask(env, open_atom::value, env_id, std::string{}, int64_t{0}))> hs;
  for (int i = 0; i < 4; ++i)
    hs.push_back(ask(env, open_atom::value, env_id, "u" + std::to_string(i), int64_t{0}));
  run();
  CAF_REQUIRE_EQUAL(db->batch_sizes.size(), 1u);  // u0 in flight, 3 queued
  self->send(env, handoff_atom::value);
  run();
  // A new open after the handoff is refused, retryable, and never written.
  auto late = ask(env, open_atom::value, env_id, std::string{"late"}, int64_t{0});
  run();
  release_commits();  // u0's write; then the queue goes out as one batch
  CAF_REQUIRE_EQUAL(db->batch_sizes.size(), 2u);
  CAF_CHECK_EQUAL(db->batch_sizes[1], 3u);
  release_commits();
  for (auto& h : hs) {
    auto r = take<open_result>(h);
    CAF_REQUIRE(r.ok());  // every queued open answered with its share
    CAF_CHECK(r->first_time);
  }
  auto refused = take<open_result>(late);
  CAF_REQUIRE(!refused.ok());
  CAF_CHECK_EQUAL(refused.error().code, errc::unavailable);
  CAF_CHECK_EQUAL(db->opens[env_id].size(), 4u);
  // And it stopped.
  bool down = false;
  self->receive([&](caf::down_msg& msg) { down = msg.source == env.address(); },
                caf::after(std::chrono::seconds(0)) >> [] {});
  CAF_CHECK(down);
  check_conserved(*db, env_id);
}

CAF_TEST(a second open by the same user returns the first amount) {
  db->add(env_id, 5000, 5);
  auto env = spawn_env(env_id);
  auto h1 = ask(env, open_atom::value, env_id, std::string{"alice"}, int64_t{0});
  run();
  auto first = take<open_result>(h1);
  CAF_REQUIRE(first.ok());
  auto h2 = ask(env, open_atom::value, env_id, std::string{"alice"}, int64_t{0});
  run();
  auto second = take<open_result>(h2);
  CAF_REQUIRE(second.ok());
  CAF_CHECK_EQUAL(second->amount_fen, first->amount_fen);
  CAF_CHECK_EQUAL(second->seq, first->seq);
  CAF_CHECK(!second->first_time);
  CAF_CHECK_EQUAL(db->opens[env_id].size(), 1u);
  // A grab now says "already opened" with the amount.
  auto g = ask(env, grab_atom::value, env_id, std::string{"alice"});
  run();
  auto gr = take<grab_result>(g);
  CAF_REQUIRE(gr.ok());
  CAF_CHECK_EQUAL(static_cast<int>(gr->outcome),
                  static_cast<int>(grab_outcome::already_opened));
  CAF_CHECK_EQUAL(gr->amount_fen, first->amount_fen);
}

CAF_TEST(a duplicate open while the first is queued shares its reply) {
  db->add(env_id, 5000, 5);
  db->hold_commits = true;
  auto env = spawn_env(env_id);
  auto h0 = ask(env, open_atom::value, env_id, std::string{"zed"}, int64_t{0});
  auto h1 = ask(env, open_atom::value, env_id, std::string{"bob"}, int64_t{0});
  auto h2 = ask(env, open_atom::value, env_id, std::string{"bob"}, int64_t{0});
  run();
  release_commits();
  release_commits();
  auto r1 = take<open_result>(h1);
  auto r2 = take<open_result>(h2);
  CAF_REQUIRE(r1.ok() && r2.ok());
  CAF_CHECK_EQUAL(r1->amount_fen, r2->amount_fen);
  CAF_CHECK(r1->first_time);
  CAF_CHECK(!r2->first_time);
  CAF_CHECK_EQUAL(db->opens[env_id].size(), 2u);
  take<open_result>(h0);
}

CAF_TEST(an exhausted envelope answers exhausted to open and grab) {
  db->add(env_id, 200, 2);
  auto env = spawn_env(env_id);
  auto a = ask(env, open_atom::value, env_id, std::string{"a"}, int64_t{0});
  auto b = ask(env, open_atom::value, env_id, std::string{"b"}, int64_t{0});
  run();
  CAF_REQUIRE(take<open_result>(a).ok());
  CAF_REQUIRE(take<open_result>(b).ok());
  auto c = ask(env, open_atom::value, env_id, std::string{"c"}, int64_t{0});
  auto g = ask(env, grab_atom::value, env_id, std::string{"c"});
  run();
  auto rc = take<open_result>(c);
  CAF_REQUIRE(!rc.ok());
  CAF_CHECK_EQUAL(rc.error().code, errc::exhausted);
  auto rg = take<grab_result>(g);
  CAF_REQUIRE(rg.ok());
  CAF_CHECK_EQUAL(static_cast<int>(rg->outcome),
                  static_cast<int>(grab_outcome::exhausted));
  CAF_CHECK_EQUAL(db->envelopes[env_id].status, envelope_status::exhausted);
  CAF_CHECK_EQUAL(db->envelopes[env_id].remaining_fen, 0);
  check_conserved(*db, env_id);
}

CAF_TEST(an expired envelope refuses opens) {
  db->add(env_id, 1000, 10, envelope_kind::random, envelope_status::paid,
          now + 1000);
  auto env = spawn_env(env_id);
  auto a = ask(env, open_atom::value, env_id, std::string{"early"}, int64_t{0});
  run();
  CAF_REQUIRE(take<open_result>(a).ok());
  now += 1000;  // the clock reaches the expiry
  auto b = ask(env, open_atom::value, env_id, std::string{"late"}, int64_t{0});
  auto g = ask(env, grab_atom::value, env_id, std::string{"late"});
  run();
  auto rb = take<open_result>(b);
  CAF_REQUIRE(!rb.ok());
  CAF_CHECK_EQUAL(rb.error().code, errc::expired);
  auto rg = take<grab_result>(g);
  CAF_CHECK_EQUAL(static_cast<int>(rg->outcome),
                  static_cast<int>(grab_outcome::expired));
  CAF_CHECK_EQUAL(db->opens[env_id].size(), 1u);
  // The late open started the refund of the remainder, exactly once.
  CAF_CHECK_EQUAL(db->refunds, 1);
  CAF_CHECK_EQUAL(db->envelopes[env_id].status, envelope_status::refunded);
  CAF_CHECK_EQUAL(db->envelopes[env_id].refunded_fen,
                  1000 - sum_opens(*db, env_id));
  check_conserved(*db, env_id);
}

CAF_TEST(the sweeper refund is idempotent and an open never races it) {
  db->add(env_id, 1000, 10, envelope_kind::random, envelope_status::paid,
          now + 5000);
  db->hold_commits = true;
  auto env = spawn_env(env_id);
  auto a = ask(env, open_atom::value, env_id, std::string{"a"}, int64_t{0});
  auto b = ask(env, open_atom::value, env_id, std::string{"b"}, int64_t{0});
  run();  // a is in flight, b queued behind it
  // Not due yet: the sweeper's request refunds nothing.
  auto early = ask(env, refund_atom::value, env_id);
  run();
  CAF_CHECK_EQUAL(*take<int64_t>(early), 0);
  now += 5000;  // expiry passes while a's write is in flight
  auto r1 = ask(env, refund_atom::value, env_id);
  run();
  CAF_CHECK_EQUAL(db->refunds, 0);  // waits for the write in flight
  release_commits();
  // a committed before expiry; b lost the race and gets EXPIRED; the refund
  // follows the write.
  CAF_CHECK(take<open_result>(a).ok());
  auto rb = take<open_result>(b);
  CAF_REQUIRE(!rb.ok());
  CAF_CHECK_EQUAL(rb.error().code, errc::expired);
  auto refunded = take<int64_t>(r1);
  CAF_REQUIRE(refunded.ok());
  CAF_CHECK_EQUAL(*refunded, 1000 - sum_opens(*db, env_id));
  auto r2 = ask(env, refund_atom::value, env_id);
  run();
  CAF_CHECK_EQUAL(*take<int64_t>(r2), *refunded);
  CAF_CHECK_EQUAL(db->refunds, 1);
  CAF_CHECK_EQUAL(db->opens[env_id].size(), 1u);
  check_conserved(*db, env_id);
}

CAF_TEST(an unpaid envelope refuses opens until it is paid) {
  db->add(env_id, 1000, 10, envelope_kind::equal, envelope_status::created);
  auto env = spawn_env(env_id);
  auto a = ask(env, open_atom::value, env_id, std::string{"u"}, int64_t{0});
  auto g = ask(env, grab_atom::value, env_id, std::string{"u"});
  run();
  auto ra = take<open_result>(a);
  CAF_REQUIRE(!ra.ok());
  CAF_CHECK_EQUAL(ra.error().code, errc::not_paid);
  CAF_CHECK_EQUAL(static_cast<int>(take<grab_result>(g)->outcome),
                  static_cast<int>(grab_outcome::not_paid));
  auto p = ask(env, pay_atom::value, env_id, std::string{"txn-1"}, false);
  run();
  auto rp = take<envelope>(p);
  CAF_REQUIRE(rp.ok());
  CAF_CHECK_EQUAL(rp->status, envelope_status::paid);
  CAF_CHECK_EQUAL(rp->expires_at_ms, now + cfg.expiry_ms);
  // Paying again with the same txn is idempotent; another txn is refused.
  auto p2 = ask(env, pay_atom::value, env_id, std::string{"txn-1"}, false);
  auto p3 = ask(env, pay_atom::value, env_id, std::string{"txn-2"}, false);
  run();
  CAF_CHECK(take<envelope>(p2).ok());
  auto r3 = take<envelope>(p3);
  CAF_REQUIRE(!r3.ok());
  CAF_CHECK_EQUAL(r3.error().code, errc::payment_mismatch);
  auto b = ask(env, open_atom::value, env_id, std::string{"u"}, int64_t{0});
  run();
  auto rb = take<open_result>(b);
  CAF_REQUIRE(rb.ok());
  CAF_CHECK_EQUAL(rb->amount_fen, 100);  // equal split: 1000 / 10
}

CAF_TEST(past the queue limit opens get a retryable busy) {
  cfg.queue_max = 2;
  db->add(env_id, 10000, 10);
  db->hold_commits = true;
  auto env = spawn_env(env_id);
  std::vector<decltype(ask(env, open_atom::value, env_id, std::string{}, int64_t{0}))> hs;
  for (int i = 0; i < 5; ++i)
    hs.push_back(ask(env, open_atom::value, env_id, "u" + std::to_string(i), int64_t{0}));
  run();
  // u0 is in flight, u1 and u2 fill the queue, u3 and u4 are refused.
  for (int i = 3; i < 5; ++i) {
    auto r = take<open_result>(hs[i]);
    CAF_REQUIRE(!r.ok());
    CAF_CHECK_EQUAL(r.error().code, errc::busy);
    CAF_CHECK(retryable(r.error().code));
  }
  release_commits();
  release_commits();
  for (int i = 0; i < 3; ++i)
    CAF_CHECK(take<open_result>(hs[i]).ok());
  CAF_CHECK_EQUAL(db->opens[env_id].size(), 3u);
  check_conserved(*db, env_id);
}

CAF_TEST(an open still queued after its deadline is dropped not executed) {
  db->add(env_id, 3000, 3);
  db->hold_commits = true;
  auto env = spawn_env(env_id);
  auto a = ask(env, open_atom::value, env_id, std::string{"a"}, int64_t{0});
  auto b = ask(env, open_atom::value, env_id, std::string{"b"}, now + 100);
  auto c = ask(env, open_atom::value, env_id, std::string{"c"}, now + 100000);
  run();  // a is in flight; b and c wait behind it
  now += 200;  // b's client gave up
  release_commits();
  release_commits();
  CAF_CHECK(take<open_result>(a).ok());
  auto rb = take<open_result>(b);
  CAF_REQUIRE(!rb.ok());
  CAF_CHECK_EQUAL(rb.error().code, errc::deadline_exceeded);
  CAF_CHECK(retryable(rb.error().code));
  CAF_CHECK(take<open_result>(c).ok());
  // b was never executed: only a and c hold shares.
  CAF_CHECK_EQUAL(db->opens[env_id].size(), 2u);
  for (auto& o : db->opens[env_id])
    CAF_CHECK_NOT_EQUAL(o.user, "b");
  check_conserved(*db, env_id);
}

CAF_TEST(a failed write replies a retryable error and loses no money) {
  db->add(env_id, 3000, 3);
  db->hold_commits = true;
  auto env = spawn_env(env_id);
  auto a = ask(env, open_atom::value, env_id, std::string{"a"}, int64_t{0});
  auto b = ask(env, open_atom::value, env_id, std::string{"b"}, int64_t{0});
  run();
  db->fail_next_commit = true;
  release_commits();
  for (auto* h : {&a, &b}) {
    auto r = take<open_result>(*h);
    CAF_REQUIRE(!r.ok());
    CAF_CHECK(retryable(r.error().code));
  }
  // The failure really happened and changed nothing.
  CAF_CHECK_EQUAL(db->commits_applied, 0);
  CAF_CHECK_EQUAL(db->opens[env_id].size(), 0u);
  CAF_CHECK_EQUAL(db->envelopes[env_id].remaining_fen, 3000);
  // The actor stopped; a new activation serves the retry from the database.
  db->hold_commits = false;
  check_retry_served();
}

// A commit batcher that takes writes and never answers them, as one that
// died holding them would (CAF 0.17 sends no error for a dropped promise).
commit_sink::behavior_type silent_committer(
  commit_sink::stateful_pointer<std::vector<caf::response_promise>> self) {
  return {
    [=](db_commit_atom, open_batch&) -> caf::result<caf::ok_atom> {
      self->state.push_back(self->make_response_promise());
      return caf::delegated<caf::ok_atom>{};
    },
  };
}

CAF_TEST(a write the commit batcher never answers is noticed by the idle check) {
  // The write carries no CAF timeout; the idle check sees it overdue once it
  // has waited longer than the store timeout (30 s) and fails it over.
  cfg.idle_ms = 10000;
  auto silent = sys.spawn(silent_committer);
  cfg.committer = silent;
  db->add(env_id, 3000, 3);
  auto env = spawn_env(env_id);
  auto a = ask(env, open_atom::value, env_id, std::string{"a"}, int64_t{0});
  run();
  for (int i = 0; i < 3; ++i) {
    advance_time(std::chrono::milliseconds(10000));
    run();
  }
  // 30 s: not yet overdue, nobody answered.
  CAF_CHECK(self->mailbox().empty());
  advance_time(std::chrono::milliseconds(10000));
  run();
  auto r = take<open_result>(a);
  CAF_REQUIRE(!r.ok());
  CAF_CHECK(retryable(r.error().code));
  // Nothing was written; a retry on a new activation gets its share.
  CAF_CHECK_EQUAL(db->commits_applied, 0);
  CAF_CHECK_EQUAL(db->envelopes[env_id].remaining_fen, 3000);
  cfg.committer = nullptr;
  check_retry_served();
  caf::anon_send_exit(silent, caf::exit_reason::kill);
  run();
}

CAF_TEST(a stale activation cannot commit after a newer one took over) {
  db->add(env_id, 3000, 3);
  auto old_env = spawn_env(env_id);
  auto new_env = spawn_env(env_id);  // bumps the epoch again
  auto a = ask(old_env, open_atom::value, env_id, std::string{"a"}, int64_t{0});
  run();
  auto ra = take<open_result>(a);
  CAF_REQUIRE(!ra.ok());
  CAF_CHECK_EQUAL(ra.error().code, errc::stale_epoch);
  CAF_CHECK_EQUAL(db->opens[env_id].size(), 0u);
  auto b = ask(new_env, open_atom::value, env_id, std::string{"a"}, int64_t{0});
  run();
  CAF_CHECK(take<open_result>(b).ok());
  check_conserved(*db, env_id);
}

CAF_TEST(an unknown envelope answers not found) {
  auto env = spawn_env(env_id + 1);
  auto a = ask(env, open_atom::value, env_id + 1, std::string{"a"}, int64_t{0});
  auto g = ask(env, get_atom::value, env_id + 1);
  run();
  auto ra = take<open_result>(a);
  CAF_REQUIRE(!ra.ok());
  CAF_CHECK_EQUAL(ra.error().code, errc::not_found);
  auto rg = take<envelope_detail>(g);
  CAF_REQUIRE(!rg.ok());
  CAF_CHECK_EQUAL(rg.error().code, errc::not_found);
}

CAF_TEST(a hot envelope keeps money conserved over many batches) {
  cfg.share_max_fen = 1000000;
  db->add(env_id, 1000000, 1000);
  db->hold_commits = true;
  auto env = spawn_env(env_id);
  std::vector<decltype(ask(env, open_atom::value, env_id, std::string{}, int64_t{0}))> hs;
  for (int i = 0; i < 1500; ++i)
    hs.push_back(ask(env, open_atom::value, env_id, "u" + std::to_string(i), int64_t{0}));
  run();
  while (db->commits_applied < static_cast<int>(db->batch_sizes.size()))
    release_commits();
  int ok = 0;
  int refused = 0;
  for (auto& h : hs) {
    auto r = take<open_result>(h);
    if (r.ok())
      ++ok;
    else if (r.error().code == errc::exhausted
             || r.error().code == errc::shares_pending)
      ++refused;  // 手慢了, or (while the last shares were in flight) retry
  }
  CAF_CHECK_EQUAL(ok, 1000);
  CAF_CHECK_EQUAL(refused, 500);
  // Once every share is committed, a late user hears 手慢了 for sure.
  auto late = ask(env, open_atom::value, env_id, std::string{"late"}, int64_t{0});
  run();
  auto r = take<open_result>(late);
  CAF_REQUIRE(!r.ok());
  CAF_CHECK_EQUAL(r.error().code, errc::exhausted);
  // Far fewer writes than opens: that is the point of group commit.
  CAF_CHECK_LESS(db->batch_sizes.size(), 10u);
  CAF_CHECK_EQUAL(db->envelopes[env_id].remaining_fen, 0);
  check_conserved(*db, env_id);
}

CAF_TEST(an idle envelope reports to the registry) {
  cfg.idle_ms = 1000;
  db->add(env_id, 1000, 10);
  auto env = spawn_env(env_id);
  auto a = ask(env, open_atom::value, env_id, std::string{"a"}, int64_t{0});
  run();
  take<open_result>(a);
  CAF_CHECK(idle_reports.empty());
  advance_time(std::chrono::milliseconds(1000));
  run();
  advance_time(std::chrono::milliseconds(1000));
  run();
  CAF_REQUIRE(!idle_reports.empty());
  CAF_CHECK_EQUAL(idle_reports.back().first, env_id);
  CAF_CHECK_EQUAL(idle_reports.back().second, 1u);
}

CAF_TEST_FIXTURE_SCOPE_END()
