#define CAF_SUITE load.engine

#include "caf/test/unit_test.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "load/audit.hpp"
#include "load/engine.hpp"
#include "load/scenario.hpp"
#include "load/stats.hpp"
#include "load/target.hpp"

using namespace hb;
using namespace hb::bench;

namespace {

// -- A target in memory --------------------------------------------------------

/// Equal envelopes kept in memory: what a node would answer, without one.
/// Opens can be refused with BUSY a few times first, and sessions can break
/// after some requests (after the store applied them, as when a node's
/// answer is lost), so that the engine's retries and reconnects show.
struct fake_store {
  struct share {
    int64_t amount_fen;
    int32_t seq;
  };
  struct env {
    int64_t total_fen = 0;
    int32_t count = 0;
    std::map<uint32_t, share> opened;  ///< by user index
  };

  std::vector<env> envs;
  uint32_t busy_per_open = 0;  ///< BUSY answers before an open goes through
  std::map<std::pair<uint32_t, uint32_t>, uint32_t> busy_given;
  uint64_t submits = 0;
  uint64_t break_at_submit = 0;  ///< 0: never; else once, at this submit
  size_t in_flight_max = 0;      ///< over all sessions at once
  size_t in_flight_now = 0;

  reply answer(const request& req) {
    reply r;
    auto& e = envs[req.env];
    auto remaining = e.count - static_cast<int32_t>(e.opened.size());
    auto mine = e.opened.find(req.user);
    if (req.kind == op_kind::grab) {
      r.outcome = mine != e.opened.end() ? grab_outcome::already_opened
                  : remaining == 0       ? grab_outcome::exhausted
                                         : grab_outcome::can_open;
      return r;
    }
    if (req.kind != op_kind::open) {
      r.code = errc::invalid_argument;
      return r;
    }
    if (mine != e.opened.end()) {
      r.amount_fen = mine->second.amount_fen;
      r.seq = mine->second.seq;
      r.first_time = false;
      return r;
    }
    if (busy_given[{req.env, req.user}]++ < busy_per_open) {
      r.code = errc::busy;
      return r;
    }
    if (remaining == 0) {
      r.code = errc::exhausted;
      return r;
    }
    auto seq = static_cast<int32_t>(e.opened.size()) + 1;
    int64_t amount = e.total_fen / e.count
                     + (seq - 1 < e.total_fen % e.count ? 1 : 0);
    e.opened.emplace(req.user, share{amount, seq});
    r.amount_fen = amount;
    r.seq = seq;
    return r;
  }

  /// The records as a store would hand them to the audit.
  envelope_detail detail(uint32_t i, const std::vector<std::string>& names) {
    const auto& e = envs[i];
    envelope_detail d;
    d.env.id = i + 1;
    d.env.kind = envelope_kind::equal;
    d.env.total_fen = e.total_fen;
    d.env.count = e.count;
    d.env.remaining_count = e.count - static_cast<int32_t>(e.opened.size());
    d.env.remaining_fen = e.total_fen;
    std::vector<open_record> recs;
    for (auto& [user, s] : e.opened) {
      recs.push_back(open_record{names[user], s.amount_fen, s.seq, 0});
      d.env.remaining_fen -= s.amount_fen;
    }
    std::sort(recs.begin(), recs.end(),
              [](auto& a, auto& b) { return a.seq < b.seq; });
    d.opens = std::move(recs);
    d.env.status = d.env.remaining_count == 0 ? envelope_status::exhausted
                                              : envelope_status::paid;
    return d;
  }
};

/// Answers at once through the store; a pipe makes the answers readable for
/// the engine's poll loop.
class fake_session final : public session {
public:
  fake_session(fake_store& store, size_t window) : store_(store), window_(window) {
    int fds[2];
    CAF_REQUIRE_EQUAL(::pipe(fds), 0);
    rd_ = fds[0];
    wr_ = fds[1];
    set_nonblocking(rd_);
  }

  ~fake_session() override {
    store_.in_flight_now -= ready_.size();
    ::close(rd_);
    ::close(wr_);
  }

  int fd() const override { return rd_; }
  size_t window() const override { return window_; }
  size_t in_flight() const override { return ready_.size(); }

