#define CAF_SUITE admin.admin_actor

#include "caf/test/unit_test.hpp"

#include <fstream>
#include <mutex>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "caf/all.hpp"
#include "caf/io/all.hpp"

#include "admin/admin_actor.hpp"
#include "runtime/errors.hpp"

using namespace hb;
using json = nlohmann::json;

namespace {

constexpr const char* secret = "test-operator-secret-0123";

struct system_config : caf::actor_system_config {
  system_config() {
    add_admin_types(*this);
    load<caf::io::middleman>();
    set("logger.console", caf::atom("none"));
    set("scheduler.max-threads", size_t{2});
  }
};

// One node's operator side on a real actor system: the admin with
// stand-ins for the router, segment health, the reconciler, the store and
// (in a cluster) the membership, which record what reaches them.
struct node_under_test {
  system_config cfg;
  caf::actor_system sys{cfg};
  std::mutex mx;
  std::vector<segment_request> at_health;
  std::vector<int64_t> at_reconciler;
  std::vector<control_request> at_membership;
  std::string audit_path;
  admin_actor admin;
  std::vector<caf::actor> stubs;  // stopped at the end, or the system waits

  node_under_test(const std::string& name, cluster_info view,
                  cluster_config cluster) {
    audit_path = "/tmp/hb_admin_test_" + name + "_" + std::to_string(getpid())
                 + ".jsonl";
    std::remove(audit_path.c_str());
    auto router = spawn_stub([name]() -> caf::behavior {
      return {[name](stats_atom) {
        node_stats st;
        st.node_name = name;
        st.metrics = {{"opens.committed", 42}};
        st.segments = {{9, true, true, "held"}};
        return st;
      }};
    });
    auto health = spawn_stub([this]() -> caf::behavior {
      return {
        [this](segment_atom, segment_request& r) {
          std::lock_guard<std::mutex> guard{mx};
          at_health.push_back(r);
          return segment_state{r.segment, r.block, r.block, r.reason};
        },
        [](segment_atom) { return std::vector<segment_state>{}; },
      };
    });
    auto reconciler = spawn_stub([this]() -> caf::behavior {
      return {[this](reconcile_atom, int64_t since) {
        std::lock_guard<std::mutex> guard{mx};
        at_reconciler.push_back(since);
        reconcile_report r;
        r.since_ms = since;
        r.envelopes_checked = 3;
        return r;
      }};
    });
    auto store = spawn_stub([]() -> caf::behavior {
      return {[](db_load_atom, int64_t id) -> caf::result<envelope_snapshot> {
        if (id % 1000 != 7)
          return make_error(errc::not_found, "no envelope");
        envelope_snapshot s;
        s.env.id = id;
        s.env.status = envelope_status::paid;
        s.env.total_fen = 1000;
        s.env.count = 4;
        s.env.remaining_fen = 700;
        s.env.remaining_count = 3;
        s.env.epoch = 5;
        s.opens.push_back({"bob", 300, 1, 1});
        return s;
      }};
    });
    admin_settings ac;
    ac.port = 1;
    ac.secret = secret;
    ac.audit_file = audit_path;
    ac.node_name = name;
    ac.zone = "zone-a";
    ac.cluster = std::move(cluster);
    ac.segments = {0, 1, 2, 7};
    ac.router = caf::actor_cast<router_actor>(router);
    ac.health = caf::actor_cast<segment_admin>(health);
    ac.reconciler = caf::actor_cast<reconciler_actor>(reconciler);
    ac.store = caf::actor_cast<envelope_store>(store);
    if (view.enabled)
      ac.membership = caf::actor_cast<membership_actor>(
        spawn_stub([this, view]() -> caf::behavior {
          return {
            [view](stats_atom) { return view; },
            [this](drain_atom, control_request& req) {
              std::lock_guard<std::mutex> guard{mx};
              at_membership.push_back(req);
              control_result r;
              r.node = req.node;
              r.draining = req.action == control_action::drain;
              if (req.action == control_action::rebalance)
                r.moves.push_back({4, "a1", "a2"});
              r.message = "done";
              return r;
            },
          };
        }));
    auto a = spawn_admin(sys, ac);
    CAF_REQUIRE(a);
    admin = *a;
  }

  template <class F>
  caf::actor spawn_stub(F fun) {
    auto a = sys.spawn(fun);
    stubs.push_back(a);
    return a;
  }

