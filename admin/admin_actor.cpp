#include "admin/admin_actor.hpp"

#include <algorithm>
#include <map>
#include <set>

#include "caf/all.hpp"
#include "caf/io/all.hpp"
#include "caf/io/basp_broker.hpp"

#include "admin/audit_log.hpp"
#include "admin/commands.hpp"
#include "config/node_config.hpp"
#include "domain/cluster_summary.hpp"
#include "domain/envelope_id.hpp"
#include "runtime/errors.hpp"
#include "runtime/log.hpp"

namespace hb {

namespace {

using admin::parsed_command;
using done_fn = std::function<void(admin_reply)>;

spdlog::logger& admin_log() {
  static auto& ref = named_logger("admin");
  return ref;
}

struct admin_state {
  admin_settings cfg;
  std::shared_ptr<admin::audit_log> audit;
  uint64_t refused = 0;
  static inline const char* name = "hb.admin";
};

using admin_pointer = admin_actor::stateful_pointer<admin_state>;

/// What one command does: reads the parsed command and the request, and
/// calls `done` exactly once with the reply.
using handler_fn = void (*)(admin_pointer, const parsed_command&,
                            const admin_request&, done_fn);

admin_reply reply_to(admin_pointer self, const parsed_command& cmd) {
  admin_reply out;
  out.node = self->state.cfg.node_name;
  out.command = cmd.name();
  return out;
}

admin_reply failed(admin_pointer self, const parsed_command& cmd,
                   const caf::error& err) {
  auto f = to_failure(err);
  return admin_failure(self->state.cfg.node_name, cmd.name(), to_string(f.code),
                       f.message);
}

admin_reply failed(admin_pointer self, const parsed_command& cmd, errc code,
                   std::string message) {
  return admin_failure(self->state.cfg.node_name, cmd.name(), to_string(code),
                       std::move(message));
}

caf::timespan ask_timeout(admin_pointer self) {
  return std::chrono::milliseconds(self->state.cfg.request_timeout_ms);
}

std::string str(int64_t v) {
  return std::to_string(v);
}

// -- The cluster view -----------------------------------------------------------

// The membership's view (every SET it knows), or a view saying "no
// cluster" on a node on its own.
void with_cluster(admin_pointer self, const parsed_command& cmd, done_fn done,
                  std::function<void(cluster_info&)> then) {
  auto& cfg = self->state.cfg;
  if (!cfg.membership) {
    cluster_info none;
    then(none);
    return;
  }
  self->request(cfg.membership, ask_timeout(self), stats_atom::value)
    .then([=](cluster_info& info) mutable { then(info); },
          [=](caf::error& err) mutable {
            done(failed(self, cmd, errc::unavailable,
                        "the membership did not answer: "
                          + to_failure(err).message));
          });
}

const set_view* view_of(const cluster_info& info, const std::string& set) {
  for (auto& v : info.sets)
    if (v.set == set)
      return &v;
  return nullptr;
}

size_t owned_by(const set_view& view, const node_lease& lease) {
  return owned_segments(view, lease.node, lease.incarnation).size();
}

const char* block_mode(const segment_state& s) {
  return s.manual ? "manual" : "automatic";
}

// The SET of a segment in the SET map; empty outside a cluster.
std::string set_of_segment(admin_pointer self, int32_t segment) {
  auto& c = self->state.cfg.cluster;
  if (!c.enabled)
    return {};
  auto k = set_index_of(c.sets, segment);
  return k < 0 ? std::string{} : c.sets[static_cast<size_t>(k)].name;
}

// -- Forwarding to another node's admin ------------------------------------------

// A one-shot helper that finds the admin actor of node `nid` by name in
// that node's registry (CAF's config server, over the node link) and asks
// it. The admin waits for it with its own deadline; the helper ends after
// one answer or at `timeout`.
caf::behavior peer_call_impl(caf::event_based_actor* self, caf::node_id nid,
                             caf::timespan timeout, std::string target) {
  return {
    [=](admin_atom, admin_request& req) -> caf::result<admin_reply> {
      auto rp = self->make_response_promise<admin_reply>();
      auto finished = std::make_shared<bool>(false);
      auto finish = [=](admin_reply r) mutable {
        if (*finished)
          return;
        *finished = true;
        rp.deliver(std::move(r));
        self->quit();
      };
      auto basp = self->system().middleman().named_broker<caf::io::basp_broker>(
        caf::atom("BASP"));
      self->send(basp, caf::forward_atom::value, nid, caf::atom("ConfigServ"),
                 caf::make_message(caf::get_atom::value, admin_registry_name));
      self->delayed_send(self, timeout, caf::timeout_atom::value);
      auto command = req.words.empty() ? std::string{} : req.words[0];
      self->become(
        [=](caf::strong_actor_ptr& ptr) mutable {
          if (!ptr) {
            finish(admin_failure(target, command, "unavailable",
                                 "node " + target
                                   + " runs no admin actor ([admin] port)"));
            return;
          }
          auto peer = caf::actor_cast<admin_actor>(ptr);
          self->request(peer, timeout, admin_atom::value, req)
            .then([=](admin_reply& r) mutable { finish(std::move(r)); },
                  [=](caf::error& err) mutable {
                    finish(admin_failure(target, command, "unavailable",
                                         "node " + target + " did not answer: "
                                           + to_failure(err).message));
                  });
        },
        [=](caf::timeout_atom) mutable {
          finish(admin_failure(target, command, "unavailable",
                               "node " + target + " did not answer in time"));
        });
      return rp;
    },
  };
}

// Asks the admin of the node whose peer port is host:port. The middleman
// reuses the node link the membership keeps (one connection per pair of
// nodes) or opens one.
void forward(admin_pointer self, const parsed_command& cmd,
             const admin_request& req, const std::string& target,
             const std::string& host, int32_t port, done_fn done) {
  if (!req.forwarded_by.empty()) {
    done(failed(self, cmd, errc::not_owner,
                "forwarded by " + req.forwarded_by + " to " + self->state.cfg.node_name
                  + ", which cannot serve it either; the cluster view is "
                    "changing, retry"));
    return;
  }
  auto fwd = req;
  fwd.forwarded_by = self->state.cfg.node_name;
  auto timeout = std::chrono::milliseconds(self->state.cfg.forward_timeout_ms);
  auto mm = self->system().middleman().actor_handle();
  admin_log().info("admin_forward command={} to={} peer={}:{}", cmd.name(),
                   target, host, port);
  self
    ->request(mm, timeout, caf::connect_atom::value, host,
              static_cast<uint16_t>(port))
    .then(
      [=](const caf::node_id& nid, caf::strong_actor_ptr&,
          const std::set<std::string>&) mutable {
        auto helper = self->system().spawn(peer_call_impl, nid, timeout, target);
        self->request(helper, timeout + std::chrono::seconds(1),
                      admin_atom::value, fwd)
          .then([=](admin_reply& r) mutable { done(std::move(r)); },
                [=](caf::error& err) mutable {
                  done(failed(self, cmd, errc::unavailable,
                              "node " + target + " did not answer: "
                                + to_failure(err).message));
                });
      },
      [=](caf::error& err) mutable {
        done(failed(self, cmd, errc::unavailable,
                    "cannot reach node " + target + " at " + host + ":"
                      + std::to_string(port) + ": "
                      + self->system().render(err)));
      });
}

// The first live node of `set` in the view (any known one if none is live).
const node_lease* node_of_set(const cluster_info& info, const std::string& set) {
  auto* view = view_of(info, set);
  if (view == nullptr)
    return nullptr;
  const node_lease* any = nullptr;
  for (auto& n : view->nodes) {
    if (lease_alive(*view, n))
      return &n;
    any = any ? any : &n;
  }
  return any;
}

// Runs `local` here when `set` is this node's (or there is no cluster),
// else forwards the request to a node of `set`.
void here_or_in_set(admin_pointer self, const parsed_command& cmd,
                    const admin_request& req, const std::string& set,
                    done_fn done, std::function<void()> local) {
  auto& c = self->state.cfg.cluster;
  if (!c.enabled || set.empty() || set == c.set) {
    local();
    return;
  }
  with_cluster(self, cmd, done, [=](cluster_info& info) {
    auto* lease = node_of_set(info, set);
    if (lease == nullptr) {
      done(failed(self, cmd, errc::unavailable,
                  "no node of SET " + set + " is known yet; retry"));
      return;
    }
    forward(self, cmd, req, lease->node, lease->peer_host, lease->peer_port,
            done);
  });
}

// -- Read-only commands ------------------------------------------------------------

void cmd_nodes(admin_pointer self, const parsed_command& cmd,
               const admin_request&, done_fn done) {
  with_cluster(self, cmd, done, [=](cluster_info& info) {
    auto out = reply_to(self, cmd);
    admin_table t{"nodes",
                  {"node", "set", "zone", "incarnation", "state", "lease_left_ms",
                   "segments", "peer", "gateway"},
                  {}};
    auto& cfg = self->state.cfg;
    if (!info.enabled) {
      t.rows.push_back({cfg.node_name, "-", cfg.zone, "-", "single node", "-",
                        str(static_cast<int64_t>(cfg.segments.size())), "-", "-"});
    }
    for (auto& view : info.sets)
      for (auto& n : view.nodes)
        t.rows.push_back(
          {n.node, view.set, n.zone, str(n.incarnation),
           lease_alive(view, n) ? "alive" : "lease expired",
           str(n.expires_at_ms - view.db_now_ms),
           str(static_cast<int64_t>(owned_by(view, n))),
           n.peer_host + ":" + str(n.peer_port),
           n.gateway_port ? n.gateway_host + ":" + str(n.gateway_port) : "-"});
    std::sort(t.rows.begin(), t.rows.end(),
              [](auto& a, auto& b) { return std::tie(a[1], a[0]) < std::tie(b[1], b[0]); });
    out.fields.push_back({"cluster", info.enabled ? "true" : "false"});
    if (info.enabled)
      out.fields.push_back({"fenced", info.fenced ? "true" : "false"});
    out.tables.push_back(std::move(t));
    done(std::move(out));
  });
}

void cmd_zones(admin_pointer self, const parsed_command& cmd,
               const admin_request&, done_fn done) {
  with_cluster(self, cmd, done, [=](cluster_info& info) {
    auto out = reply_to(self, cmd);
    auto& cfg = self->state.cfg;
    struct tally {
      int64_t known = 0, live = 0, segments = 0;
      std::set<std::string> names;
    };
    std::map<std::string, tally> zones;
    for (auto& z : info.zones)
      zones[z];
    if (!info.enabled) {
      auto& z = zones[cfg.zone];
      z.known = z.live = 1;
      z.segments = static_cast<int64_t>(cfg.segments.size());
      z.names.insert(cfg.node_name);
    }
    for (auto& view : info.sets)
      for (auto& n : view.nodes) {
        auto& z = zones[n.zone];
        ++z.known;
        if (lease_alive(view, n)) {
          ++z.live;
          z.segments += static_cast<int64_t>(owned_by(view, n));
          z.names.insert(n.node);
        }
      }
    admin_table t{"zones", {"zone", "nodes_live", "nodes_known", "segments",
                            "live_nodes"}, {}};
    for (auto& [name, z] : zones) {
      std::string names;
      for (auto& n : z.names)
        names += (names.empty() ? "" : ",") + n;
      t.rows.push_back({name, str(z.live), str(z.known), str(z.segments),
                        names.empty() ? "-" : names});
    }
    out.tables.push_back(std::move(t));
    done(std::move(out));
  });
}

void cmd_sets(admin_pointer self, const parsed_command& cmd,
              const admin_request&, done_fn done) {
  with_cluster(self, cmd, done, [=](cluster_info& info) {
    auto out = reply_to(self, cmd);
    auto& cfg = self->state.cfg;
    admin_table t{"sets", {"set", "segments", "database", "nodes_live",
                           "owned", "unowned", "blocked"}, {}};
    if (!cfg.cluster.enabled) {
      out.message = "this node is not in a cluster: it serves segments "
                    + segments_text(cfg.segments);
    }
    for (auto& set : cfg.cluster.sets) {
      std::vector<std::string> row{set.name, ranges_text(set.segments),
                                   redacted_database_url(set.database_url)};
      auto* view = view_of(info, set.name);
      if (view == nullptr) {
        row.insert(row.end(), {"-", "-", "-", "-"});
      } else {
        int64_t live = 0, owned = 0;
        for (auto& n : view->nodes)
          live += lease_alive(*view, n);
        for (auto& o : view->owners)
          owned += owner_alive(*view, o);
        row.push_back(str(live));
        row.push_back(str(owned));
        row.push_back(str(static_cast<int64_t>(view->owners.size()) - owned));
        row.push_back(str(static_cast<int64_t>(view->blocked.size())));
      }
      t.rows.push_back(std::move(row));
    }
    out.tables.push_back(std::move(t));
    done(std::move(out));
  });
}

void cmd_segments(admin_pointer self, const parsed_command& cmd,
                  const admin_request&, done_fn done) {
  auto& cfg = self->state.cfg;
  auto only = cmd.arg(0);
  if (!only.empty() && cfg.cluster.enabled) {
    auto& sets = cfg.cluster.sets;
    if (std::none_of(sets.begin(), sets.end(),
                     [&](const set_config& s) { return s.name == only; })) {
      std::string names;
      for (auto& s : sets)
        names += (names.empty() ? "" : ", ") + s.name;
      done(failed(self, cmd, errc::invalid_argument,
                  "no SET '" + only + "'; the SETs are " + names));
      return;
    }
  }
  with_cluster(self, cmd, done, [=](cluster_info& info) {
    auto out = reply_to(self, cmd);
    admin_table owners{"owners", {"set", "owner", "incarnation", "state",
                                  "count", "owner_epoch_max", "segments"}, {}};
    admin_table blocked{"blocked", {"set", "segment", "mode", "reason"}, {}};
    for (auto& view : info.sets) {
      if (!only.empty() && view.set != only)
        continue;
      for (auto& g : owner_groups(view))
        owners.rows.push_back(
          {view.set, g.owner.empty() ? "-" : g.owner,
           g.owner.empty() ? "-" : str(g.owner_incarnation), owner_state(view, g),
           str(static_cast<int64_t>(g.segments.size())),
           g.owner.empty() ? "-" : str(g.owner_epoch_max),
           segments_text(g.segments)});
      for (auto& s : view.blocked)
        blocked.rows.push_back({view.set, str(s.segment), block_mode(s), s.reason});
    }
    if (info.enabled) {
      out.tables.push_back(std::move(owners));
      out.tables.push_back(std::move(blocked));
      done(std::move(out));
      return;
    }
    // A node on its own serves its [ids] segments; blocks from segment health.
    auto& cfg = self->state.cfg;
    owners.rows.push_back({"-", cfg.node_name, "-", "serving",
                           str(static_cast<int64_t>(cfg.segments.size())), "-",
                           segments_text(cfg.segments)});
    self->request(cfg.health, ask_timeout(self), segment_atom::value)
      .then(
        [=](std::vector<segment_state>& states) mutable {
          auto t = blocked;
          for (auto& s : states)
            if (s.blocked)
              t.rows.push_back({"-", str(s.segment), block_mode(s), s.reason});
          out.tables.push_back(owners);
          out.tables.push_back(std::move(t));
          done(std::move(out));
        },
        [=](caf::error& err) mutable { done(failed(self, cmd, err)); });
  });
}

void envelope_state(admin_pointer self, const parsed_command& cmd,
                    int64_t id, admin_reply out, done_fn done) {
  self->request(self->state.cfg.store, ask_timeout(self), db_load_atom::value, id)
    .then(
      [=](envelope_snapshot& snap) mutable {
        auto& e = snap.env;
        auto add = [&](const char* k, std::string v) {
          out.fields.push_back({k, std::move(v)});
        };
        add("status", to_string(e.status));
        add("kind", to_string(e.kind));
        add("sender", e.sender);
        add("group", e.group);
        add("total_fen", str(e.total_fen));
        add("count", str(e.count));
        add("remaining_fen", str(e.remaining_fen));
        add("remaining_count", str(e.remaining_count));
        add("refunded_fen", str(e.refunded_fen));
        add("opens", str(static_cast<int64_t>(snap.opens.size())));
        add("epoch", str(e.epoch));
        add("created_at_ms", str(e.created_at_ms));
        add("paid_at_ms", str(e.paid_at_ms));
        add("expires_at_ms", str(e.expires_at_ms));
        add("archived", snap.archived ? "true" : "false");
        admin_table opens{"opens", {"seq", "user", "amount_fen", "opened_at_ms"}, {}};
        for (auto& o : snap.opens)
          opens.rows.push_back({str(o.seq), o.user, str(o.amount_fen),
                                str(o.opened_at_ms)});
        std::sort(opens.rows.begin(), opens.rows.end(), [](auto& a, auto& b) {
          return std::stoll(a[0]) < std::stoll(b[0]);
        });
        out.tables.push_back(std::move(opens));
        done(std::move(out));
      },
      [=](caf::error& err) mutable { done(failed(self, cmd, err)); });
}

void cmd_envelope(admin_pointer self, const parsed_command& cmd,
                  const admin_request& req, done_fn done) {
  auto id = *admin::parse_envelope_id(cmd.arg(0));
  auto segment = segment_of(id);
  auto set = set_of_segment(self, segment);
  // Another SET's envelope is in that SET's database: its nodes answer.
  here_or_in_set(self, cmd, req, set, done, [=] {
    with_cluster(self, cmd, done, [=](cluster_info& info) {
      auto out = reply_to(self, cmd);
      out.fields.push_back({"id", str(id)});
      out.fields.push_back({"segment", str(segment)});
      out.fields.push_back({"set", set.empty() ? "-" : set});
      std::string owner = info.enabled ? "-" : self->state.cfg.node_name;
      std::string owner_epoch = "-";
      if (auto* view = view_of(info, set))
        for (auto& o : view->owners)
          if (o.segment == segment) {
            owner = o.owner.empty() ? "-" : o.owner;
            owner_epoch = str(o.owner_epoch);
          }
      out.fields.push_back({"owner", owner});
      out.fields.push_back({"owner_epoch", owner_epoch});
      envelope_state(self, cmd, id, std::move(out), done);
    });
  });
}

void cmd_stats(admin_pointer self, const parsed_command& cmd,
               const admin_request& req, done_fn done) {
  auto& cfg = self->state.cfg;
  auto target = cmd.arg(0);
  if (!target.empty() && target != cfg.node_name) {
    with_cluster(self, cmd, done, [=](cluster_info& info) {
      for (auto& view : info.sets)
        if (auto* lease = find_lease(view, target)) {
          forward(self, cmd, req, target, lease->peer_host, lease->peer_port,
                  done);
          return;
        }
      done(failed(self, cmd, errc::not_found,
                  "no node '" + target + "' in the cluster view"
                    + (info.enabled ? "" : " (this node is not in a cluster)")));
    });
    return;
  }
  self->request(cfg.router, ask_timeout(self), stats_atom::value)
    .then(
      [=](node_stats& st) mutable {
        auto out = reply_to(self, cmd);
        for (auto& m : st.metrics)
          out.fields.push_back({m.name, str(m.value)});
        admin_table blocked{"blocked", {"segment", "mode", "reason"}, {}};
        for (auto& s : st.segments)
          if (s.blocked)
            blocked.rows.push_back({str(s.segment), block_mode(s), s.reason});
        out.tables.push_back(std::move(blocked));
        done(std::move(out));
      },
      [=](caf::error& err) mutable { done(failed(self, cmd, err)); });
}

// -- Actions (audited) -----------------------------------------------------------

void set_block(admin_pointer self, const parsed_command& cmd,
               const admin_request& req, bool block, done_fn done) {
  auto segment = *admin::parse_segment(cmd.arg(0));
  // A segment's block is recorded in its SET's database: a node of that SET
  // does it (and the others of the SET adopt it at their next renewal).
  here_or_in_set(self, cmd, req, set_of_segment(self, segment), done, [=] {
    segment_request sr;
    sr.segment = segment;
    sr.block = block;
    sr.reason = cmd.arg(1);
    if (block && sr.reason.empty())
      sr.reason = "blocked by operator " + req.user;
    self->request(self->state.cfg.health, ask_timeout(self), segment_atom::value,
                  sr)
      .then(
        [=](segment_state& s) mutable {
          auto out = reply_to(self, cmd);
          out.message = "segment " + str(s.segment)
                        + (s.blocked ? std::string{" blocked ("} + block_mode(s)
                                         + (s.reason.empty() ? "" : ": " + s.reason)
                                         + ")"
                                     : " not blocked");
          out.fields.push_back({"segment", str(s.segment)});
          out.fields.push_back({"blocked", s.blocked ? "true" : "false"});
          out.fields.push_back({"mode", s.blocked ? block_mode(s) : "-"});
          out.fields.push_back({"reason", s.reason});
          done(std::move(out));
        },
        [=](caf::error& err) mutable { done(failed(self, cmd, err)); });
  });
}

void cmd_block(admin_pointer self, const parsed_command& cmd,
               const admin_request& req, done_fn done) {
  set_block(self, cmd, req, true, std::move(done));
}

void cmd_unblock(admin_pointer self, const parsed_command& cmd,
                 const admin_request& req, done_fn done) {
  set_block(self, cmd, req, false, std::move(done));
}

void cmd_reconcile(admin_pointer self, const parsed_command& cmd,
                   const admin_request&, done_fn done) {
  int64_t since_ms = 0;
  if (cmd.has("--since")) {
    auto since = admin::parse_since(cmd.options.at("--since"),
                                    self->state.cfg.now_ms());
    if (!since) {
      done(failed(self, cmd, since.error().code, since.error().message));
      return;
    }
    since_ms = *since;
  }
  self->request(self->state.cfg.reconciler, ask_timeout(self),
                reconcile_atom::value, since_ms)
    .then(
      [=](reconcile_report& r) mutable {
        auto out = reply_to(self, cmd);
        int64_t open_problems = 0;
        admin_table t{"discrepancies", {"kind", "envelope", "user", "repaired",
                                        "detail"}, {}};
        for (auto& d : r.discrepancies) {
          open_problems += d.repaired ? 0 : 1;
          t.rows.push_back({d.kind, str(d.envelope_id), d.user.empty() ? "-" : d.user,
                            d.repaired ? "true" : "false", d.detail});
        }
        auto add = [&](const char* k, int64_t v) {
          out.fields.push_back({k, str(v)});
        };
        add("since_ms", r.since_ms);
        add("envelopes_checked", r.envelopes_checked);
        add("opens_checked", r.opens_checked);
        add("accounts_checked", r.accounts_checked);
        add("wallets_fen", r.wallets_fen);
        add("escrow_fen", r.escrow_fen);
        add("external_fen", r.external_fen);
        add("relay_pending", r.relay_pending);
        add("discrepancies", static_cast<int64_t>(r.discrepancies.size()));
        out.fields.push_back({"clean", r.discrepancies.empty() ? "true" : "false"});
        out.tables.push_back(std::move(t));
        if (r.discrepancies.empty()) {
          out.message = "reconciled: clean";
        } else if (open_problems == 0) {
          out.message = "reconciled: " + str(static_cast<int64_t>(r.discrepancies.size()))
                        + " discrepancies, all repaired";
        } else {
          out.error = "discrepancies";
          out.message = str(open_problems) + " discrepancies not repaired";
        }
        done(std::move(out));
      },
      [=](caf::error& err) mutable { done(failed(self, cmd, err)); });
}

// drain NODE, undrain NODE, rebalance [--dry-run]: the membership carries
// them out (and passes drain and undrain on to NODE when it is another).
void control(admin_pointer self, const parsed_command& cmd,
             const admin_request&, control_request req, done_fn done) {
  auto& cfg = self->state.cfg;
  if (!cfg.membership) {
    done(failed(self, cmd, errc::invalid_argument,
                "this node runs on its own, not in a cluster: there is "
                "nothing to drain or rebalance"));
    return;
  }
  self->request(cfg.membership, ask_timeout(self), drain_atom::value, req)
    .then(
      [=](control_result& r) mutable {
        auto out = reply_to(self, cmd);
        out.message = r.message;
        if (req.action != control_action::rebalance) {
          out.fields.push_back({"node", r.node});
          out.fields.push_back({"draining", r.draining ? "true" : "false"});
          out.fields.push_back({"owned", str(r.owned)});
        } else {
          out.fields.push_back({"dry_run", req.dry_run ? "true" : "false"});
          out.fields.push_back({"moves", str(static_cast<int64_t>(r.moves.size()))});
          admin_table t{"moves", {"segment", "from", "to"}, {}};
          for (auto& m : r.moves)
            t.rows.push_back({str(m.segment), m.from, m.to});
          out.tables.push_back(std::move(t));
        }
        done(std::move(out));
      },
      [=](caf::error& err) mutable { done(failed(self, cmd, err)); });
}

void cmd_drain(admin_pointer self, const parsed_command& cmd,
               const admin_request& req, done_fn done) {
  control(self, cmd, req, {control_action::drain, cmd.arg(0), false},
          std::move(done));
}

void cmd_undrain(admin_pointer self, const parsed_command& cmd,
                 const admin_request& req, done_fn done) {
  control(self, cmd, req, {control_action::undrain, cmd.arg(0), false},
          std::move(done));
}

void cmd_rebalance(admin_pointer self, const parsed_command& cmd,
                   const admin_request& req, done_fn done) {
  control(self, cmd, req, {control_action::rebalance, "", cmd.has("--dry-run")},
          std::move(done));
}

// -- The command table --------------------------------------------------------------

const std::map<std::string, handler_fn>& handlers() {
  static const std::map<std::string, handler_fn> table{
    {"nodes", cmd_nodes},
    {"zones", cmd_zones},
    {"sets", cmd_sets},
    {"segments", cmd_segments},
    {"envelope", cmd_envelope},
    {"stats", cmd_stats},
    {"block", cmd_block},
    {"unblock", cmd_unblock},
    {"reconcile", cmd_reconcile},
    {"drain", cmd_drain},
    {"undrain", cmd_undrain},
    {"rebalance", cmd_rebalance},
    // migrate ID NODE, with its command_spec in commands.cpp. A command
    // for another node finds the node's lease as cmd_stats does and
    // forward()s to it; actions are audited by handle() below.
  };
  return table;
}

std::string peer_of(admin_pointer self) {
  auto& sender = self->current_sender();
  if (!sender)
    return "-";
  return caf::to_string(sender->node());
}

// The words after the command as parsed (a reason as one argument,
// options as --name=value), or as sent when they did not parse.
std::vector<std::string> audit_args(const admin_request& req,
                                    const parsed_command* cmd) {
  if (cmd == nullptr)
    return req.words.size() > 1 ? std::vector<std::string>(req.words.begin() + 1,
                                                           req.words.end())
                                : std::vector<std::string>{};
  auto out = cmd->args;
  for (auto& [name, value] : cmd->options)
    out.push_back(value.empty() ? name : name + "=" + value);
  return out;
}

void audit(admin_pointer self, const admin_request& req, const std::string& peer,
           const std::string& credential, std::vector<std::string> args,
           const admin_reply& reply) {
  auto& st = self->state;
  admin::audit_entry e;
  e.at_ms = st.cfg.now_ms();
  e.node = st.cfg.node_name;
  e.credential = credential;
  e.user = req.user;
  e.origin = req.origin;
  e.peer = peer;
  e.forwarded_by = req.forwarded_by;
  e.command = req.words.empty() ? "" : req.words[0];
  e.args = std::move(args);
  e.result = reply.error.empty() ? "ok" : reply.error;
  e.message = reply.message;
  if (!st.audit->write(e))
    admin_log().error("audit_write_failed file={}", st.audit->path());
}

caf::result<admin_reply> handle(admin_pointer self, admin_request& req) {
  auto& st = self->state;
  auto peer = peer_of(self);
  auto command = req.words.empty() ? std::string{} : req.words[0];
  if (!secrets_equal(req.secret, st.cfg.secret)) {
    ++st.refused;
    admin_log().warn("admin_refused user={} origin={} peer={} command={} refused={}",
                     req.user, req.origin, peer, command, st.refused);
    auto reply = admin_failure(st.cfg.node_name, command, "permission_denied",
                               "wrong operator secret");
    audit(self, req, peer, "-", audit_args(req, nullptr), reply);
    return reply;
  }
  auto parsed = admin::parse_words(req.words);
  if (!parsed)
    return admin_failure(st.cfg.node_name, command,
                         to_string(parsed.error().code), parsed.error().message);
  auto cmd = *parsed;
  auto i = handlers().find(cmd.name());
  if (i == handlers().end())
    return admin_failure(st.cfg.node_name, cmd.name(), "invalid_argument",
                         "'" + cmd.name() + "' is a command of the console, "
                         "not of the node");
  auto rp = self->make_response_promise<admin_reply>();
  bool action = cmd.spec->action;
  auto credential = st.cfg.credential;
  admin_log().info("admin_command user={} origin={} peer={} command={}{}", req.user,
                   req.origin, peer, cmd.name(),
                   req.forwarded_by.empty() ? "" : " forwarded_by=" + req.forwarded_by);
  auto args = audit_args(req, &cmd);
  auto done = [=](admin_reply reply) mutable {
    if (action)
      audit(self, req, peer, credential, args, reply);
    rp.deliver(std::move(reply));
  };
  i->second(self, cmd, req, done);
  return rp;
}

admin_actor::behavior_type admin_impl(admin_pointer self, admin_settings cfg,
                                      std::shared_ptr<admin::audit_log> log) {
  if (!cfg.now_ms)
    cfg.now_ms = system_now_ms;
  self->state.cfg = std::move(cfg);
  self->state.audit = std::move(log);
  // Other nodes' admins find this one by name over the node link. The
  // registry holds a strong reference: it is dropped when this actor ends
  // (unless a restarted admin took the name meanwhile), or the actor
  // system would wait for this thread forever at shutdown.
  auto& registry = self->system().registry();
  registry.put(admin_registry_name, caf::actor_cast<caf::strong_actor_ptr>(self));
  auto* sysp = &self->system();
  auto me = self->address();
  self->attach_functor([sysp, me] {
    auto& reg = sysp->registry();
    if (caf::actor_cast<caf::actor_addr>(reg.get(admin_registry_name)) == me)
      reg.erase(admin_registry_name);
  });
  return {
    [=](admin_atom, admin_request& req) { return handle(self, req); },
  };
}

} // namespace

bool secrets_equal(const std::string& a, const std::string& b) {
  // Every byte of the longer one is looked at, whatever differs first.
  volatile unsigned char diff = a.size() == b.size() ? 0 : 1;
  auto n = std::max(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    auto x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    auto y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff = diff | static_cast<unsigned char>(x ^ y);
  }
  return diff == 0 && !b.empty();
}

caf::expected<admin_actor> spawn_admin(caf::actor_system& sys,
                                       const admin_settings& cfg) {
  auto log = std::make_shared<admin::audit_log>();
  std::string err;
  if (!log->open(cfg.audit_file, err))
    return make_error(errc::invalid_argument, err);
  // Detached: the audit log's writes never hold a scheduler thread.
  return sys.spawn<caf::detached>(admin_impl, cfg, std::move(log));
}

} // namespace hb