  void submit(uint64_t tag, const request& req) override {
    ready_.push_back(completion{tag, store_.answer(req)});
    store_.in_flight_max = std::max(store_.in_flight_max, ++store_.in_flight_now);
    if (++store_.submits == store_.break_at_submit)
      broken_ = true;
    char one = 1;
    CAF_REQUIRE_EQUAL(::write(wr_, &one, 1), 1);
  }

  bool wants_write() const override { return false; }
  bool flush(std::string&) override { return true; }

  bool read(std::vector<completion>& out, std::string& why) override {
    char buf[256];
    while (::read(rd_, buf, sizeof(buf)) > 0) {
    }
    if (broken_) {
      why = "fake break";
      return false;
    }
    store_.in_flight_now -= ready_.size();
    for (auto& c : ready_)
      out.push_back(std::move(c));
    ready_.clear();
    return true;
  }

  std::vector<uint64_t> abandon() override {
    std::vector<uint64_t> tags;
    for (auto& c : ready_)
      tags.push_back(c.tag);
    store_.in_flight_now -= ready_.size();
    ready_.clear();
    return tags;
  }

private:
  fake_store& store_;
  size_t window_;
  int rd_ = -1;
  int wr_ = -1;
  bool broken_ = false;
  std::deque<completion> ready_;
};

class fake_target final : public target {
public:
  explicit fake_target(fake_store& store) : store_(store) {}

  std::string describe() const override { return "fake"; }
  uint32_t connections_default() const override { return 2; }
  uint32_t window_default() const override { return 8; }
  outcome<done> prepare() override { return done{}; }

  outcome<std::unique_ptr<session>> connect(const run_book&,
                                            uint32_t window) override {
    connects++;
    return std::unique_ptr<session>{std::make_unique<fake_session>(store_, window)};
  }

  outcome<std::vector<envelope_detail>> load(const run_book& book) override {
    std::vector<envelope_detail> out;
    for (uint32_t i = 0; i < book.envelopes.size(); ++i)
      out.push_back(store_.detail(i, book.users));
    return out;
  }

  uint32_t connects = 0;

private:
  fake_store& store_;
};

/// `envelopes` paid equal envelopes of `count` shares and `users` users who
/// grab every one of them, as the demo's storm does.
struct storm_fixture {
  fake_store store;
  fake_target tgt{store};
  run_book book;
  std::vector<flow> flows;
  engine_options opts;

  storm_fixture(uint32_t envelopes, int32_t count, uint32_t users) {
    for (uint32_t i = 0; i < envelopes; ++i) {
      store.envs.push_back(fake_store::env{1000 + i, count, {}});
      envelope_plan p;
      p.id = i + 1;
      book.envelopes.push_back(p);
    }
    for (uint32_t u = 0; u < users; ++u)
      book.users.push_back(user_name(u, users));
    flows = grab_every_envelope(users, envelopes, 7);
    opts.connections = 2;
    opts.window = 4;
    opts.users = 8;
    opts.backoff_first_ms = 1;
    opts.backoff_max_ms = 2;
    opts.progress = false;
  }

  /// Audits every envelope against what the run's Open replies said.
  std::vector<std::string> audit(const run_result& r) {
    std::vector<std::string> problems;
    for (uint32_t i = 0; i < book.envelopes.size(); ++i) {
      auto a = load::audit_envelope(store.detail(i, book.users), r.told[i],
                                    r.unknown[i], book.users);
      problems.insert(problems.end(), a.problems.begin(), a.problems.end());
      problems.insert(problems.end(), a.rule_problems.begin(),
                      a.rule_problems.end());
    }
    return problems;
  }
};

const op_stats& ops_of(const run_result& r, op_kind k) {
  return r.ops[static_cast<size_t>(k)];
}

} // namespace

// -- Scenarios -------------------------------------------------------------------

CAF_TEST(user names pad to the digits of the user count) {
  CAF_CHECK_EQUAL(user_name(41, 50000), "user-00042");
  CAF_CHECK_EQUAL(user_name(0, 9), "user-1");
  CAF_CHECK_EQUAL(user_name(9, 10), "user-10");
  // Padded names sort in number order.
  CAF_CHECK_LESS(user_name(8, 100), user_name(10, 100));
}

