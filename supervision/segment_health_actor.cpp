#include "supervision/segment_health_actor.hpp"

#include <chrono>
#include <deque>
#include <map>
#include <set>

#include "caf/all.hpp"

#include <spdlog/spdlog.h>

#include "envelope/envelope_actor.hpp"
#include "runtime/errors.hpp"
#include "runtime/log.hpp"
#include "domain/envelope_id.hpp"

namespace hb {

namespace {

using clock_type = caf::actor_clock::clock_type;
constexpr auto store_timeout = std::chrono::seconds(10);

struct segment_info {
  std::deque<clock_type::time_point> faults;  // within the window
  uint64_t calls = 0;
  uint64_t faults_total = 0;
  segment_state state;
  bool probing = false;
  clock_type::time_point changed_at;  // last change made on this node
};

struct health_state {
  segment_health_settings cfg;
  segment_store store;
  std::map<int32_t, segment_info> segments;
  std::vector<blocked_sink> subscribers;
  bool owned_known = false;  // in a cluster: probe only what this node owns
  std::set<int32_t> owned;
  static inline const char* name = "hb.segment_health";
};

using health_pointer = segment_health_actor::stateful_pointer<health_state>;

std::vector<int32_t> blocked_list(const health_state& st) {
  std::vector<int32_t> out;
  for (auto& kv : st.segments)
    if (kv.second.state.blocked)
      out.push_back(kv.first);
  return out;
}

void announce(health_pointer self) {
  auto list = blocked_list(self->state);
  for (auto& sub : self->state.subscribers)
    self->send(sub, blocked_atom::value, list);
}

// Changes a segment's state, records it durably and tells the subscribers.
void set_state(health_pointer self, int32_t segment, bool blocked,
               bool manual, std::string reason) {
  auto& info = self->state.segments[segment];
  info.state = segment_state{segment, blocked, manual, std::move(reason)};
  info.faults.clear();
  info.changed_at = self->clock().now();
  if (blocked)
    actors_log().warn("segment_blocked segment={} mode={} reason={}", segment,
                      manual ? "manual" : "auto", log_safe(info.state.reason));
  else
    actors_log().info("segment_unblocked segment={} reason={}", segment,
                      log_safe(info.state.reason));
  self->request(self->state.store, store_timeout, db_segment_set_atom::value,
                info.state)
    .then([](caf::ok_atom) {},
          [segment](caf::error& err) {
            // The in-memory state still holds; the next change records it.
            actors_log().warn("segment_state_not_recorded segment={} error={}",
                              segment, to_failure(err).message);
          });
  announce(self);
}

void on_report(health_pointer self, int32_t segment, bool fault) {
  auto& st = self->state;
  auto& info = st.segments[segment];
  ++info.calls;
  if (!fault || info.state.blocked)
    return;
  ++info.faults_total;
  auto now = self->clock().now();
  info.faults.push_back(now);
  auto window = std::chrono::milliseconds(st.cfg.window_ms);
  while (!info.faults.empty() && now - info.faults.front() > window)
    info.faults.pop_front();
  if (info.faults.size() >= st.cfg.fault_threshold)
    set_state(self, segment, true, false,
              std::to_string(info.faults.size()) + " database faults within "
                + std::to_string(st.cfg.window_ms) + " ms");
}

void probe(health_pointer self) {
  auto& st = self->state;
  auto day = utc_day_of(st.cfg.now_ms());
  for (auto& kv : st.segments) {
    auto& info = kv.second;
    if (!info.state.blocked || info.state.manual || info.probing)
      continue;
    if (st.owned_known && st.owned.count(kv.first) == 0)
      continue;  // its owner probes it
    info.probing = true;
    auto segment = kv.first;
    self->request(st.store, store_timeout, db_probe_atom::value, segment, day)
      .then(
        [=](caf::ok_atom) {
          auto& info = self->state.segments[segment];
          info.probing = false;
          if (info.state.blocked && !info.state.manual)
            set_state(self, segment, false, false, "probe succeeded");
        },
        [=](caf::error& err) {
          self->state.segments[segment].probing = false;
          actors_log().debug("segment_probe_failed segment={} error={}",
                             segment, to_failure(err).message);
        });
  }
}

// Adopts the blocks that the SET's database records (set by any node of
// the SET) and lifts the ones it no longer records, except for segments
// this node changed itself moments ago (its own write may not be in the
// view yet).
void sync_from_database(health_pointer self,
                        const std::vector<segment_state>& recorded) {
  auto& st = self->state;
  auto now = self->clock().now();
  auto recent = [&](const segment_info& info) {
    return now - info.changed_at < std::chrono::seconds(3);
  };
  std::map<int32_t, const segment_state*> in_db;
  for (auto& s : recorded)
    if (s.blocked)
      in_db[s.segment] = &s;
  bool changed = false;
  for (auto& kv : in_db) {
    auto& info = st.segments[kv.first];
    if (recent(info) || (info.state.blocked
                         && info.state.manual == kv.second->manual))
      continue;
    info.state = *kv.second;
    info.faults.clear();
    changed = true;
    actors_log().warn("segment_blocked segment={} mode={} reason={} "
                      "(recorded by another node)",
                      kv.first, info.state.manual ? "manual" : "auto",
                      log_safe(info.state.reason));
  }
  for (auto& kv : st.segments) {
    auto& info = kv.second;
    if (!info.state.blocked || in_db.count(kv.first) > 0 || recent(info))
      continue;
    info.state = segment_state{kv.first, false, false,
                               "unblocked by another node"};
    changed = true;
    actors_log().info("segment_unblocked segment={} reason=unblocked by "
                      "another node", kv.first);
  }
  if (changed)
    announce(self);
}

segment_health_actor::behavior_type health_impl(health_pointer self,
                                                segment_store store,
                                                segment_health_settings cfg) {
  if (!cfg.now_ms)
    cfg.now_ms = system_now_ms;
  self->state.cfg = std::move(cfg);
  self->state.store = std::move(store);
  // Segments blocked before a restart stay blocked.
  self->request(self->state.store, store_timeout, db_segments_atom::value)
    .then(
      [=](std::vector<segment_state>& blocked) {
        for (auto& s : blocked) {
          self->state.segments[s.segment].state = s;
          actors_log().warn("segment_blocked segment={} mode={} reason={} "
                            "(recorded before start)",
                            s.segment, s.manual ? "manual" : "auto",
                            log_safe(s.reason));
        }
        if (!blocked.empty())
          announce(self);
      },
      [](caf::error& err) {
        actors_log().warn("segment_states_not_loaded error={}",
                          to_failure(err).message);
      });
  self->delayed_send(self, std::chrono::milliseconds(self->state.cfg.probe_interval_ms),
                     tick_atom::value);
  return {
    [=](seg_report_atom, int32_t segment, bool fault) {
      on_report(self, segment, fault);
    },
    [=](subscribe_atom, blocked_sink& sub) {
      self->state.subscribers.push_back(sub);
      self->send(sub, blocked_atom::value, blocked_list(self->state));
    },
    [=](segment_atom) {
      std::vector<segment_state> out;
      for (auto& kv : self->state.segments)
        if (kv.second.state.blocked)
          out.push_back(kv.second.state);
      return out;
    },
    [=](segment_atom, segment_request& req) -> caf::result<segment_state> {
      if (req.segment < 0 || req.segment >= segment_count)
        return make_error(errc::invalid_argument,
                          "segment must be in [0, 999]");
      set_state(self, req.segment, req.block, req.block,
                req.reason.empty() ? std::string{"operator"} : req.reason);
      return self->state.segments[req.segment].state;
    },
    [=](segment_sync_atom, std::vector<segment_state>& recorded) {
      sync_from_database(self, recorded);
    },
    [=](owned_atom, std::vector<int32_t>& owned) {
      self->state.owned_known = true;
      self->state.owned = std::set<int32_t>(owned.begin(), owned.end());
    },
    [=](tick_atom) {
      probe(self);
      self->delayed_send(self,
                         std::chrono::milliseconds(self->state.cfg.probe_interval_ms),
                         tick_atom::value);
    },
  };
}

} // namespace

segment_health_actor spawn_segment_health(caf::actor_system& sys,
                                          segment_store store,
                                          const segment_health_settings& cfg) {
  return sys.spawn(health_impl, std::move(store), cfg);
}

} // namespace hb