  ~node_under_test() {
    caf::anon_send_exit(admin, caf::exit_reason::user_shutdown);
    for (auto& a : stubs)
      caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
    std::remove(audit_path.c_str());
  }

  admin_reply ask(std::vector<std::string> words, std::string with = secret) {
    caf::scoped_actor self{sys};
    admin_reply out;
    self->request(admin, std::chrono::seconds(20), admin_atom::value,
                  admin_request{with, "alice", "test pid=1", words, {}})
      .receive([&](admin_reply& r) { out = std::move(r); },
               [&](caf::error& err) {
                 CAF_FAIL("no reply: " << sys.render(err));
               });
    return out;
  }

  std::vector<json> audit() {
    std::vector<json> out;
    std::ifstream in{audit_path};
    for (std::string line; std::getline(in, line);)
      out.push_back(json::parse(line));
    return out;
  }

  std::string field(const admin_reply& r, const std::string& key) {
    for (auto& f : r.fields)
      if (f.key == key)
        return f.value;
    return "<none>";
  }
};

} // namespace

CAF_TEST(a wrong secret is refused audited and changes nothing) {
  node_under_test n{"n1", {}, {}};
  auto r = n.ask({"block", "7"}, "test-operator-secret-0124");
  CAF_CHECK_EQUAL(r.error, "permission_denied");
  r = n.ask({"nodes"}, "");
  CAF_CHECK_EQUAL(r.error, "permission_denied");
  CAF_CHECK(n.at_health.empty());
  auto lines = n.audit();
  CAF_REQUIRE_EQUAL(lines.size(), 2u);
  CAF_CHECK_EQUAL(lines[0]["result"], "permission_denied");
  CAF_CHECK_EQUAL(lines[0]["credential"], "-");
  CAF_CHECK_EQUAL(lines[0]["command"], "block");
  // The secret never reaches the log.
  std::ifstream in{n.audit_path};
  std::string all((std::istreambuf_iterator<char>(in)),
                  std::istreambuf_iterator<char>());
  CAF_CHECK(all.find("test-operator-secret") == std::string::npos);
}

CAF_TEST(actions reach segment health and the reconciler and are audited) {
  node_under_test n{"n1", {}, {}};
  auto r = n.ask({"block", "7", "disk", "check"});
  CAF_CHECK_EQUAL(r.error, "");
  CAF_CHECK_EQUAL(r.node, "n1");
  CAF_CHECK_EQUAL(n.field(r, "blocked"), "true");
  CAF_REQUIRE_EQUAL(n.at_health.size(), 1u);
  CAF_CHECK_EQUAL(n.at_health[0].segment, 7);
  CAF_CHECK_EQUAL(n.at_health[0].block, true);
  CAF_CHECK_EQUAL(n.at_health[0].reason, "disk check");
  r = n.ask({"unblock", "7"});
  CAF_CHECK_EQUAL(n.field(r, "blocked"), "false");
  r = n.ask({"reconcile", "--since", "1700000000000"});
  CAF_CHECK_EQUAL(r.error, "");
  CAF_CHECK_EQUAL(n.field(r, "envelopes_checked"), "3");
  CAF_CHECK_EQUAL(n.field(r, "clean"), "true");
  CAF_REQUIRE_EQUAL(n.at_reconciler.size(), 1u);
  CAF_CHECK_EQUAL(n.at_reconciler[0], 1700000000000);
  // Read-only commands are not audited; bad words change nothing.
  CAF_CHECK_EQUAL(n.ask({"stats"}).error, "");
  CAF_CHECK_EQUAL(n.ask({"block", "1000"}).error, "invalid_argument");
  CAF_CHECK_EQUAL(n.ask({"help"}).error, "invalid_argument");
  CAF_CHECK_EQUAL(n.at_health.size(), 2u);
  auto lines = n.audit();
  CAF_REQUIRE_EQUAL(lines.size(), 3u);
  CAF_CHECK_EQUAL(lines[0]["command"], "block");
  CAF_CHECK_EQUAL(lines[0]["args"], (json{"7", "disk check"}));
  CAF_CHECK_EQUAL(lines[0]["user"], "alice");
  CAF_CHECK_EQUAL(lines[0]["credential"], "operator");
  CAF_CHECK_EQUAL(lines[0]["origin"], "test pid=1");
  CAF_CHECK_EQUAL(lines[0]["result"], "ok");
  CAF_CHECK_EQUAL(lines[1]["command"], "unblock");
  CAF_CHECK_EQUAL(lines[2]["command"], "reconcile");
}