CAF_TEST(the demo storm has every user grab every envelope once) {
  auto flows = grab_every_envelope(50, 3, 1);
  CAF_REQUIRE_EQUAL(flows.size(), 150u);
  std::set<std::pair<uint32_t, uint32_t>> seen;
  for (auto& f : flows) {
    CAF_CHECK(!f.sender);
    CAF_CHECK(!f.held);
    CAF_CHECK(!f.repeat);
    CAF_CHECK_LESS(f.env, 3u);
    CAF_CHECK_LESS(f.user, 50u);
    seen.emplace(f.user, f.env);
  }
  CAF_CHECK_EQUAL(seen.size(), 150u);
}

CAF_TEST(the demo storm order is seeded) {
  auto key = [](const std::vector<flow>& fs) {
    std::vector<std::pair<uint32_t, uint32_t>> out;
    for (auto& f : fs)
      out.emplace_back(f.user, f.env);
    return out;
  };
  CAF_CHECK(key(grab_every_envelope(40, 2, 5)) == key(grab_every_envelope(40, 2, 5)));
  CAF_CHECK(key(grab_every_envelope(40, 2, 5)) != key(grab_every_envelope(40, 2, 6)));
}

CAF_TEST(the storm scenario holds its members until their envelope is paid) {
  scenario_options o;
  o.name = "storm";
  o.envelopes = 4;
  o.shares = 10;
  auto sc = make_scenario(o, "t");
  CAF_REQUIRE(sc);
  CAF_CHECK(sc->setup.empty());
  size_t senders = 0;
  for (auto& f : sc->flows) {
    if (f.sender)
      senders++;
    else
      CAF_CHECK(f.held);
  }
  CAF_CHECK_EQUAL(senders, 4u);
  // Groups are half again as large as the share count.
  CAF_CHECK_EQUAL(sc->flows.size(), 4u + 4u * 15u);
  CAF_CHECK_EQUAL(sc->book.users.size(), 60u);
}

CAF_TEST(a scenario beyond the limits is refused) {
  scenario_options o;
  o.name = "spread";
  o.envelopes = envelopes_max + 1;
  CAF_CHECK(!make_scenario(o, "t"));
  o.name = "nonsense";
  o.envelopes = 0;
  CAF_CHECK(!make_scenario(o, "t"));
}

// -- Policies --------------------------------------------------------------------

CAF_TEST(retry backoff doubles from the first wait up to the max) {
  engine_options o;
  o.backoff_first_ms = 50;
  o.backoff_max_ms = 2000;
  CAF_CHECK_EQUAL(retry_backoff_ceiling_ms(o, 1), 50);
  CAF_CHECK_EQUAL(retry_backoff_ceiling_ms(o, 2), 100);
  CAF_CHECK_EQUAL(retry_backoff_ceiling_ms(o, 6), 1600);
  CAF_CHECK_EQUAL(retry_backoff_ceiling_ms(o, 7), 2000);
  CAF_CHECK_EQUAL(retry_backoff_ceiling_ms(o, 60), 2000);
}

CAF_TEST(reconnect pauses double from the first pause up to the max) {
  engine_options o;
  o.reconnect_pause_first_ms = 250;
  o.reconnect_pause_max_ms = 2000;
  CAF_CHECK_EQUAL(reconnect_pause_ms(o, 0), 250);
  CAF_CHECK_EQUAL(reconnect_pause_ms(o, 1), 500);
  CAF_CHECK_EQUAL(reconnect_pause_ms(o, 3), 2000);
  CAF_CHECK_EQUAL(reconnect_pause_ms(o, 40), 2000);
}

// -- Latency statistics ----------------------------------------------------------

CAF_TEST(percentiles are exact over the samples) {
  std::vector<int64_t> us;
  for (int64_t i = 100; i >= 1; --i)
    us.push_back(i * 1000);
  auto s = load::summarize(us);
  CAF_CHECK_EQUAL(s.count, 100u);
  CAF_CHECK_EQUAL(s.p50_ms, 50.0);
  CAF_CHECK_EQUAL(s.p99_ms, 99.0);
  CAF_CHECK_EQUAL(s.max_ms, 100.0);
  CAF_CHECK_EQUAL(s.mean_ms, 50.5);
  std::vector<int64_t> none;
  CAF_CHECK_EQUAL(load::summarize(none).count, 0u);
}

