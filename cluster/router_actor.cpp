#include "cluster/router_actor.hpp"

#include <algorithm>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <unordered_map>
#include <unordered_set>

#include "caf/all.hpp"

#include <spdlog/spdlog.h>

#include "runtime/log.hpp"

#include "runtime/errors.hpp"
#include "domain/envelope_id.hpp"

namespace hb {

namespace {

constexpr auto create_timeout = std::chrono::seconds(10);

struct router_state {
  router_settings cfg;
  registry_actor registry;
  id_allocator_actor ids;
  router_store store;
  reconciler_actor reconciler;
  uint32_t creates_inflight = 0;
  std::unordered_set<int32_t> blocked;  // segments blocked by segment health
  uint64_t create_retries = 0;
  route_table routes;              // in a cluster: where segments are served
  uint32_t forwards_inflight = 0;
  size_t next_creator = 0;
  // Requests held while their segment is being handed over: each routes
  // itself again (go) or gives up (fail) when its time is over.
  struct held_request {
    caf::actor_clock::time_point until;
    std::function<void()> go;
    std::function<void()> fail;
  };
  std::unordered_map<int32_t, std::deque<held_request>> held;
  uint32_t held_count = 0;
  bool hold_timer = false;
  static inline const char* name = "hb.router";
};

using router_pointer = router_actor::stateful_pointer<router_state>;

envelope new_envelope(const create_request& req, int64_t id, int64_t now_ms) {
  envelope env;
  env.id = id;
  env.sender = req.sender;
  env.group = req.group;
  env.greeting = req.greeting;
  env.idempotency_key = req.idempotency_key;
  env.kind = req.kind;
  env.status = envelope_status::created;
  env.total_fen = req.total_fen;
  env.count = req.count;
  env.remaining_fen = req.total_fen;
  env.remaining_count = req.count;
  env.created_at_ms = now_ms;
  return env;
}

using create_promise = caf::typed_response_promise<envelope>;

// An error that names the owner's client gateway as a hint, when known.
caf::error with_hint(errc code, std::string message, const std::string& hint) {
  return make_error(code, std::move(message), hint);
}

bool in_cluster(const router_state& st) {
  return static_cast<bool>(st.cfg.membership);
}

void refresh_route(router_pointer self, int32_t segment) {
  if (auto& m = self->state.cfg.membership)
    self->send(m, refresh_atom::value, segment);
}

// Sends a request to another node's router within the forward deadline and
// answers `rp` with what comes back; a request that got no answer (the
// link died, the node is gone or slow) becomes a retryable UNAVAILABLE.
template <class Reply, class... Ts>
void forward_to(router_pointer self, const caf::actor& target,
                std::string owner, int32_t segment,
                caf::typed_response_promise<Reply> rp, Ts&&... xs) {
  auto& st = self->state;
  ++st.forwards_inflight;
  auto& m = st.cfg.metrics;
  if (m)
    m->cluster_forwarded.fetch_add(1, std::memory_order_relaxed);
  auto start = std::chrono::steady_clock::now();
  self->request(target, std::chrono::milliseconds(st.cfg.forward_timeout_ms),
                std::forward<Ts>(xs)...)
    .then(
      [=](Reply& reply) mutable {
        --self->state.forwards_inflight;
        if (auto& m = self->state.cfg.metrics)
          m->forward_latency_us.record(static_cast<uint64_t>(
            std::chrono::duration_cast<std::chrono::microseconds>(
              std::chrono::steady_clock::now() - start)
              .count()));
        rp.deliver(std::move(reply));
      },
      [=](caf::error& err) mutable {
        --self->state.forwards_inflight;
        if (err.category() == errc_category) {
          if (to_failure(err).code == errc::not_owner && segment >= 0)
            refresh_route(self, segment);
          rp.deliver(err);
          return;
        }
        if (auto& m = self->state.cfg.metrics)
          m->cluster_forward_failures.fetch_add(1, std::memory_order_relaxed);
        if (segment >= 0)
          refresh_route(self, segment);
        rp.deliver(make_error(errc::unavailable,
                              "node " + owner + " did not answer in time ("
                                + to_string(err) + "); retry"));
      });
}

// Whether the current request came over a node link (a forwarded one).
bool from_peer(router_pointer self) {
  auto& sender = self->current_sender();
  return sender && sender->node() != self->node();
}

// Where an envelope request goes: here (null error, local = true), to the
// owner's router (local = false, target set), or nowhere for now (error).
struct route_choice {
  caf::error err;
  bool local = true;
  bool hold = false;  // the segment is moving away: wait for its new route
  caf::actor target;
  std::string owner;
};

route_choice choose_route(router_pointer self, int64_t id) {
  auto& st = self->state;
  route_choice out;
  if (!in_cluster(st))
    return out;
  auto segment = segment_of(id);
  if (st.routes.segments.size() != static_cast<size_t>(segment_count)) {
    out.err = make_error(errc::unavailable,
                         "this node has not joined its cluster yet; retry");
    return out;
  }
  auto& r = st.routes.segments[static_cast<size_t>(segment)];
  if (r.moving) {
    out.hold = true;
    return out;
  }
  if (r.local)
    return out;
  out.local = false;
  out.owner = r.owner;
  if (st.routes.fenced && (r.owner.empty() || r.owner == st.cfg.node_name)) {
    // Also for a forwarded request: the segment is not elsewhere, this
    // node cannot prove it still owns it (its SET's database may be down).
    out.err = make_error(errc::unavailable,
                         "node " + st.cfg.node_name
                           + " is fenced (it lost its lease) and rejoining; "
                             "retry");
    return out;
  }
  if (from_peer(self)) {
    // Forwarded here by a node whose route is stale: never forward again.
    if (auto& m = st.cfg.metrics)
      m->cluster_not_owner.fetch_add(1, std::memory_order_relaxed);
    refresh_route(self, segment);
    out.err = with_hint(errc::not_owner,
                         "node " + st.cfg.node_name + " does not own segment "
                           + std::to_string(segment)
                           + (r.owner.empty() ? std::string{}
                                              : "; its owner is " + r.owner),
                         r.gateway);
    return out;
  }
  if (!r.router) {
    refresh_route(self, segment);
    out.err = with_hint(errc::unavailable,
                         "segment " + std::to_string(segment)
                           + " has no reachable owner right now"
                           + (r.owner.empty() ? std::string{}
                                              : " (last owner " + r.owner + ")")
                           + "; retry",
                         r.gateway);
    return out;
  }
  if (st.forwards_inflight >= st.cfg.forward_inflight_max) {
    out.err = make_error(errc::busy, "too many forwarded requests; retry");
    return out;
  }
  out.target = r.router;
  return out;
}

// One attempt: a fresh id, then the insert. A database fault in the id's
// segment (errc::unavailable) is retried with the next id, which the
// allocator takes from another segment -- the client never sees it.
void attempt_create(router_pointer self, create_request req,
                    create_promise rp, uint32_t attempt) {
  auto retry_or_fail = [=](caf::error& err) mutable {
    auto f = to_failure(err);
    if ((f.code == errc::unavailable || f.code == errc::not_owner)
        && attempt + 1 < self->state.cfg.create_attempts_max) {
      ++self->state.create_retries;
      actors_log().info("create_retried attempt={} error={}", attempt + 1,
                        f.message);
      attempt_create(self, std::move(req), std::move(rp), attempt + 1);
      return;
    }
    --self->state.creates_inflight;
    rp.deliver(err);
  };
  self->request(self->state.ids, create_timeout, next_id_atom::value)
    .then(
      [=](int64_t id) mutable {
        auto env = new_envelope(req, id, self->state.cfg.now_ms());
        auto& creator = self->state.cfg.creator;
        auto sent = creator ? self->request(creator, create_timeout,
                                            db_create_atom::value, std::move(env))
                            : self->request(self->state.store, create_timeout,
                                            db_create_atom::value, std::move(env));
        std::move(sent).then(
            [=](envelope& stored, bool created) mutable {
              if (created)
                actors_log().info("envelope_created envelope={} sender={} "
                                  "total_fen={} count={} kind={}",
                                  stored.id, log_safe(stored.sender),
                                  stored.total_fen,
                                  stored.count, to_string(stored.kind));
              --self->state.creates_inflight;
              rp.deliver(std::move(stored));
            },
            retry_or_fail);
      },
      retry_or_fail);
}

bool owns_any(const router_state& st) {
  for (auto& r : st.routes.segments)
    if (r.local)
      return true;
  return false;
}

caf::result<envelope> handle_create(router_pointer self, create_request& req) {
  auto& st = self->state;
  auto problem = validate(req, st.cfg.limits);
  if (problem.code != errc::none)
    return make_error(problem);
  if (st.creates_inflight >= st.cfg.creates_inflight_max)
    return make_error(errc::busy, "too many creates in flight; retry");
  if (in_cluster(st) && !from_peer(self) && !owns_any(st)) {
    // This node owns no segment (it joined late or lost them): a node that
    // owns some stores the envelope.
    if (st.routes.creators.empty())
      return make_error(errc::unavailable,
                        "no node of the cluster can take a create right now; "
                        "retry");
    if (st.forwards_inflight >= st.cfg.forward_inflight_max)
      return make_error(errc::busy, "too many forwarded requests; retry");
    auto target = st.routes.creators[st.next_creator++
                                     % st.routes.creators.size()];
    auto rp = self->make_response_promise<envelope>();
    forward_to<envelope>(self, target, "(creator)", -1, rp,
                         create_atom::value, std::move(req));
    return rp;
  }
  ++st.creates_inflight;
  auto rp = self->make_response_promise<envelope>();
  attempt_create(self, std::move(req), rp, 0);
  return rp;
}

// Requests for an envelope of a blocked segment fail fast instead of piling
// onto a failing database.
caf::error check_segment(router_pointer self, int64_t id) {
  if (self->state.blocked.count(segment_of(id)) == 0)
    return {};
  return make_error(errc::segment_unavailable,
                    "the envelope's segment " + std::to_string(segment_of(id))
                      + " is blocked after database faults; retry later");
}

// A snapshot of the node: its counters, then what the registry, the relay
// and segment health say. Parts that do not answer in time are left out,
// and the snapshot says so.
caf::result<node_stats> collect_stats(router_pointer self) {
  auto& cfg = self->state.cfg;
  auto out = std::make_shared<node_stats>();
  out->node_name = cfg.node_name;
  if (cfg.metrics)
    for (auto& kv : cfg.metrics->snapshot())
      out->metrics.push_back(metric{kv.first, kv.second});
  out->metrics.push_back(metric{"router.create_retries",
                                static_cast<int64_t>(self->state.create_retries)});
  out->metrics.push_back(metric{"segments.blocked",
                                static_cast<int64_t>(self->state.blocked.size())});
  out->metrics.push_back(metric{"cluster.forwards_inflight",
                                static_cast<int64_t>(self->state.forwards_inflight)});
  out->metrics.push_back(metric{"cluster.held_requests",
                                static_cast<int64_t>(self->state.held_count)});
  auto rp = self->make_response_promise<node_stats>();
  auto left = std::make_shared<int>(4);
  auto done = [=]() mutable {
    if (--*left > 0)
      return;
    std::sort(out->metrics.begin(), out->metrics.end(),
              [](const metric& a, const metric& b) { return a.name < b.name; });
    rp.deliver(std::move(*out));
  };
  auto missing = [=](const char* part) mutable {
    out->metrics.push_back(metric{std::string{"unavailable."} + part, 1});
    done();
  };
  auto timeout = std::chrono::seconds(5);
  self->request(self->state.registry, timeout, stats_atom::value)
    .then(
      [=](uint64_t live) mutable {
        out->metrics.push_back(
          metric{"envelopes.live", static_cast<int64_t>(live)});
        done();
      },
      [=](caf::error&) mutable { missing("registry"); });
  if (cfg.relay)
    self->request(cfg.relay, timeout, stats_atom::value)
      .then(
        [=](relay_stats& r) mutable {
          out->metrics.push_back(metric{"relay.pending", r.pending});
          out->metrics.push_back(metric{"relay.oldest_age_ms", r.oldest_age_ms});
          out->metrics.push_back(metric{"relay.failures", r.failures});
          done();
        },
        [=](caf::error&) mutable { missing("relay"); });
  else
    done();
  if (cfg.health)
    self->request(cfg.health, timeout, segment_atom::value)
      .then(
        [=](std::vector<segment_state>& segs) mutable {
          out->segments = std::move(segs);
          done();
        },
        [=](caf::error&) mutable { missing("segment_health"); });
  else
    done();
  if (cfg.membership)
    self->request(cfg.membership, timeout, stats_atom::value)
      .then(
        [=](cluster_info& info) mutable {
          out->cluster = std::move(info);
          done();
        },
        [=](caf::error&) mutable { missing("membership"); });
  else
    done();
  return rp;
}

void arm_hold_timer(router_pointer self);

// Requests held past their time get a retryable UNAVAILABLE.
void expire_held(router_pointer self) {
  auto& st = self->state;
  auto now = self->clock().now();
  for (auto it = st.held.begin(); it != st.held.end();) {
    auto& q = it->second;
    while (!q.empty() && q.front().until <= now) {
      auto fail = std::move(q.front().fail);
      q.pop_front();
      --st.held_count;
      fail();
    }
    it = q.empty() ? st.held.erase(it) : std::next(it);
  }
  arm_hold_timer(self);
}

void arm_hold_timer(router_pointer self) {
  auto& st = self->state;
  if (st.hold_timer || st.held_count == 0)
    return;
  st.hold_timer = true;
  self->delayed_send(self, std::chrono::milliseconds(100), tick_atom::value);
}

// Segments no longer moving: their held requests route again, in order.
void release_held(router_pointer self) {
  auto& st = self->state;
  std::vector<std::function<void()>> ready;
  for (auto it = st.held.begin(); it != st.held.end();) {
    auto seg = static_cast<size_t>(it->first);
    if (seg < st.routes.segments.size() && st.routes.segments[seg].moving) {
      ++it;
      continue;
    }
    for (auto& h : it->second)
      ready.push_back(std::move(h.go));
    st.held_count -= static_cast<uint32_t>(it->second.size());
    it = st.held.erase(it);
  }
  for (auto& go : ready)
    go();
}

// An envelope request routed again after it was held: to the local
// registry or the owner, as the route now says; the answer goes to `rp`.
// A held request that had come from a peer may be forwarded once more,
// to the node its segment just moved to (which never forwards it again).
template <class Reply, class Atom, class... Ts>
void reroute(router_pointer self, caf::typed_response_promise<Reply> rp,
             Atom atom, int64_t id, Ts... xs) {
  auto& st = self->state;
  auto choice = choose_route(self, id);
  if (choice.hold || choice.err || choice.local) {
    if (choice.err) {
      rp.deliver(choice.err);
      return;
    }
    if (choice.hold) {
      rp.deliver(make_error(errc::unavailable,
                            "the envelope's segment is moving again; retry"));
      return;
    }
    if (auto err = check_segment(self, id)) {
      rp.deliver(err);
      return;
    }
    self->request(st.registry, caf::infinite, atom, id, std::move(xs)...)
      .then([=](Reply& r) mutable { rp.deliver(std::move(r)); },
            [=](caf::error& err) mutable { rp.deliver(err); });
    return;
  }
  forward_to<Reply>(self, choice.target, choice.owner, segment_of(id), rp,
                    atom, id, std::move(xs)...);
}

// An envelope request: to the local registry, or forwarded to the owner,
// or held while its segment moves away from this node.
template <class Reply, class Atom, class... Ts>
caf::result<Reply> route_envelope(router_pointer self, Atom atom, int64_t id,
                                  Ts&&... xs) {
  auto choice = choose_route(self, id);
  if (choice.err)
    return std::move(choice.err);
  if (choice.hold) {
    auto& st = self->state;
    if (st.held_count >= st.cfg.hold_max)
      return make_error(errc::busy,
                        "too many requests waiting for moving segments; retry");
    auto rp = self->make_response_promise<Reply>();
    auto until = self->clock().now()
                 + std::chrono::milliseconds(st.cfg.hold_ms);
    auto go = [=, args = std::make_tuple(std::decay_t<Ts>(xs)...)]() mutable {
      std::apply(
        [&](auto&... a) { reroute<Reply>(self, rp, atom, id, std::move(a)...); },
        args);
    };
    auto fail = [=]() mutable {
      rp.deliver(make_error(errc::unavailable,
                            "the envelope's segment is still moving to another "
                            "node; retry"));
    };
    st.held[segment_of(id)].push_back(
      router_state::held_request{until, std::move(go), std::move(fail)});
    ++st.held_count;
    arm_hold_timer(self);
    return rp;
  }
  if (choice.local) {
    if (auto err = check_segment(self, id))
      return err;
    return self->delegate(self->state.registry, atom, id,
                          std::forward<Ts>(xs)...);
  }
  auto rp = self->make_response_promise<Reply>();
  forward_to<Reply>(self, choice.target, choice.owner, segment_of(id), rp,
                    atom, id, std::forward<Ts>(xs)...);
  return rp;
}

// Bad input is refused here, before it costs an actor or a query.
caf::error check_text(router_pointer self, const std::string& text,
                      const char* what) {
  auto problem = validate_text_id(text, what,
                                  self->state.cfg.limits.text_size_max);
  if (problem.code != errc::none)
    return make_error(problem);
  return {};
}

router_actor::behavior_type router_impl(router_pointer self,
                                        registry_actor registry,
                                        id_allocator_actor ids,
                                        router_store store,
                                        reconciler_actor reconciler,
                                        router_settings cfg) {
  auto& st = self->state;
  if (!cfg.now_ms)
    cfg.now_ms = system_now_ms;
  st.cfg = std::move(cfg);
  st.registry = std::move(registry);
  st.ids = std::move(ids);
  st.store = std::move(store);
  st.reconciler = std::move(reconciler);
  return {
    [=](create_atom, create_request& req) { return handle_create(self, req); },
    [=](grab_atom a, int64_t id,
        std::string& user) -> caf::result<grab_result> {
      if (auto err = check_text(self, user, "user"))
        return err;
      return route_envelope<grab_result>(self, a, id, std::move(user));
    },
    [=](open_atom a, int64_t id, std::string& user,
        int64_t deadline_ms) -> caf::result<open_result> {
      if (auto err = check_text(self, user, "user"))
        return err;
      return route_envelope<open_result>(self, a, id, std::move(user),
                                         deadline_ms);
    },
    [=](pay_atom a, int64_t id, std::string& txn,
        bool from_wallet) -> caf::result<envelope> {
      if (auto err = check_text(self, txn, "payment_txn"))
        return err;
      return route_envelope<envelope>(self, a, id, std::move(txn),
                                      from_wallet);
    },
    [=](get_atom a, int64_t id) -> caf::result<envelope_detail> {
      return route_envelope<envelope_detail>(self, a, id);
    },
    [=](refund_atom a, int64_t id) -> caf::result<int64_t> {
      return route_envelope<int64_t>(self, a, id);
    },
    [=](route_atom, route_table& routes) {
      self->state.routes = std::move(routes);
      if (self->state.held_count > 0)
        release_held(self);
    },
    [=](tick_atom) {
      self->state.hold_timer = false;
      expire_held(self);
    },
    [=](stats_atom) { return collect_stats(self); },
    [=](segment_atom a, segment_request& req) -> caf::result<segment_state> {
      if (!self->state.cfg.health)
        return make_error(errc::unavailable, "no segment health on this node");
      return self->delegate(self->state.cfg.health, a, std::move(req));
    },
    [=](drain_atom a, control_request& req) -> caf::result<control_result> {
      if (!self->state.cfg.membership)
        return make_error(errc::invalid_argument,
                          "this node runs on its own, not in a cluster: "
                          "there is nothing to drain or rebalance");
      return self->delegate(self->state.cfg.membership, a, std::move(req));
    },
    [=](blocked_atom, std::vector<int32_t>& segments) {
      self->state.blocked
        = std::unordered_set<int32_t>(segments.begin(), segments.end());
    },
    [=](history_atom, history_query& q) -> caf::result<history_page> {
      if (auto err = check_text(self, q.user, "user"))
        return err;
      if (q.limit < 1 || q.limit > 100)
        return make_error(errc::invalid_argument,
                          "limit must be between 1 and 100");
      return self->delegate(self->state.store, db_history_atom::value,
                            std::move(q));
    },
    [=](balance_atom, std::string& user) -> caf::result<balance_info> {
      if (auto err = check_text(self, user, "user"))
        return err;
      return self->delegate(self->state.store, db_balance_atom::value,
                            std::move(user));
    },
    [=](reconcile_atom a, int64_t since_ms) {
      return self->delegate(self->state.reconciler, a, since_ms);
    },
  };
}

} // namespace

router_actor spawn_router(caf::actor_system& sys, registry_actor registry,
                          id_allocator_actor ids, router_store store,
                          reconciler_actor reconciler,
                          const router_settings& cfg) {
  return sys.spawn(router_impl, std::move(registry), std::move(ids),
                   std::move(store), std::move(reconciler), cfg);
}

} // namespace hb
