#define CAF_SUITE supervision.supervisor

// The node supervisor with dummy children A, B, C (C holds a handle of B):
// which children a failure restarts, the restart intensity and its window,
// escalation, and the shutdown order. The test coordinator makes every step
// deterministic; its clock is the supervisor's clock, so the window is
// crossed with advance_time().

#include "tests/support/actor_fixture.hpp"

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "supervision/supervisor.hpp"

using namespace hb;
using namespace hb::test;

namespace {

/// What the children and the supervisor did, in order.
struct journal {
  std::vector<std::string> starts;  // child names, in start order
  std::vector<std::string> stops;   // stop functions called, in order
  std::map<caf::actor_addr, caf::error> downs;  // of watched actors
  std::map<std::string, bool> fail_start;       // the next start fails
};

struct supervisor_fixture : actor_fixture {
  std::shared_ptr<journal> log = std::make_shared<journal>();
  caf::actor watcher;

  supervisor_fixture() {
    auto j = log;
    watcher = sys.spawn([j](caf::event_based_actor* self) -> caf::behavior {
      self->set_down_handler(
        [j](caf::down_msg& msg) { j->downs[msg.source] = msg.reason; });
      return {
        [self](caf::actor& whom) { self->monitor(whom); },
      };
    });
    run();
  }

  ~supervisor_fixture() override {
    anon_send_exit(watcher, caf::exit_reason::user_shutdown);
    run();
  }

  /// A dummy child that answers get_atom with its name and lives until
  /// someone kills it.
  child_spec child(const std::string& name,
                   std::vector<std::string> depends_on = {}) {
    auto j = log;
    auto* sysp = &sys;
    child_spec spec;
    spec.name = name;
    spec.start = [j, sysp, name]() -> caf::expected<caf::actor> {
      if (j->fail_start[name]) {
        j->fail_start[name] = false;
        return make_error(errc::internal, "injected start failure of " + name);
      }
      j->starts.push_back(name);
      return sysp->spawn([name]() -> caf::behavior {
        return {
          [name](get_atom) { return name; },
        };
      });
    };
    spec.stop = [j, name](const caf::actor& a) {
      j->stops.push_back(name);
      caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
    };
    spec.depends_on = std::move(depends_on);
    return spec;
  }

  std::vector<child_spec> abc() {
    return {child("a"), child("b"), child("c", {"b"})};
  }

  supervisor_actor start(uint32_t restarts_max, std::chrono::milliseconds window,
                         std::vector<child_spec> children) {
    supervisor_settings cfg;
    cfg.restarts_max = restarts_max;
    cfg.window_ms = static_cast<uint32_t>(window.count());
    auto sup = spawn_supervisor(sys, std::move(children), cfg);
    CAF_REQUIRE(sup);
    run();
    watch(caf::actor_cast<caf::actor>(*sup));
    return *sup;
  }

  void watch(const caf::actor& whom) {
    self->send(watcher, whom);
    run();
  }

  /// The current handle of a child, or nullptr when there is none.
  caf::actor handle(const supervisor_actor& sup, const std::string& name) {
    auto h = self->request(sup, caf::infinite, get_atom::value, name);
    run();
    caf::actor out;
    h.receive([&](caf::actor& a) { out = std::move(a); },
              [](caf::error&) {});
    return out;
  }

  uint64_t restarts(const supervisor_actor& sup) {
    auto h = self->request(sup, caf::infinite, stats_atom::value);
    run();
    uint64_t n = 0;
    h.receive([&](uint64_t x) { n = x; },
              [](caf::error& e) { CAF_FAIL("no stats: " << to_string(e)); });
    return n;
  }

  /// Whether an actor still answers.
  bool alive(const caf::actor& a) {
    if (!a)
      return false;
    auto h = self->request(a, caf::infinite, get_atom::value);
    run();
    bool ok = false;
    h.receive([&](std::string&) { ok = true; }, [](caf::error&) {});
    return ok;
  }

  bool down(const caf::actor& a) {
    return log->downs.count(a.address()) > 0;
  }

  /// Kills a child the way a crash would: an exit with an error reason.
  void crash(const caf::actor& a) {
    CAF_REQUIRE(a);
    self->send_exit(a, make_error(errc::internal, "injected crash"));
    run();
  }