// -- The audit -------------------------------------------------------------------

CAF_TEST(the audit catches a reply that does not match the records) {
  fake_store store;
  store.envs.push_back(fake_store::env{100, 4, {}});
  std::vector<std::string> names{"a", "b", "c", "d"};
  for (uint32_t u = 0; u < 4; ++u) {
    request req{op_kind::open, 0, u, 0};
    CAF_REQUIRE_EQUAL(store.answer(req).code, errc::none);
  }
  auto d = store.detail(0, names);
  std::vector<load::told_share> told;
  for (auto& [user, s] : store.envs[0].opened)
    told.push_back(load::told_share{user, s.amount_fen, s.seq, true});
  auto good = load::audit_envelope(d, told, {}, names);
  CAF_CHECK(good.conserved());
  CAF_CHECK(good.rules_ok());
  CAF_CHECK_EQUAL(good.told_fen, 100);
  told[0].amount_fen += 1;
  CAF_CHECK(!load::audit_envelope(d, told, {}, names).conserved());
}

CAF_TEST(the audit forgives an untold share only when its outcome was unknown) {
  fake_store store;
  store.envs.push_back(fake_store::env{100, 2, {}});
  std::vector<std::string> names{"a", "b"};
  CAF_REQUIRE_EQUAL(store.answer(request{op_kind::open, 0, 0, 0}).code, errc::none);
  CAF_REQUIRE_EQUAL(store.answer(request{op_kind::open, 0, 1, 0}).code, errc::none);
  auto d = store.detail(0, names);
  std::vector<load::told_share> told{{0, 50, 1, true}};
  CAF_CHECK(!load::audit_envelope(d, told, {}, names).conserved());
  auto a = load::audit_envelope(d, told, {1}, names);
  CAF_CHECK(a.conserved());
  CAF_CHECK_EQUAL(a.unknown_users, 1u);
}

// -- The engine ------------------------------------------------------------------

CAF_TEST(a storm runs every flow and the audit passes) {
  storm_fixture fx{3, 10, 25};
  auto r = run_flows(fx.tgt, fx.book, fx.flows, fx.opts);
  CAF_REQUIRE(r.failure.empty());
  CAF_CHECK_EQUAL(r.flows_done, 75u);
  CAF_CHECK_EQUAL(ops_of(r, op_kind::grab).answered, 75u);
  CAF_CHECK_EQUAL(ops_of(r, op_kind::open).ok, 30u);
  CAF_CHECK_EQUAL(r.opens_first, 30u);
  CAF_CHECK_EQUAL(r.grab_outcomes[static_cast<size_t>(grab_outcome::can_open)]
                    + r.grab_outcomes[static_cast<size_t>(grab_outcome::exhausted)],
                  75u);
  // Every final answer has its latency.
  CAF_CHECK_EQUAL(ops_of(r, op_kind::grab).latency_us.size(), 75u);
  CAF_CHECK_GREATER_OR_EQUAL(r.first_open_s, 0.0);
  CAF_CHECK_GREATER_OR_EQUAL(r.last_open_s, r.first_open_s);
  CAF_CHECK(fx.audit(r).empty());
}

CAF_TEST(latency counts every final answer or only the successful ones) {
  storm_fixture all{1, 2, 12};
  auto r = run_flows(all.tgt, all.book, all.flows, all.opts);
  const auto& opens = ops_of(r, op_kind::open);
  // Some opens found the shares gone: their answers count by default.
  CAF_REQUIRE_GREATER(opens.answered, opens.ok);
  CAF_CHECK_EQUAL(opens.latency_us.size(), opens.answered);
  storm_fixture ok_only{1, 2, 12};
  ok_only.opts.latency_ok_only = true;
  auto q = run_flows(ok_only.tgt, ok_only.book, ok_only.flows, ok_only.opts);
  CAF_CHECK_EQUAL(ops_of(q, op_kind::open).latency_us.size(), 2u);
}

