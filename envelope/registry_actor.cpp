#include "envelope/registry_actor.hpp"

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

struct live_envelope {
  envelope_actor handle;
  uint64_t forwarded = 0;  // requests delegated to this activation
};

struct registry_state {
  registry_settings cfg;
  envelope_store store;
  std::unordered_map<int64_t, live_envelope> live;
  std::unordered_map<caf::actor_addr, int64_t> ids;  // for down messages
  // A planned move: the segments leaving, and the actors of theirs still
  // stopping (with the promise to answer once none is).
  std::unordered_set<int32_t> moving;
  std::unordered_set<caf::actor_addr> stopping;
  caf::typed_response_promise<int32_t> moved;
  int32_t moved_count = 0;
  bool cap_checked = false;  // asked for idle reports at the cap before
  caf::actor_clock::time_point cap_checked_at;
  static inline const char* name = "hb.registry";
};

using registry_pointer = registry_actor::stateful_pointer<registry_state>;

// The live actor of `id`, activating it when needed; nullptr at the cap.
live_envelope* find_or_activate(registry_pointer self, int64_t id) {
  auto& st = self->state;
  auto it = st.live.find(id);
  if (it != st.live.end())
    return &it->second;
  if (st.live.size() >= st.cfg.live_max)
    return nullptr;
  auto sink = caf::actor_cast<passivation_sink>(self);
  auto handle = spawn_envelope(self->system(), id, st.store, sink,
                               st.cfg.envelope);
  self->monitor(handle);
  st.ids.emplace(handle.address(), id);
  return &st.live.emplace(id, live_envelope{handle, 0}).first->second;
}

// Whether an idle healthy actor, quiet for quiet_ms, stays live: always
// while the node has room; beyond it the long idle go first (reported
// again after being kept: two idle periods or more), and the newly idle
// too once the node is half-way from keep_live to live_max; at the cap,
// none.
bool keeps(const registry_state& st, int64_t quiet_ms) {
  auto live = st.live.size();
  if (live >= st.cfg.live_max)
    return false;
  auto room = keep_live_of(st.cfg);
  if (live <= room)
    return true;
  if (room == 0)
    return false;
  auto cap = st.cfg.live_max;
  auto half_way = room + (cap > room ? (cap - room) / 2 : 0);
  bool newly_idle = quiet_ms < 2 * static_cast<int64_t>(st.cfg.envelope.idle_ms);
  return newly_idle && live <= half_way;
}

caf::error check_id(int64_t id) {
  envelope_id_parts parts;
  if (!parse_envelope_id(id, parts))
    return make_error(errc::not_found,
                      "no envelope with id " + std::to_string(id)
                        + " (not a valid envelope id)");
  return {};
}

// At the cap: asks every live actor quiet for cap_quiet_ms to report idle
// now (at most once per cap_check_ms); the idle reports then let them go
// (keeps() refuses at the cap), down to half-way from keep_live.
caf::error at_capacity(registry_pointer self) {
  auto& st = self->state;
  auto now = self->clock().now();
  if (!st.cap_checked
      || now - st.cap_checked_at
           >= std::chrono::milliseconds(st.cfg.cap_check_ms)) {
    st.cap_checked = true;
    st.cap_checked_at = now;
    actors_log().info("registry_at_cap live={} asking_quiet_ms={}",
                      st.live.size(), st.cfg.cap_quiet_ms);
    for (auto& kv : st.live)
      self->send(kv.second.handle, idle_check_atom::value,
                 static_cast<int64_t>(st.cfg.cap_quiet_ms));
  }
  return make_error(errc::busy, "too many live envelopes on this node; retry");
}

// Forwards one request; the envelope actor answers the original sender.
template <class Reply, class... Ts>
caf::result<Reply> forward(registry_pointer self, int64_t id, Ts&&... xs) {
  if (auto err = check_id(id))
    return err;
  if (self->state.moving.count(segment_of(id)) > 0)
    return make_error(errc::unavailable,
                      "the envelope's segment is moving to another node; "
                      "retry");
  auto entry = find_or_activate(self, id);
  if (entry == nullptr)
    return at_capacity(self);
  ++entry->forwarded;
  return self->delegate(entry->handle, std::forward<Ts>(xs)...);
}