  size_t started(const std::string& name) {
    size_t n = 0;
    for (auto& s : log->starts)
      n += s == name ? 1 : 0;
    return n;
  }
};

using strings = std::vector<std::string>;

} // namespace

CAF_TEST_FIXTURE_SCOPE(supervisor_tests, supervisor_fixture)

CAF_TEST(children start in the given order before spawn returns) {
  auto sup = start(5, std::chrono::seconds(30), abc());
  CAF_CHECK_EQUAL(log->starts, (strings{"a", "b", "c"}));
  for (auto name : {"a", "b", "c"})
    CAF_CHECK(alive(handle(sup, name)));
  CAF_CHECK(!handle(sup, "nobody"));
  CAF_CHECK_EQUAL(restarts(sup), 0u);
  self->send(sup, stop_atom::value);
  run();
}

CAF_TEST(a child that fails to start aborts the start and stops the others) {
  log->fail_start["c"] = true;
  supervisor_settings cfg;
  auto sup = spawn_supervisor(sys, abc(), cfg);
  run();
  CAF_CHECK(!sup);
  CAF_CHECK_EQUAL(log->starts, (strings{"a", "b"}));
  // What started is undone, in reverse order.
  CAF_CHECK_EQUAL(log->stops, (strings{"b", "a"}));
}

CAF_TEST(killing A restarts only A) {
  auto sup = start(5, std::chrono::seconds(30), abc());
  auto a = handle(sup, "a");
  auto b = handle(sup, "b");
  auto c = handle(sup, "c");
  watch(a);
  crash(a);
  CAF_CHECK(down(a));
  auto a2 = handle(sup, "a");
  CAF_REQUIRE(a2);
  CAF_CHECK(a2 != a);
  CAF_CHECK(alive(a2));
  // B and C kept their handles and were never stopped.
  CAF_CHECK(handle(sup, "b") == b);
  CAF_CHECK(handle(sup, "c") == c);
  CAF_CHECK(alive(b));
  CAF_CHECK(alive(c));
  CAF_CHECK_EQUAL(started("a"), 2u);
  CAF_CHECK_EQUAL(started("b"), 1u);
  CAF_CHECK_EQUAL(started("c"), 1u);
  CAF_CHECK(log->stops.empty());
  CAF_CHECK_EQUAL(restarts(sup), 1u);
  self->send(sup, stop_atom::value);
  run();
}

CAF_TEST(killing B restarts B and its dependent C) {
  auto sup = start(5, std::chrono::seconds(30), abc());
  auto a = handle(sup, "a");
  auto b = handle(sup, "b");
  auto c = handle(sup, "c");
  watch(c);
  crash(b);
  // C held the dead B: it was stopped and started again after B.
  CAF_CHECK_EQUAL(log->stops, (strings{"c"}));
  CAF_CHECK(down(c));
  CAF_CHECK_EQUAL(log->starts, (strings{"a", "b", "c", "b", "c"}));
  auto b2 = handle(sup, "b");
  auto c2 = handle(sup, "c");
  CAF_CHECK(b2 != b);
  CAF_CHECK(c2 != c);
  CAF_CHECK(alive(b2));
  CAF_CHECK(alive(c2));
  CAF_CHECK(handle(sup, "a") == a);
  CAF_CHECK_EQUAL(started("a"), 1u);
  // One failure is one restart, whatever it takes down with it.
  CAF_CHECK_EQUAL(restarts(sup), 1u);
  // Killing C alone restarts C alone (nobody depends on it).
  crash(c2);
  CAF_CHECK(handle(sup, "b") == b2);
  CAF_CHECK_EQUAL(started("b"), 2u);
  CAF_CHECK_EQUAL(started("c"), 3u);
  CAF_CHECK_EQUAL(restarts(sup), 2u);
  self->send(sup, stop_atom::value);
  run();
}