CAF_TEST(a closed loop keeps at most users flows in flight) {
  storm_fixture fx{1, 5, 40};
  fx.opts.users = 3;
  auto r = run_flows(fx.tgt, fx.book, fx.flows, fx.opts);
  CAF_REQUIRE(r.failure.empty());
  CAF_CHECK_EQUAL(r.flows_done, 40u);
  CAF_CHECK_LESS_OR_EQUAL(fx.store.in_flight_max, 3u);
}

CAF_TEST(busy answers are retried until the open goes through) {
  storm_fixture fx{2, 5, 8};
  fx.store.busy_per_open = 2;
  fx.opts.retries_max = 5;
  auto r = run_flows(fx.tgt, fx.book, fx.flows, fx.opts);
  CAF_REQUIRE(r.failure.empty());
  const auto& opens = ops_of(r, op_kind::open);
  // Every open (one per can_open grab) heard BUSY twice, was resent twice,
  // then went through or found the shares gone.
  auto issued = r.grab_outcomes[static_cast<size_t>(grab_outcome::can_open)];
  CAF_CHECK_GREATER_OR_EQUAL(issued, 10u);
  CAF_CHECK_EQUAL(opens.ok, 10u);
  CAF_CHECK_EQUAL(opens.errors[static_cast<size_t>(errc::busy)], 2 * issued);
  CAF_CHECK_EQUAL(opens.retries, 2 * issued);
  CAF_CHECK_EQUAL(opens.errors[static_cast<size_t>(errc::exhausted)],
                  issued - 10);
  CAF_CHECK_EQUAL(opens.gave_up, 0u);
  CAF_CHECK_EQUAL(opens.answered, issued);
  CAF_CHECK(fx.audit(r).empty());
}

CAF_TEST(an open still busy after retries_max is given up) {
  storm_fixture fx{1, 5, 5};
  fx.store.busy_per_open = 10;
  fx.opts.retries_max = 2;
  auto r = run_flows(fx.tgt, fx.book, fx.flows, fx.opts);
  CAF_REQUIRE(r.failure.empty());
  const auto& opens = ops_of(r, op_kind::open);
  CAF_CHECK_EQUAL(opens.ok, 0u);
  CAF_CHECK_EQUAL(opens.gave_up, 5u);
  CAF_CHECK_EQUAL(opens.retries, 10u);
  CAF_CHECK(r.told[0].empty());
  // BUSY means not done: no open's outcome is unknown.
  CAF_CHECK(r.unknown[0].empty());
  CAF_CHECK_EQUAL(r.flows_done, 5u);
}

CAF_TEST(a lost connection is reconnected and its opens are resent) {
  storm_fixture fx{1, 6, 6};
  fx.opts.connections = 1;
  fx.opts.window = 16;
  fx.opts.users = 16;
  // The ninth request breaks the session after the store applied it: grabs
  // come first, so opens that committed get lost answers.
  fx.store.break_at_submit = 9;
  auto r = run_flows(fx.tgt, fx.book, fx.flows, fx.opts);
  CAF_REQUIRE(r.failure.empty());
  CAF_CHECK_EQUAL(r.reconnects, 1u);
  CAF_CHECK_EQUAL(fx.tgt.connects, 2u);
  CAF_CHECK_EQUAL(ops_of(r, op_kind::open).ok, 6u);
  // The resent opens that had committed came back with the same share.
  CAF_CHECK_GREATER(r.opens_repeat, 0u);
  CAF_CHECK_EQUAL(r.opens_first + r.opens_repeat, 6u);
  CAF_CHECK(fx.audit(r).empty());
}

CAF_TEST(a session that cannot reconnect fails the run and leaves outcomes unknown) {
  storm_fixture fx{1, 6, 6};
  fx.opts.connections = 1;
  fx.opts.window = 16;
  fx.opts.users = 16;
  fx.opts.reconnects_max = 0;
  fx.store.break_at_submit = 9;
  auto r = run_flows(fx.tgt, fx.book, fx.flows, fx.opts);
  CAF_CHECK(!r.failure.empty());
  // Opens lost with the connection may have committed: the audit must not
  // call their shares untold.
  CAF_CHECK(!r.unknown[0].empty());
  CAF_CHECK(fx.audit(r).empty());
}