CAF_TEST(a single node answers the views and envelope state) {
  node_under_test n{"n1", {}, {}};
  auto r = n.ask({"nodes"});
  CAF_REQUIRE_EQUAL(r.tables.size(), 1u);
  CAF_REQUIRE_EQUAL(r.tables[0].rows.size(), 1u);
  CAF_CHECK_EQUAL(r.tables[0].rows[0][0], "n1");
  CAF_CHECK_EQUAL(r.tables[0].rows[0][4], "single node");
  r = n.ask({"segments"});
  CAF_REQUIRE_EQUAL(r.tables.size(), 2u);
  CAF_CHECK_EQUAL(r.tables[0].rows[0].back(), "0-2,7");
  r = n.ask({"stats"});
  CAF_CHECK_EQUAL(n.field(r, "opens.committed"), "42");
  CAF_REQUIRE_EQUAL(r.tables[0].rows.size(), 1u);
  CAF_CHECK_EQUAL(r.tables[0].rows[0][0], "9");
  r = n.ask({"envelope", "2026120700000001007"});
  CAF_CHECK_EQUAL(r.error, "");
  CAF_CHECK_EQUAL(n.field(r, "segment"), "7");
  CAF_CHECK_EQUAL(n.field(r, "owner"), "n1");
  CAF_CHECK_EQUAL(n.field(r, "status"), "paid");
  CAF_CHECK_EQUAL(n.field(r, "remaining_fen"), "700");
  CAF_CHECK_EQUAL(n.field(r, "epoch"), "5");
  r = n.ask({"envelope", "2026120700000001008"});
  CAF_CHECK_EQUAL(r.error, "not_found");
  CAF_CHECK_EQUAL(n.ask({"stats", "other"}).error, "not_found");
  CAF_CHECK_EQUAL(n.ask({"drain", "n1"}).error, "invalid_argument");
}