CAF_TEST(more than restarts_max failures within the window escalate) {
  auto sup = start(3, std::chrono::seconds(10), abc());
  auto supa = caf::actor_cast<caf::actor>(sup);
  // Three failures within the window: all restarted.
  for (int i = 1; i <= 3; ++i) {
    crash(handle(sup, "a"));
    advance_time(std::chrono::seconds(1));
    run();
    CAF_CHECK(!down(supa));
    CAF_CHECK_EQUAL(restarts(sup), static_cast<uint64_t>(i));
  }
  CAF_CHECK_EQUAL(started("a"), 4u);
  auto a = handle(sup, "a");
  auto b = handle(sup, "b");
  auto c = handle(sup, "c");
  watch(b);
  watch(c);
  log->stops.clear();
  // The fourth: the supervisor gives up, stops the others (in reverse
  // order) and exits with an error for whoever supervises the node.
  crash(a);
  CAF_REQUIRE(down(supa));
  auto reason = log->downs[supa.address()];
  CAF_CHECK(reason);  // an error, not a normal exit
  auto f = to_failure(reason);
  CAF_CHECK_EQUAL(f.code, errc::internal);
  CAF_CHECK_NOT_EQUAL(f.message.find("child a"), std::string::npos);
  CAF_CHECK_EQUAL(log->stops, (strings{"c", "b"}));
  CAF_CHECK(down(b));
  CAF_CHECK(down(c));
  CAF_CHECK_EQUAL(started("a"), 4u);  // not restarted a fourth time
}

CAF_TEST(after the window passes restarts are allowed again) {
  auto sup = start(2, std::chrono::milliseconds(1000), abc());
  auto supa = caf::actor_cast<caf::actor>(sup);
  crash(handle(sup, "b"));
  crash(handle(sup, "a"));
  CAF_CHECK_EQUAL(restarts(sup), 2u);
  // The window slides past both failures.
  advance_time(std::chrono::milliseconds(1500));
  run();
  crash(handle(sup, "a"));
  crash(handle(sup, "c"));
  CAF_CHECK(!down(supa));
  CAF_CHECK_EQUAL(restarts(sup), 4u);
  for (auto name : {"a", "b", "c"})
    CAF_CHECK(alive(handle(sup, name)));
  // A third failure within this window is one too many.
  advance_time(std::chrono::milliseconds(200));
  run();
  crash(handle(sup, "a"));
  CAF_CHECK(down(supa));
  CAF_CHECK(log->downs[supa.address()]);
}

CAF_TEST(a restart whose start fails escalates) {
  auto sup = start(5, std::chrono::seconds(30), abc());
  auto supa = caf::actor_cast<caf::actor>(sup);
  auto a = handle(sup, "a");
  watch(a);
  log->fail_start["b"] = true;
  crash(handle(sup, "b"));
  CAF_REQUIRE(down(supa));
  CAF_CHECK_EQUAL(to_failure(log->downs[supa.address()]).code, errc::internal);
  CAF_CHECK(down(a));
}

CAF_TEST(stop_atom stops the children in reverse order) {
  auto sup = start(5, std::chrono::seconds(30), abc());
  auto supa = caf::actor_cast<caf::actor>(sup);
  std::vector<caf::actor> kids{handle(sup, "a"), handle(sup, "b"),
                               handle(sup, "c")};
  for (auto& k : kids)
    watch(k);
  self->send(sup, stop_atom::value);
  run();
  CAF_CHECK_EQUAL(log->stops, (strings{"c", "b", "a"}));
  for (auto& k : kids)
    CAF_CHECK(down(k));
  // A clean stop: the supervisor exits normally, and children that stop on
  // request are not restarted.
  CAF_REQUIRE(down(supa));
  CAF_CHECK(!log->downs[supa.address()]);  // exit_reason::normal
  CAF_CHECK_EQUAL(log->starts.size(), 3u);
}

CAF_TEST(children without a stop function get an exit at shutdown) {
  auto specs = abc();
  for (auto& s : specs)
    s.stop = nullptr;
  auto sup = start(5, std::chrono::seconds(30), std::move(specs));
  std::vector<caf::actor> kids{handle(sup, "a"), handle(sup, "b"),
                               handle(sup, "c")};
  for (auto& k : kids)
    watch(k);
  self->send(sup, stop_atom::value);
  run();
  for (auto& k : kids) {
    CAF_CHECK(down(k));
    CAF_CHECK(log->downs[k.address()] == caf::exit_reason::user_shutdown);
  }
}

CAF_TEST_FIXTURE_SCOPE_END()