registry_actor::behavior_type registry_impl(registry_pointer self,
                                            envelope_store store,
                                            registry_settings cfg) {
  self->state.cfg = std::move(cfg);
  self->state.store = std::move(store);
  self->set_down_handler([=](caf::down_msg& msg) {
    auto& st = self->state;
    auto it = st.ids.find(msg.source);
    if (it == st.ids.end())
      return;
    auto live = st.live.find(it->second);
    if (live != st.live.end() && live->second.handle.address() == msg.source)
      st.live.erase(live);
    st.ids.erase(it);
    if (st.stopping.erase(msg.source) > 0 && st.stopping.empty()
        && st.moved.pending())
      st.moved.deliver(st.moved_count);
  });
  return {
    [=](grab_atom a, int64_t id, std::string& user) {
      return forward<grab_result>(self, id, a, id, std::move(user));
    },
    [=](open_atom a, int64_t id, std::string& user, int64_t deadline_ms) {
      return forward<open_result>(self, id, a, id, std::move(user),
                                  deadline_ms);
    },
    [=](pay_atom a, int64_t id, std::string& txn, bool from_wallet) {
      return forward<envelope>(self, id, a, id, std::move(txn), from_wallet);
    },
    [=](get_atom a, int64_t id) {
      return forward<envelope_detail>(self, id, a, id);
    },
    [=](refund_atom a, int64_t id) {
      return forward<int64_t>(self, id, a, id);
    },
    [=](idle_atom, const idle_report& r) {
      auto& st = self->state;
      auto id = r.envelope_id;
      auto it = st.live.find(id);
      // Stop only when nothing forwarded is still on its way to the actor;
      // otherwise it reports idle again later.
      if (it == st.live.end() || it->second.forwarded != r.handled)
        return;
      // While the node has room, a healthy envelope stays: the next grab
      // of it needs no activation (~0.35 ms of PostgreSQL each, measured
      // under load; a burst of them stalled the opens for seconds).
      if (r.healthy && keeps(st, r.quiet_ms)) {
        self->send(it->second.handle, keep_atom::value);
        return;
      }
      self->send(it->second.handle, stop_atom::value);
      st.ids.erase(it->second.handle.address());
      st.live.erase(it);
      actors_log().debug("envelope_passivated envelope={}", id);
    },
    [=](stats_atom) -> uint64_t { return self->state.live.size(); },
    [=](fence_atom) {
      auto n = self->state.live.size();
      for (auto& kv : self->state.live)
        self->send(kv.second.handle, stop_atom::value);
      self->state.live.clear();
      self->state.ids.clear();
      actors_log().warn("envelopes_fenced stopped={}", n);
    },
    [=](handoff_atom, std::vector<int32_t>& segments) -> caf::result<int32_t> {
      auto& st = self->state;
      st.moving = std::unordered_set<int32_t>(segments.begin(), segments.end());
      if (st.moved.pending())
        st.moved.deliver(st.moved_count);  // superseded
      st.stopping.clear();
      st.moved_count = 0;
      for (auto it = st.live.begin(); it != st.live.end();) {
        if (st.moving.count(segment_of(it->first)) == 0) {
          ++it;
          continue;
        }
        self->send(it->second.handle, handoff_atom::value);
        st.stopping.insert(it->second.handle.address());
        ++st.moved_count;
        it = st.live.erase(it);
      }
      if (st.stopping.empty())
        return st.moved_count;
      actors_log().info("envelopes_moving segments={} stopping={}",
                        st.moving.size(), st.moved_count);
      st.moved = self->make_response_promise<int32_t>();
      return st.moved;
    },
    [=](stop_atom) {
      for (auto& kv : self->state.live)
        self->send(kv.second.handle, stop_atom::value);
      self->state.live.clear();
      self->state.ids.clear();
      self->quit();
    },
  };
}

} // namespace

registry_actor spawn_registry(caf::actor_system& sys, envelope_store store,
                              const registry_settings& cfg) {
  return sys.spawn(registry_impl, std::move(store), cfg);
}

} // namespace hb