CAF_TEST(node specific commands are forwarded to the other node admin) {
  // Node b1 (SET set-2) publishes its admin on a port that stands for its
  // peer port; node a1 (SET set-1) knows b1's lease from its membership.
  node_under_test b{"b1", {}, {}};
  auto b_port = b.sys.middleman().publish(b.admin, 0, "127.0.0.1");
  CAF_REQUIRE(b_port);
  cluster_config cc;
  cc.enabled = true;
  cc.set = "set-1";
  cc.zones = {"zone-a", "zone-b", "zone-c"};
  cc.sets = {{"set-1", {{0, 499}}, "host=x password=hush dbname=one"},
             {"set-2", {{500, 999}}, "host=y dbname=two"}};
  cluster_info view;
  view.enabled = true;
  view.set = "set-1";
  view.zones = cc.zones;
  set_view s1;
  s1.set = "set-1";
  s1.db_now_ms = 1000;
  s1.nodes.push_back({"a1", 1, "zone-a", "set-1", "127.0.0.1", 1, "127.0.0.1",
                      7700, 4000});
  s1.owners = {{0, "a1", 1, 3}, {1, "a1", 1, 3}, {2, "", 0, 0}};
  set_view s2;
  s2.set = "set-2";
  s2.db_now_ms = 1000;
  s2.nodes.push_back({"b1", 2, "zone-b", "set-2", "127.0.0.1",
                      static_cast<int32_t>(*b_port), "", 0, 4000});
  view.sets = {s1, s2};
  node_under_test a{"a1", view, cc};
  auto r = a.ask({"stats", "b1"});
  CAF_CHECK_EQUAL(r.error, "");
  CAF_CHECK_EQUAL(r.node, "b1");
  CAF_CHECK_EQUAL(a.field(r, "opens.committed"), "42");
  // A segment of set-2 is blocked by a node of set-2.
  r = a.ask({"block", "600", "maintenance"});
  CAF_CHECK_EQUAL(r.error, "");
  CAF_CHECK_EQUAL(r.node, "b1");
  CAF_CHECK(a.at_health.empty());
  CAF_REQUIRE_EQUAL(b.at_health.size(), 1u);
  CAF_CHECK_EQUAL(b.at_health[0].segment, 600);
  auto b_audit = b.audit();
  CAF_REQUIRE_EQUAL(b_audit.size(), 1u);
  CAF_CHECK_EQUAL(b_audit[0]["forwarded_by"], "a1");
  CAF_CHECK_EQUAL(b_audit[0]["user"], "alice");
  CAF_CHECK_EQUAL(a.audit().size(), 1u);
  // Its own SET's segment stays here.
  r = a.ask({"block", "5"});
  CAF_CHECK_EQUAL(r.node, "a1");
  CAF_CHECK_EQUAL(a.at_health.size(), 1u);
  // The views of a cluster node.
  r = a.ask({"nodes"});
  CAF_REQUIRE_EQUAL(r.tables[0].rows.size(), 2u);
  CAF_CHECK_EQUAL(r.tables[0].rows[0][0], "a1");
  CAF_CHECK_EQUAL(r.tables[0].rows[0][4], "alive");
  CAF_CHECK_EQUAL(r.tables[0].rows[0][5], "3000");
  CAF_CHECK_EQUAL(r.tables[0].rows[0][6], "2");
  r = a.ask({"sets"});
  CAF_REQUIRE_EQUAL(r.tables[0].rows.size(), 2u);
  CAF_CHECK_EQUAL(r.tables[0].rows[0][1], "0-499");
  CAF_CHECK(r.tables[0].rows[0][2].find("hush") == std::string::npos);
  r = a.ask({"segments", "set-1"});
  CAF_REQUIRE_EQUAL(r.tables[0].rows.size(), 2u);
  CAF_CHECK_EQUAL(r.tables[0].rows[0][1], "a1");
  CAF_CHECK_EQUAL(r.tables[0].rows[0].back(), "0-1");
  CAF_CHECK_EQUAL(r.tables[0].rows[1][3], "unowned");
  CAF_CHECK_EQUAL(a.ask({"segments", "set-9"}).error, "invalid_argument");
  // Planned moves go to the membership, audited.
  r = a.ask({"drain", "a2"});
  CAF_CHECK_EQUAL(r.error, "");
  CAF_CHECK_EQUAL(a.field(r, "draining"), "true");
  r = a.ask({"rebalance", "--dry-run"});
  CAF_CHECK_EQUAL(a.field(r, "moves"), "1");
  CAF_REQUIRE_EQUAL(a.at_membership.size(), 2u);
  CAF_CHECK_EQUAL(a.at_membership[0].node, "a2");
  CAF_CHECK(a.at_membership[0].action == control_action::drain);
  CAF_CHECK(a.at_membership[1].dry_run);
  auto a_audit = a.audit();
  CAF_REQUIRE_EQUAL(a_audit.size(), 4u);
  CAF_CHECK_EQUAL(a_audit[2]["command"], "drain");
  CAF_CHECK_EQUAL(a_audit[3]["args"], (json{"--dry-run"}));
  r = a.ask({"zones"});
  CAF_REQUIRE_EQUAL(r.tables[0].rows.size(), 3u);
  // An envelope of set-2 is looked up by b1 (its SET's database).
  r = a.ask({"envelope", "2026120700000001007"});
  CAF_CHECK_EQUAL(r.node, "a1");
  CAF_CHECK_EQUAL(a.field(r, "owner"), "-");
  CAF_CHECK_EQUAL(a.field(r, "set"), "set-1");
  r = a.ask({"envelope", "2026120700000001607"});
  CAF_CHECK_EQUAL(r.node, "b1");
  // b1 is no cluster node here: it knows only itself.
  CAF_CHECK_EQUAL(b.field(r, "status"), "<none>");
  CAF_CHECK_EQUAL(r.error, "not_found");
}

CAF_TEST(a node that is gone is reported unavailable in time) {
  cluster_config cc;
  cc.enabled = true;
  cc.set = "set-1";
  cluster_info view;
  view.enabled = true;
  set_view s1;
  s1.set = "set-1";
  s1.nodes.push_back({"gone", 1, "zone-a", "set-1", "127.0.0.1", 1, "", 0, 0});
  view.sets = {s1};
  node_under_test a{"a1", view, cc};
  auto r = a.ask({"stats", "gone"});
  CAF_CHECK_EQUAL(r.error, "unavailable");
  CAF_CHECK(r.message.find("cannot reach node gone") != std::string::npos);
}
