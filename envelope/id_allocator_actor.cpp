#include "envelope/id_allocator_actor.hpp"

#include <algorithm>
#include <chrono>
#include <deque>

#include "caf/all.hpp"

#include <spdlog/spdlog.h>

#include "runtime/log.hpp"

#include "envelope/envelope_actor.hpp"
#include "runtime/errors.hpp"
#include "domain/envelope_id.hpp"

namespace hb {

namespace {

constexpr auto lease_timeout = std::chrono::seconds(10);

// A leased block of sequence numbers [next, end) of one segment and day.
struct block {
  int32_t day = 0;
  int64_t next = 0;
  int64_t end = 0;
  bool leasing = false;
};

struct allocator_state {
  id_allocator_settings cfg;
  segment_store store;
  std::vector<block> blocks;  // parallel to cfg.segments
  size_t cursor = 0;          // round-robin position
  std::deque<caf::typed_response_promise<int64_t>> waiting;
  std::vector<bool> blocked;  // parallel to cfg.segments
  std::vector<int32_t> blocked_list;  // as segment health last said
  static inline const char* name = "hb.id_allocator";
};

using allocator_pointer = id_allocator_actor::stateful_pointer<allocator_state>;

// Takes an id from the first segment at or after the cursor that has one.
int64_t take_id(allocator_state& st, int32_t today) {
  auto n = st.cfg.segments.size();
  for (size_t k = 0; k < n; ++k) {
    auto i = (st.cursor + k) % n;
    auto& b = st.blocks[i];
    if (!st.blocked[i] && b.day == today && b.next < b.end) {
      st.cursor = (i + 1) % n;
      return make_envelope_id(today, b.next++, st.cfg.segments[i]);
    }
  }
  return 0;
}

void serve_waiting(allocator_pointer self);

int index_of(const allocator_state& st, int32_t segment) {
  auto& segs = st.cfg.segments;
  auto it = std::find(segs.begin(), segs.end(), segment);
  return it == segs.end() ? -1 : static_cast<int>(it - segs.begin());
}

void mark_blocked(allocator_state& st) {
  for (size_t i = 0; i < st.cfg.segments.size(); ++i)
    st.blocked[i] = std::find(st.blocked_list.begin(), st.blocked_list.end(),
                              st.cfg.segments[i])
                    != st.blocked_list.end();
}

// The node's segments changed (a cluster node took or lost some): keep the
// leased blocks of those it keeps.
void set_segments(allocator_pointer self, std::vector<int32_t> segments) {
  auto& st = self->state;
  if (segments == st.cfg.segments)
    return;
  std::vector<block> blocks(segments.size());
  for (size_t i = 0; i < segments.size(); ++i)
    if (auto old = index_of(st, segments[i]); old >= 0)
      blocks[i] = st.blocks[static_cast<size_t>(old)];
  st.cfg.segments = std::move(segments);
  st.blocks = std::move(blocks);
  st.blocked.assign(st.cfg.segments.size(), false);
  st.cursor = 0;
  mark_blocked(st);
  if (st.cfg.segments.empty()) {
    for (auto& rp : st.waiting)
      rp.deliver(make_error(errc::not_owner, "this node owns no id segment"));
    st.waiting.clear();
    return;
  }
  serve_waiting(self);
}

// Leases a new block for segment index `i` unless a lease is under way.
void lease(allocator_pointer self, size_t i, int32_t today) {
  auto& b = self->state.blocks[i];
  if (b.leasing)
    return;
  b.leasing = true;
  auto segment = self->state.cfg.segments[i];
  auto size = self->state.cfg.lease_block;
  self->request(self->state.store, lease_timeout, db_lease_atom::value,
                lease_request{segment, today, size})
    .then(
      [=](int64_t first) {
        auto idx = index_of(self->state, segment);
        if (idx < 0)
          return;  // no longer this node's segment
        auto& b = self->state.blocks[static_cast<size_t>(idx)];
        b.leasing = false;
        if (first + size > sequence_max) {
          actors_log().error("segment_day_full segment={} day={}", segment, today);
          return;
        }
        b.day = today;
        b.next = first;
        b.end = first + size;
        serve_waiting(self);
      },
      [=](caf::error& err) {
        if (auto idx = index_of(self->state, segment); idx >= 0)
          self->state.blocks[static_cast<size_t>(idx)].leasing = false;
        auto f = to_failure(err);
        actors_log().warn("id_lease_failed segment={} error={}", segment, f.message);
        // Waiters would wait forever otherwise: fail them, they retry.
        for (auto& rp : self->state.waiting)
          rp.deliver(make_error(errc::unavailable,
                                "cannot allocate an envelope id: " + f.message));
        self->state.waiting.clear();
      });
}

// Keeps the segment under the cursor stocked before it runs dry; blocked
// segments are passed over.
void top_up(allocator_pointer self, int32_t today) {
  auto& st = self->state;
  auto n = st.cfg.segments.size();
  if (n == 0)
    return;
  for (size_t k = 0; k < n && st.blocked[st.cursor]; ++k)
    st.cursor = (st.cursor + 1) % n;
  if (st.blocked[st.cursor])
    return;
  auto i = st.cursor;
  auto& b = st.blocks[i];
  if (b.day != today || b.end - b.next < st.cfg.lease_block / 4)
    lease(self, i, today);
}

void serve_waiting(allocator_pointer self) {
  auto& st = self->state;
  auto today = utc_day_of(st.cfg.now_ms());
  while (!st.waiting.empty()) {
    auto id = take_id(st, today);
    if (id == 0)
      break;
    st.waiting.front().deliver(id);
    st.waiting.pop_front();
  }
  top_up(self, today);
}

id_allocator_actor::behavior_type allocator_impl(allocator_pointer self,
                                                 segment_store store,
                                                 id_allocator_settings cfg) {
  auto& st = self->state;
  if (!cfg.now_ms)
    cfg.now_ms = system_now_ms;
  st.cfg = std::move(cfg);
  st.store = std::move(store);
  st.blocks.resize(st.cfg.segments.size());
  st.blocked.resize(st.cfg.segments.size(), false);
  return {
    [=](blocked_atom, std::vector<int32_t>& segments) {
      auto& st = self->state;
      st.blocked_list = std::move(segments);
      mark_blocked(st);
      if (!st.cfg.segments.empty())
        serve_waiting(self);
    },
    [=](owned_atom, std::vector<int32_t>& segments) {
      set_segments(self, std::move(segments));
    },
    [=](next_id_atom) -> caf::result<int64_t> {
      auto& st = self->state;
      auto today = utc_day_of(st.cfg.now_ms());
      if (st.cfg.segments.empty())
        return make_error(errc::not_owner, "this node owns no id segment");
      if (st.waiting.empty()) {
        if (auto id = take_id(st, today)) {
          top_up(self, today);
          return id;
        }
      }
      if (std::find(st.blocked.begin(), st.blocked.end(), false)
          == st.blocked.end())
        return make_error(errc::unavailable,
                          "every id segment of this node is blocked; retry");
      if (st.waiting.size() >= st.cfg.waiting_max)
        return make_error(errc::busy, "id allocation is backed up; retry");
      auto rp = self->make_response_promise<int64_t>();
      st.waiting.push_back(rp);
      top_up(self, today);
      return rp;
    },
  };
}

} // namespace

id_allocator_actor spawn_id_allocator(caf::actor_system& sys, segment_store store,
                                      const id_allocator_settings& cfg) {
  return sys.spawn(allocator_impl, std::move(store), cfg);
}

} // namespace hb
