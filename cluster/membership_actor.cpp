#include "cluster/membership_actor.hpp"

#include <algorithm>
#include <chrono>
#include <map>
#include <set>

#include "caf/all.hpp"
#include "caf/io/middleman.hpp"
#include "caf/io/middleman_actor.hpp"

#include <spdlog/spdlog.h>

#include "runtime/errors.hpp"
#include "runtime/log.hpp"

namespace hb {

namespace {

using steady = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr auto link_timeout = std::chrono::seconds(2);

struct peer_link {
  peer_hello hello;
  caf::actor membership;
  int unanswered = 0;  // hellos in a row without an answer
};

// A linked peer that leaves this many hellos in a row unanswered is taken
// for lost although its link looks up (a node that was paused, a link that
// CAF keeps but that carries nothing): its routes go, and it is dialled
// again like any node that is not linked.
constexpr int unanswered_max = 3;

struct membership_state {
  membership_settings cfg;
  cluster_store store;
  caf::actor router;
  caf::io::middleman_actor mm;
  std::vector<int32_t> my_segments;  // every segment of this node's SET
  std::string my_address;            // "peer_host:peer_port"
  // The lease.
  int64_t incarnation = 0;  // of the current join; 0: not joined
  bool joined = false;
  bool lease_call = false;  // a join or renewal is in flight
  bool taking = false;
  bool wrong_database = false;
  steady::time_point joined_at;
  steady::time_point deadline;  // fence when passed without renewal
  set_view own;                 // this node's SET, from its database
  std::vector<int32_t> owned;   // segments this node owns now
  // Other SETs by name, merged: an owner row only ever moves to a higher
  // owner_epoch.
  std::map<std::string, set_view> others;
  // Links to peers, by node name; the addresses being dialled.
  std::map<std::string, peer_link> peers;
  std::map<caf::actor_addr, std::string> peer_by_addr;
  std::set<std::string> dialling;
  std::map<std::string, std::string> node_by_address;  // dialled ones
  std::set<std::string> refresh_sets;  // SETs to ask again at once
  std::map<std::string, size_t> sync_turn;  // per SET: which peer to ask
  route_table last_routes;
  bool routes_sent = false;
  // Planned moves: the round in flight (one at a time), the segments it
  // moves, whether to skip the settling time once (an operator's
  // rebalance), and a stop waiting for the node to be empty.
  bool handing = false;
  std::set<int32_t> handing_segments;
  bool rebalance_now = false;
  bool stopping = false;
  caf::typed_response_promise<int32_t> stopped;
  std::vector<std::string> warnings;
  static inline const char* name = "hb.membership";
};

using membership_pointer = membership_actor::stateful_pointer<membership_state>;

std::string address_of(const std::string& host, int32_t port) {
  return host + ":" + std::to_string(port);
}

bool split_address(const std::string& addr, std::string& host, uint16_t& port) {
  auto colon = addr.rfind(':');
  if (colon == std::string::npos)
    return false;
  host = addr.substr(0, colon);
  try {
    auto p = std::stoi(addr.substr(colon + 1));
    if (p <= 0 || p > 65535)
      return false;
    port = static_cast<uint16_t>(p);
  } catch (...) {
    return false;
  }
  return !host.empty();
}

// A fresh incarnation: microseconds of the wall clock, always above the
// last one of this process.
int64_t new_incarnation(int64_t last) {
  auto now = std::chrono::duration_cast<std::chrono::microseconds>(
               std::chrono::system_clock::now().time_since_epoch())
               .count();
  return std::max<int64_t>(now, last + 1);
}

peer_hello my_hello(const membership_state& st) {
  peer_hello h;
  h.node = st.cfg.node;
  h.set = st.cfg.set;
  h.zone = st.cfg.zone;
  h.incarnation = st.incarnation;
  h.router = st.router;
  h.gateway = st.cfg.gateway;
  return h;
}

bool same_routes(const route_table& a, const route_table& b) {
  if (a.fenced != b.fenced || a.segments.size() != b.segments.size()
      || a.creators.size() != b.creators.size())
    return false;
  for (size_t i = 0; i < a.segments.size(); ++i) {
    auto& x = a.segments[i];
    auto& y = b.segments[i];
    if (x.owner != y.owner || x.owner_epoch != y.owner_epoch
        || x.local != y.local || x.router != y.router || x.gateway != y.gateway
        || x.moving != y.moving)
      return false;
  }
  for (size_t i = 0; i < a.creators.size(); ++i)
    if (a.creators[i] != b.creators[i])
      return false;
  return true;
}

// The route of every segment from the views and the links, sent to the
// router when it changed.
void publish_routes(membership_pointer self) {
  auto& st = self->state;
  if (!st.router)
    return;
  route_table t;
  t.fenced = !st.joined;
  t.segments.resize(static_cast<size_t>(segment_count));
  std::set<std::string> owners_with_segments;
  auto add_view = [&](const set_view& view) {
    for (auto& row : view.owners) {
      if (row.segment < 0 || row.segment >= segment_count)
        continue;
      auto& r = t.segments[static_cast<size_t>(row.segment)];
      r.owner = row.owner;
      r.owner_epoch = row.owner_epoch;
      if (row.owner.empty())
        continue;
      if (auto* lease = find_lease(view, row.owner))
        if (lease->gateway_port != 0)
          r.gateway = address_of(lease->gateway_host, lease->gateway_port);
      if (row.owner == st.cfg.node) {
        r.local = st.joined && row.owner_incarnation == st.incarnation;
        r.moving = r.local && st.handing_segments.count(row.segment) > 0;
        if (r.local)
          owners_with_segments.insert(row.owner);
        continue;
      }
      auto it = st.peers.find(row.owner);
      if (it != st.peers.end() && it->second.hello.router) {
        r.router = it->second.hello.router;
        owners_with_segments.insert(row.owner);
      }
    }
  };
  add_view(st.own);
  for (auto& kv : st.others)
    add_view(kv.second);
  for (auto& name : owners_with_segments) {
    if (name == st.cfg.node)
      continue;
    auto it = st.peers.find(name);
    if (it != st.peers.end())
      t.creators.push_back(it->second.hello.router);
  }
  if (st.routes_sent && same_routes(t, st.last_routes))
    return;
  st.last_routes = t;
  st.routes_sent = true;
  caf::anon_send(st.router, route_atom::value, std::move(t));
}

void tell_owned(membership_pointer self, std::vector<int32_t> owned) {
  auto& st = self->state;
  if (owned == st.owned)
    return;
  actors_log().info("segments_owned node={} count={}", st.cfg.node,
                    owned.size());
  st.owned = owned;
  if (st.cfg.ids)
    self->send(st.cfg.ids, owned_atom::value, owned);
  if (st.cfg.health)
    self->send(st.cfg.health, owned_atom::value, std::move(owned));
}

void finish_stop(membership_pointer self);

// The node can no longer prove its lease: it stops serving before anyone
// else may take its segments, and joins again with a new incarnation.
void fence(membership_pointer self, const std::string& reason) {
  auto& st = self->state;
  if (!st.joined)
    return;
  actors_log().error("node_fenced node={} incarnation={} reason={}",
                     st.cfg.node, st.incarnation, reason);
  st.joined = false;
  if (st.cfg.identity)
    st.cfg.identity->incarnation.store(0);
  if (st.cfg.metrics)
    st.cfg.metrics->cluster_fences.fetch_add(1, std::memory_order_relaxed);
  if (st.cfg.registry)
    self->send(st.cfg.registry, fence_atom::value);
  tell_owned(self, {});
  publish_routes(self);
  if (st.stopping)
    finish_stop(self);
}

// Records the link to a peer that introduced itself (whichever side
// dialled), monitoring its membership the first time.
void link_peer(membership_pointer self, peer_hello h, const caf::actor& peer) {
  auto& st = self->state;
  auto& link = st.peers[h.node];
  bool fresh = link.membership != peer;
  link.hello = std::move(h);
  link.membership = peer;
  st.peer_by_addr[peer.address()] = link.hello.node;
  if (fresh) {
    self->monitor(peer);
    actors_log().info("peer_linked node={} peer={} set={} zone={}",
                      st.cfg.node, link.hello.node, link.hello.set,
                      link.hello.zone);
  }
  publish_routes(self);
}

void dial(membership_pointer self, const std::string& addr) {
  auto& st = self->state;
  if (addr == st.my_address || st.dialling.count(addr) > 0)
    return;
  if (auto it = st.node_by_address.find(addr);
      it != st.node_by_address.end() && st.peers.count(it->second) > 0)
    return;  // linked already
  std::string host;
  uint16_t port = 0;
  if (!split_address(addr, host, port))
    return;
  st.dialling.insert(addr);
  self->request(st.mm, link_timeout, caf::connect_atom::value, host, port)
    .then(
      [=](caf::node_id&, caf::strong_actor_ptr& ptr,
          std::set<std::string>&) {
        if (!ptr) {
          self->state.dialling.erase(addr);
          return;
        }
        auto peer = caf::actor_cast<caf::actor>(ptr);
        self->request(peer, link_timeout, hello_atom::value,
                      my_hello(self->state))
          .then(
            [=](peer_hello& h) {
              self->state.dialling.erase(addr);
              if (h.node == self->state.cfg.node)
                return;
              auto& st = self->state;
              st.node_by_address[addr] = h.node;
              link_peer(self, std::move(h), peer);
            },
            [=](caf::error&) { self->state.dialling.erase(addr); });
      },
      [=](caf::error& err) {
        self->state.dialling.erase(addr);
        actors_log().debug("peer_dial_failed address={} error={}", addr,
                           to_string(err));
      });
}

bool linked_to(const membership_state& st, const std::string& node) {
  return st.peers.count(node) > 0;
}

// Dials every node whose lease is current and that is not linked yet.
void dial_known(membership_pointer self) {
  auto& st = self->state;
  for (auto& seed : st.cfg.seeds)
    dial(self, seed);
  auto from_view = [&](const set_view& view) {
    for (auto& n : view.nodes)
      if (n.node != st.cfg.node && lease_alive(view, n)
          && !linked_to(st, n.node) && n.peer_port != 0)
        dial(self, address_of(n.peer_host, n.peer_port));
  };
  from_view(st.own);
  for (auto& kv : st.others)
    from_view(kv.second);
}

void take(membership_pointer self, std::vector<segment_owner> rows);
void maybe_give(membership_pointer self);

// Owner rows only ever move to a higher owner_epoch: a view read before a
// move that this node has learnt of already keeps the newer row.
void keep_newer_rows(const set_view& old, set_view& view) {
  std::map<int32_t, const segment_owner*> known;
  for (auto& row : old.owners)
    known[row.segment] = &row;
  for (auto& row : view.owners) {
    auto it = known.find(row.segment);
    if (it != known.end() && it->second->owner_epoch > row.owner_epoch)
      row = *it->second;
  }
}

// Applies owner rows as moved or taken (each only if newer).
void apply_rows(set_view& view, const std::vector<segment_owner>& rows) {
  for (auto& t : rows)
    for (auto& row : view.owners)
      if (row.segment == t.segment && t.owner_epoch > row.owner_epoch)
        row = t;
}

bool draining(const membership_state& st) {
  auto* me = find_lease(st.own, st.cfg.node);
  return me != nullptr && me->draining;
}

void check_capacity(membership_pointer self) {
  auto& st = self->state;
  auto w = zone_loss_warnings(st.own, st.cfg.zones,
                              static_cast<int32_t>(st.cfg.node_capacity_segments));
  if (w == st.warnings)
    return;
  for (auto& line : w)
    actors_log().warn("zone_loss_over_capacity node={} {}", st.cfg.node, line);
  if (w.empty() && !st.warnings.empty())
    actors_log().info("zone_loss_within_capacity node={}", st.cfg.node);
  st.warnings = std::move(w);
}

// A new view of this node's SET from its database.
void on_own_view(membership_pointer self, set_view view) {
  auto& st = self->state;
  keep_newer_rows(st.own, view);
  st.own = std::move(view);
  check_capacity(self);
  if (st.cfg.health)
    self->send(st.cfg.health, segment_sync_atom::value, st.own.blocked);
  tell_owned(self, owned_segments(st.own, st.cfg.node, st.incarnation));
  publish_routes(self);
  if (!st.joined || st.taking
      || steady::now() - st.joined_at < milliseconds(st.cfg.settle_ms))
    return;
  auto todo = segments_to_take(st.own, st.cfg.node, st.cfg.zones);
  if (!todo.empty())
    take(self, std::move(todo));
  maybe_give(self);
}

void take(membership_pointer self, std::vector<segment_owner> rows) {
  auto& st = self->state;
  st.taking = true;
  auto n = rows.size();
  auto inc = st.incarnation;
  take_request req{st.cfg.node, inc, std::move(rows)};
  self->request(st.store, milliseconds(st.cfg.lease_ms), db_take_atom::value,
                std::move(req))
    .then(
      [=](std::vector<segment_owner>& taken) {
        auto& st = self->state;
        st.taking = false;
        if (taken.empty() || !st.joined || st.incarnation != inc)
          return;  // nothing, or taken by an incarnation that is over
        std::map<std::string, int> from;
        for (auto& t : taken)
          for (auto& row : st.own.owners)
            if (row.segment == t.segment && t.owner_epoch > row.owner_epoch) {
              ++from[row.owner.empty() ? std::string{"nobody"} : row.owner];
              row = t;
            }
        std::string froms;
        for (auto& kv : from)
          froms += (froms.empty() ? "" : ",") + kv.first + "="
                   + std::to_string(kv.second);
        actors_log().warn("segments_taken node={} count={} of={} from={}",
                          st.cfg.node, taken.size(), n, froms);
        if (st.cfg.metrics)
          st.cfg.metrics->cluster_takes.fetch_add(taken.size(),
                                                  std::memory_order_relaxed);
        tell_owned(self, owned_segments(st.own, st.cfg.node, st.incarnation));
        publish_routes(self);
      },
      [=](caf::error& err) {
        self->state.taking = false;
        actors_log().warn("segments_take_failed node={} error={}",
                          self->state.cfg.node, to_failure(err).message);
      });
}

// -- Planned moves ---------------------------------------------------------

void finish_stop(membership_pointer self);

// The end of a round: the segments are routed as the owner rows now say
// (to their receiver, or here again if the compare-and-set lost), the
// requests held for them go on, and the next round starts if there is one.
void end_handoff(membership_pointer self, bool go_on) {
  auto& st = self->state;
  st.handing = false;
  st.handing_segments.clear();
  if (st.cfg.registry)
    caf::anon_send(st.cfg.registry, handoff_atom::value, std::vector<int32_t>{});
  tell_owned(self, st.joined ? owned_segments(st.own, st.cfg.node, st.incarnation)
                             : std::vector<int32_t>{});
  publish_routes(self);
  if (st.stopping && (st.owned.empty() || !st.joined)) {
    finish_stop(self);
    return;
  }
  // After a round that moved all it meant to, the next starts at once;
  // otherwise at the next view from the database (no tight retry loop).
  if (go_on)
    maybe_give(self);
}

// Tells each receiver's membership which rows it got, then ends the round
// once all have answered (their routers know) or the deadline passed.
void announce_given(membership_pointer self, std::vector<segment_owner> rows,
                    bool all) {
  auto& st = self->state;
  std::map<std::string, std::vector<segment_owner>> by_node;
  for (auto& r : rows)
    by_node[r.owner].push_back(r);
  auto left = std::make_shared<size_t>(0);
  for (auto& kv : by_node)
    if (st.peers.count(kv.first) > 0)
      ++*left;
  if (*left == 0) {
    end_handoff(self, all);
    return;
  }
  auto one_done = [=] {
    if (--*left == 0)
      end_handoff(self, all);
  };
  for (auto& kv : by_node) {
    auto it = st.peers.find(kv.first);
    if (it == st.peers.end())
      continue;
    self->request(it->second.membership, link_timeout, handoff_atom::value,
                  kv.second)
      .then([=](bool) { one_done(); }, [=](caf::error&) { one_done(); });
  }
  // Every peer learns all the rows, without waiting (a receiver of some
  // learns the others' too): routes to the segments move now instead of at
  // the next renewal or sync, so fewer requests meet a stale owner.
  for (auto& kv : st.peers)
    caf::anon_send(kv.second.membership, handoff_atom::value, rows);
}

void give(membership_pointer self, std::vector<segment_handoff> moves) {
  auto& st = self->state;
  auto inc = st.incarnation;
  auto n = moves.size();
  auto started = steady::now();
  give_request req{st.cfg.node, inc, std::move(moves)};
  self->request(st.store, milliseconds(st.cfg.lease_ms), db_give_atom::value,
                std::move(req))
    .then(
      [=](std::vector<segment_owner>& moved) {
        auto& st = self->state;
        apply_rows(st.own, moved);
        std::map<std::string, int> to;
        for (auto& r : moved)
          ++to[r.owner];
        std::string tos;
        for (auto& kv : to)
          tos += (tos.empty() ? "" : ",") + kv.first + "="
                 + std::to_string(kv.second);
        actors_log().warn("segments_given node={} count={} of={} to={} ms={}",
                          st.cfg.node, moved.size(), n, tos,
                          std::chrono::duration_cast<milliseconds>(
                            steady::now() - started)
                            .count());
        if (st.cfg.metrics)
          st.cfg.metrics->cluster_gives.fetch_add(moved.size(),
                                                  std::memory_order_relaxed);
        auto all = moved.size() == n;
        announce_given(self, std::move(moved), all);
      },
      [=](caf::error& err) {
        actors_log().warn("segments_give_failed node={} count={} error={}",
                          self->state.cfg.node, n, to_failure(err).message);
        end_handoff(self, false);
      });
}

// Starts a round of planned moves when placement wants one: the segments
// stop being served here (requests for them wait in the router, the id
// allocator leaves them, their envelope actors finish their writes and
// stop), then the owner rows move by compare-and-set.
void maybe_give(membership_pointer self) {
  auto& st = self->state;
  if (st.handing || !st.joined || st.taking)
    return;
  auto settle = st.rebalance_now || st.stopping
                  ? int64_t{0}
                  : static_cast<int64_t>(st.cfg.rebalance_settle_ms);
  auto moves = segments_to_give(st.own, st.cfg.node, st.incarnation,
                                st.cfg.zones, settle,
                                std::max<size_t>(1, st.cfg.handoff_batch));
  if (moves.empty()) {
    st.rebalance_now = false;
    if (st.stopping)
      finish_stop(self);  // nothing more can move: no one to receive it
    return;
  }
  st.handing = true;
  std::vector<int32_t> segments;
  for (auto& m : moves) {
    segments.push_back(m.segment);
    st.handing_segments.insert(m.segment);
  }
  actors_log().info("segments_handing node={} count={} first={} to={}",
                    st.cfg.node, moves.size(), moves.front().segment,
                    moves.front().to);
  auto owned = st.owned;
  owned.erase(std::remove_if(owned.begin(), owned.end(),
                             [&](int32_t s) {
                               return st.handing_segments.count(s) > 0;
                             }),
              owned.end());
  tell_owned(self, std::move(owned));
  publish_routes(self);
  if (!st.cfg.registry) {
    give(self, std::move(moves));
    return;
  }
  self->request(st.cfg.registry, milliseconds(st.cfg.handoff_timeout_ms),
                handoff_atom::value, std::move(segments))
    .then([=](int32_t) mutable { give(self, std::move(moves)); },
          [=](caf::error& err) mutable {
            // Fencing refuses whatever a slow actor still writes.
            actors_log().warn("segments_handoff_unquiet node={} error={}",
                              self->state.cfg.node, to_string(err));
            give(self, std::move(moves));
          });
}

// A stopping node is done handing over: it ends its lease, so that what it
// still owns is taken at once, and answers the stop.
void finish_stop(membership_pointer self) {
  auto& st = self->state;
  if (!st.stopping || !st.stopped.pending())
    return;
  auto left = static_cast<int32_t>(st.owned.size());
  auto inc = st.incarnation;
  if (!st.joined) {
    st.stopped.deliver(left);
    return;
  }
  self->request(st.store, milliseconds(st.cfg.lease_ms), db_leave_atom::value,
                leave_request{st.cfg.node, inc})
    .then(
      [=](bool) {
        auto& st = self->state;
        actors_log().warn("node_left node={} incarnation={} segments_left={}",
                          st.cfg.node, inc, left);
        st.joined = false;  // nothing is renewed or taken from here on
        if (st.cfg.identity)
          st.cfg.identity->incarnation.store(0);
        if (st.stopped.pending())
          st.stopped.deliver(left);
      },
      [=](caf::error& err) {
        auto& st = self->state;
        actors_log().warn("node_leave_failed node={} error={}", st.cfg.node,
                          to_failure(err).message);
        if (st.stopped.pending())
          st.stopped.deliver(left);
      });
}

// Where a node's SET is known: its own, another SET's view, or nowhere.
const node_lease* lease_anywhere(const membership_state& st,
                                 const std::string& node) {
  if (auto* n = find_lease(st.own, node))
    return n;
  for (auto& kv : st.others)
    if (auto* n = find_lease(kv.second, node))
      return n;
  return nullptr;
}

control_result control_of(const set_view& view, const std::string& node) {
  control_result out;
  out.node = node;
  if (auto* n = find_lease(view, node)) {
    out.draining = n->draining;
    out.owned = static_cast<int32_t>(
      owned_segments(view, node, n->incarnation).size());
  }
  return out;
}

caf::result<control_result> on_control(membership_pointer self,
                                       control_request& req) {
  auto& st = self->state;
  if (req.action == control_action::rebalance) {
    control_result out;
    auto add = [&](const set_view& v) {
      for (auto& m : planned_moves(v, st.cfg.zones)) {
        std::string from;
        for (auto& row : v.owners)
          if (row.segment == m.segment)
            from = row.owner;
        out.moves.push_back(control_move{m.segment, from, m.to});
      }
    };
    add(st.own);
    for (auto& kv : st.others)
      add(kv.second);
    if (!req.dry_run) {
      st.rebalance_now = true;
      for (auto& kv : st.peers)
        caf::anon_send(kv.second.membership, rebalance_atom::value);
      maybe_give(self);
    }
    out.message = std::to_string(out.moves.size())
                  + (req.dry_run ? " segment moves planned (dry run)"
                                 : " segment moves started");
    return out;
  }
  bool drain = req.action == control_action::drain;
  auto* lease = lease_anywhere(st, req.node);
  if (req.node.empty() || lease == nullptr)
    return make_error(errc::not_found,
                      "no node named '" + req.node
                        + "' is known in the cluster (see hongbao stats)");
  if (lease->set != st.cfg.set) {
    // Only the node's own SET's database says who drains: ask one of its
    // nodes (the node itself first).
    caf::actor via;
    if (auto it = st.peers.find(req.node); it != st.peers.end())
      via = it->second.membership;
    for (auto& kv : st.peers)
      if (!via && kv.second.hello.set == lease->set)
        via = kv.second.membership;
    if (!via)
      return make_error(errc::unavailable,
                        "no node of SET " + lease->set
                          + " is linked to this node right now; retry");
    auto rp = self->make_response_promise<control_result>();
    self->request(via, link_timeout, drain_atom::value, req)
      .then([=](control_result& r) mutable { rp.deliver(std::move(r)); },
            [=](caf::error& err) mutable { rp.deliver(err); });
    return rp;
  }
  auto rp = self->make_response_promise<control_result>();
  auto node = req.node;
  self->request(st.store, milliseconds(st.cfg.lease_ms), db_drain_atom::value,
                drain_request{node, drain})
    .then(
      [=](set_view& view) mutable {
        auto& st = self->state;
        actors_log().warn("node_{} node={} by={}", drain ? "draining" : "undrained",
                          node, st.cfg.node);
        auto out = control_of(view, node);
        on_own_view(self, std::move(view));
        if (node != st.cfg.node)
          if (auto it = st.peers.find(node); it != st.peers.end())
            caf::anon_send(it->second.membership, rebalance_atom::value);
        out.message = drain ? "node " + node + " is draining: its "
                                + std::to_string(out.owned)
                                + " segments move to the next nodes in their "
                                  "zone order"
                            : "node " + node + " serves again: its preferred "
                                "segments come back after "
                                + std::to_string(st.cfg.rebalance_settle_ms)
                                + " ms";
        rp.deliver(std::move(out));
      },
      [=](caf::error& err) mutable { rp.deliver(err); });
  return rp;
}

void join(membership_pointer self) {
  auto& st = self->state;
  auto inc = new_incarnation(st.incarnation);
  join_request req;
  req.me.node = st.cfg.node;
  req.me.incarnation = inc;
  req.me.zone = st.cfg.zone;
  req.me.set = st.cfg.set;
  req.me.peer_host = st.cfg.peer_host;
  req.me.peer_port = st.cfg.peer_port;
  std::string gw_host;
  uint16_t gw_port = 0;
  if (split_address(st.cfg.gateway, gw_host, gw_port)) {
    req.me.gateway_host = gw_host;
    req.me.gateway_port = gw_port;
  }
  req.lease_ms = static_cast<int32_t>(st.cfg.lease_ms);
  req.segments = st.my_segments;
  auto sent = steady::now();
  st.lease_call = true;
  self->request(st.store, milliseconds(st.cfg.lease_ms), db_join_atom::value,
                std::move(req))
    .then(
      [=](set_view& view) {
        auto& st = self->state;
        st.lease_call = false;
        st.incarnation = inc;
        st.joined = true;
        st.joined_at = sent;
        st.deadline = sent + milliseconds(st.cfg.lease_ms)
                      - milliseconds(st.cfg.lease_margin_ms);
        if (st.cfg.identity)
          st.cfg.identity->incarnation.store(inc);
        if (st.cfg.metrics)
          st.cfg.metrics->cluster_joins.fetch_add(1, std::memory_order_relaxed);
        actors_log().warn("node_joined node={} set={} zone={} incarnation={}",
                          st.cfg.node, st.cfg.set, st.cfg.zone, inc);
        on_own_view(self, std::move(view));
        dial_known(self);
      },
      [=](caf::error& err) {
        auto& st = self->state;
        st.lease_call = false;
        auto f = to_failure(err);
        if (f.code == errc::conflict && !st.wrong_database) {
          st.wrong_database = true;
          actors_log().critical("node_refused node={} error={}", st.cfg.node,
                                f.message);
          return;
        }
        actors_log().warn("join_failed node={} error={}", st.cfg.node,
                          f.message);
      });
}

void renew(membership_pointer self) {
  auto& st = self->state;
  auto sent = steady::now();
  auto inc = st.incarnation;
  st.lease_call = true;
  renew_request req{st.cfg.node, inc,
                    static_cast<int32_t>(st.cfg.lease_ms)};
  self->request(st.store, milliseconds(st.cfg.lease_ms), db_renew_atom::value,
                std::move(req))
    .then(
      [=](set_view& view) {
        auto& st = self->state;
        st.lease_call = false;
        if (!st.joined || st.incarnation != inc)
          return;  // fenced meanwhile: that incarnation is over
        st.deadline = sent + milliseconds(st.cfg.lease_ms)
                      - milliseconds(st.cfg.lease_margin_ms);
        on_own_view(self, std::move(view));
      },
      [=](caf::error& err) {
        auto& st = self->state;
        st.lease_call = false;
        auto f = to_failure(err);
        if (f.code == errc::not_owner && st.joined && st.incarnation == inc) {
          fence(self, f.message);
          return;
        }
        actors_log().warn("lease_renewal_failed node={} error={}", st.cfg.node,
                          f.message);
      });
}

void on_tick(membership_pointer self) {
  auto& st = self->state;
  if (st.wrong_database)
    return;
  if (st.joined && steady::now() > st.deadline)
    fence(self, "the lease could not be renewed in time");
  if (!st.lease_call) {
    if (st.joined)
      renew(self);
    else if (!st.stopping)  // a stopping node that has left stays out
      join(self);
  }
  self->delayed_send(self, milliseconds(st.cfg.renew_ms), tick_atom::value);
}

// Merges another SET's view: the nodes as they are now, each owner row
// only if its owner_epoch is higher than the one known.
void merge_other(membership_state& st, set_view view) {
  auto& known = st.others[view.set];
  if (known.set.empty()) {
    known = std::move(view);
    return;
  }
  known.db_now_ms = view.db_now_ms;
  known.nodes = std::move(view.nodes);
  known.blocked = std::move(view.blocked);
  std::map<int32_t, size_t> index;
  for (size_t i = 0; i < known.owners.size(); ++i)
    index[known.owners[i].segment] = i;
  for (auto& row : view.owners) {
    auto it = index.find(row.segment);
    if (it == index.end())
      known.owners.push_back(row);
    else if (row.owner_epoch > known.owners[it->second].owner_epoch)
      known.owners[it->second] = row;
  }
}

// Introduces this node again to every linked peer and takes their answer:
// a peer whose router was restarted names its new router this way.
void hello_again(membership_pointer self) {
  auto& st = self->state;
  for (auto& kv : st.peers) {
    auto name = kv.first;
    auto peer = kv.second.membership;
    self->request(peer, link_timeout, hello_atom::value, my_hello(st))
      .then(
        [=](peer_hello& h) {
          auto& st = self->state;
          auto it = st.peers.find(name);
          if (it == st.peers.end() || it->second.membership != peer
              || h.node != name)
            return;
          it->second.hello = std::move(h);
          it->second.unanswered = 0;
          publish_routes(self);
        },
        [=](caf::error&) {
          auto& st = self->state;
          auto it = st.peers.find(name);
          if (it == st.peers.end() || it->second.membership != peer)
            return;
          if (++it->second.unanswered < unanswered_max)
            return;
          actors_log().warn("peer_lost node={} peer={} reason=no answer to {} "
                            "hellos in a row", st.cfg.node, name,
                            unanswered_max);
          st.peer_by_addr.erase(peer.address());
          self->demonitor(peer);
          st.peers.erase(it);
          publish_routes(self);
        });
  }
}

// Asks one linked node of each other SET for its SET's view.
void sync_others(membership_pointer self, bool only_refresh) {
  auto& st = self->state;
  // The linked nodes of each other SET; each time the next one is asked,
  // so that one silent node does not hide its SET.
  std::map<std::string, std::vector<caf::actor>> by_set;
  for (auto& kv : st.peers) {
    auto& h = kv.second.hello;
    if (h.set == st.cfg.set)
      continue;
    if (only_refresh && st.refresh_sets.count(h.set) == 0)
      continue;
    by_set[h.set].push_back(kv.second.membership);
  }
  for (auto& kv : by_set) {
    auto& turn = st.sync_turn[kv.first];
    auto peer = kv.second[turn++ % kv.second.size()];
    st.refresh_sets.erase(kv.first);
    self->request(peer, link_timeout, view_atom::value)
      .then(
        [=](set_view& view) {
          if (view.set.empty() || view.set == self->state.cfg.set)
            return;
          merge_other(self->state, std::move(view));
          publish_routes(self);
        },
        [](caf::error&) {});
  }
}

cluster_info info_of(const membership_state& st) {
  cluster_info out;
  out.enabled = true;
  out.set = st.cfg.set;
  out.zone = st.cfg.zone;
  out.incarnation = st.incarnation;
  out.fenced = !st.joined;
  out.draining = draining(st);
  out.zones = st.cfg.zones;
  out.warnings = st.warnings;
  out.sets.push_back(st.own);
  if (out.sets.back().set.empty())
    out.sets.back().set = st.cfg.set;
  for (auto& kv : st.others)
    out.sets.push_back(kv.second);
  return out;
}

membership_actor::behavior_type membership_impl(membership_pointer self,
                                                cluster_store store,
                                                membership_settings cfg) {
  auto& st = self->state;
  st.cfg = std::move(cfg);
  st.store = std::move(store);
  st.mm = self->system().middleman().actor_handle();
  st.my_address = address_of(st.cfg.peer_host, st.cfg.peer_port);
  for (auto& set : st.cfg.sets)
    if (set.name == st.cfg.set)
      st.my_segments = segments_of(set);
  self->set_down_handler([=](caf::down_msg& msg) {
    auto& st = self->state;
    auto it = st.peer_by_addr.find(msg.source);
    if (it == st.peer_by_addr.end())
      return;
    auto name = it->second;
    st.peer_by_addr.erase(it);
    auto p = st.peers.find(name);
    if (p != st.peers.end()
        && p->second.membership.address() == msg.source) {
      actors_log().warn("peer_lost node={} peer={} reason={}", st.cfg.node,
                        name, to_string(msg.reason));
      st.peers.erase(p);
      publish_routes(self);
    }
  });
  self->send(self, tick_atom::value);
  self->delayed_send(self, milliseconds(st.cfg.sync_ms), sync_atom::value);
  return {
    [=](hello_atom, peer_hello& h) -> peer_hello {
      auto& st = self->state;
      auto sender = caf::actor_cast<caf::actor>(self->current_sender());
      if (sender && h.node != st.cfg.node)
        link_peer(self, std::move(h), sender);
      return my_hello(st);
    },
    [=](view_atom) -> caf::result<set_view> {
      auto& st = self->state;
      if (st.own.set.empty())
        return make_error(errc::unavailable, "this node has not read its SET yet");
      return st.own;
    },
    [=](refresh_atom, int32_t segment) {
      auto& st = self->state;
      auto idx = set_index_of(st.cfg.sets, segment);
      if (idx < 0)
        return;
      auto& name = st.cfg.sets[static_cast<size_t>(idx)].name;
      if (name == st.cfg.set)
        return;  // own SET: the next renewal (renew_ms) reads it again
      if (st.refresh_sets.insert(name).second)
        sync_others(self, true);
    },
    [=](subscribe_atom, caf::actor& router) {
      auto& st = self->state;
      st.router = std::move(router);
      st.routes_sent = false;
      publish_routes(self);
    },
    [=](stats_atom) { return info_of(self->state); },
    [=](drain_atom, control_request& req) { return on_control(self, req); },
    [=](rebalance_atom) {
      // A peer drained, undrained or was asked to rebalance: read the SET
      // again at the next renewal and move without the settling wait.
      self->state.rebalance_now = true;
    },
    [=](handoff_atom, std::vector<segment_owner>& rows) -> bool {
      auto& st = self->state;
      // Rows of another SET (its nodes tell every peer of a move): merged
      // into that SET's view, only ever to a higher owner_epoch.
      if (!rows.empty()) {
        auto idx = set_index_of(st.cfg.sets, rows.front().segment);
        if (idx >= 0 && st.cfg.sets[static_cast<size_t>(idx)].name != st.cfg.set) {
          auto it = st.others.find(st.cfg.sets[static_cast<size_t>(idx)].name);
          if (it != st.others.end()) {
            apply_rows(it->second, rows);
            publish_routes(self);
          }
          return true;
        }
      }
      auto before = st.owned.size();
      apply_rows(st.own, rows);
      auto owned = st.joined ? owned_segments(st.own, st.cfg.node, st.incarnation)
                             : std::vector<int32_t>{};
      auto got = owned.size() > before ? owned.size() - before : 0;
      if (got > 0) {
        if (st.cfg.metrics)
          st.cfg.metrics->cluster_received.fetch_add(got,
                                                     std::memory_order_relaxed);
        actors_log().info("segments_received node={} count={}", st.cfg.node,
                          got);
      }
      tell_owned(self, std::move(owned));
      publish_routes(self);
      return true;
    },
    [=](stop_atom) -> caf::result<int32_t> {
      auto& st = self->state;
      if (!st.joined)
        return int32_t{0};
      if (st.stopped.pending())
        return make_error(errc::conflict, "the node is stopping already");
      st.stopping = true;
      st.stopped = self->make_response_promise<int32_t>();
      actors_log().warn("node_draining node={} reason=stopping segments={}",
                        st.cfg.node, st.owned.size());
      self->request(st.store, milliseconds(st.cfg.lease_ms), db_drain_atom::value,
                    drain_request{st.cfg.node, true})
        .then([=](set_view& view) { on_own_view(self, std::move(view)); },
              [=](caf::error& err) {
                actors_log().warn("node_drain_failed node={} error={}",
                                  self->state.cfg.node, to_failure(err).message);
                finish_stop(self);
              });
      return st.stopped;
    },
    [=](tick_atom) { on_tick(self); },
    [=](sync_atom) {
      dial_known(self);
      hello_again(self);
      sync_others(self, false);
      self->delayed_send(self, milliseconds(self->state.cfg.sync_ms),
                         sync_atom::value);
    },
  };
}

} // namespace

membership_actor spawn_membership(caf::actor_system& sys, cluster_store store,
                                  const membership_settings& cfg) {
  return sys.spawn(membership_impl, std::move(store), cfg);
}

} // namespace hb
