#include "gateway/gateway_actor.hpp"

#include <algorithm>
#include <set>
#include <unordered_map>

#include "caf/all.hpp"
#include "caf/io/all.hpp"

#include <spdlog/spdlog.h>

#include "gateway/log_throttle.hpp"
#include "runtime/log.hpp"

#include "envelope/envelope_actor.hpp"
#include "runtime/errors.hpp"
#include "domain/limits.hpp"
#include "proto/codec.hpp"

namespace hb {

namespace {

struct gateway_shared {
  gateway_settings cfg;
  router_actor router;
  std::shared_ptr<gateway_counters> counters;
  // One log line per second at most for each kind of event a client can
  // cause in bulk.
  log_throttle refused_log;  // over a connection cap
  log_throttle closed_log;   // closed for a protocol error or a deadline
  log_throttle paused_log;   // reading paused for unsent output
};

using auth_deadline_atom = caf::atom_constant<caf::atom("gwauthdl")>;
using idle_check_atom = caf::atom_constant<caf::atom("gwidle")>;
using read_sync_atom = caf::atom_constant<caf::atom("gwrdsync")>;

// How long a connection waits at shutdown for replies still in flight.
constexpr auto shutdown_grace = std::chrono::seconds(5);

// A request handed to the router or an envelope actor, awaiting its answer.
struct pending_call {
  uint64_t rid;  // the client's request id
  request_kind kind;
  caf::actor_clock::time_point due;
};

struct connection_state {
  std::shared_ptr<gateway_shared> shared;
  caf::io::connection_handle hdl;
  std::string peer;  // the client's address, for logs
  bool authenticated = false;
  // Frames are not handled while the unsent output is over
  // output_buffer_max; `reading` is whether the socket was last asked to
  // be read (see sync_reading).
  bool paused = false;
  bool reading = true;
  bool read_sync_pending = false;
  // The last request read or answered, for the idle timeout.
  caf::actor_clock::time_point last_active;
  bool idle_check_scheduled = false;
  std::vector<char> pending;  // bytes of a frame not yet complete
  // Live envelope actors this connection has heard from: grabs and opens
  // of these go straight to the actor, not through router and registry.
  // Weak references: a passivated actor is freed, not kept alive here.
  std::unordered_map<int64_t, caf::actor_addr> direct;
  bool closed = false;     // the peer is gone or we are closing
  bool closed_by_node = false;  // shutting down: finish in-flight, then close
  uint32_t inflight = 0;   // requests of this connection awaiting replies
  // Requests in flight inside the node, by call number, with their due
  // time. One sweep per connection answers the overdue ones, instead of one
  // CAF request timeout per request (each a trip through CAF's clock thread
  // and a message back to this broker long after the answer came).
  std::unordered_map<uint64_t, pending_call> calls;
  uint64_t next_call = 0;
  bool sweep_scheduled = false;
  static inline const char* name = "hb.gateway.connection";
};

using connection_broker = caf::io::stateful_broker<connection_state>;

// Bytes per read: small before Auth (an Auth frame is small, and 10 000
// sockets that never authenticate must not pin a read buffer of 64 KiB
// each), large after it.
constexpr size_t read_chunk = 64 * 1024;

size_t read_size(const connection_state& st) {
  return st.authenticated
           ? read_chunk
           : codec::frame_header_size + st.shared->cfg.auth_frame_size_max;
}

// -- Output backpressure ------------------------------------------------------

// A client that pipelines requests and never reads its answers would grow
// the node's write buffer without bound. CAF's stream writes one buffer
// while the next collects behind it (wr_buf); once that one passes
// output_buffer_max, the connection stops handling frames and takes its
// socket out of the read set (so the client's own sends block), and asks
// CAF to report each write. When the unsent bytes are down to half the
// bound, it goes on. Unsent output per connection stays below about twice
// the bound plus the answers to the requests already in flight.
//
// CAF 0.17 applies a halt or trigger of a socket at the end of its I/O
// loop's turn, and a halt and a trigger in one turn leave the stream
// believing it reads while its socket is out of the read set (squashed
// into nothing): the connection would never be read again. So the socket
// is switched only from sync_reading, run in a later turn (a function
// posted to the multiplexer), at most once per turn.
constexpr size_t paused_read_chunk = 4096;

void request_read_sync(connection_broker* self) {
  auto& st = self->state;
  if (st.read_sync_pending)
    return;
  st.read_sync_pending = true;
  auto me = caf::actor_cast<caf::actor>(self);
  self->backend().post(
    [me] { caf::anon_send(me, read_sync_atom::value); });
}

void sync_reading(connection_broker* self) {
  auto& st = self->state;
  st.read_sync_pending = false;
  if (st.closed)
    return;
  bool want = !st.paused;
  if (want == st.reading)
    return;
  st.reading = want;
  if (want)
    self->trigger(st.hdl);
  else
    self->halt(st.hdl);
  request_read_sync(self);  // the next switch, if any, in a later turn
}

void pause_reading(connection_broker* self) {
  auto& st = self->state;
  st.paused = true;
  // Until the socket leaves the read set, reads are small.
  self->configure_read(st.hdl,
                       caf::io::receive_policy::at_most(paused_read_chunk));
  self->ack_writes(st.hdl, true);
  request_read_sync(self);
  if (auto& m = st.shared->cfg.metrics)
    m->gateway_read_pauses.fetch_add(1, std::memory_order_relaxed);
  uint64_t held = 0;
  if (st.shared->paused_log.admit(held))
    actors_log().info("connection_paused peer={} unsent_bytes={} "
                      "output_buffer_max={} suppressed={}",
                      st.peer, self->wr_buf(st.hdl).size(),
                      st.shared->cfg.output_buffer_max, held);
}

void process_pending(connection_broker* self);

void on_data_transferred(connection_broker* self, uint64_t remaining) {
  auto& st = self->state;
  if (!st.paused || st.closed
      || remaining > st.shared->cfg.output_buffer_max / 2)
    return;
  st.paused = false;
  self->ack_writes(st.hdl, false);
  self->configure_read(st.hdl,
                       caf::io::receive_policy::at_most(read_size(st)));
  request_read_sync(self);
  process_pending(self);
}

void send_frame(connection_broker* self, const client_response& resp) {
  auto& st = self->state;
  if (st.closed)
    return;
  auto frame = codec::encode_response_frame(resp);
  self->write(st.hdl, frame.size(), frame.data());
  self->flush(st.hdl);
  if (!st.paused
      && self->wr_buf(st.hdl).size() > st.shared->cfg.output_buffer_max)
    pause_reading(self);
}

// `owner_hint`: where the owner's gateway is, for a NOT_OWNER (empty: unknown).
void send_error(connection_broker* self, uint64_t rid, errc code,
                std::string message, std::string owner_hint = {}) {
  send_frame(self, client_response{rid, error_reply{code, std::move(message),
                                                    std::move(owner_hint)}});
}

// Sends a last error and closes; unwritten data still goes out first. The
// log line is throttled: a script can cause this for every connection.
void close_with_error(connection_broker* self, uint64_t rid, errc code,
                      std::string message) {
  uint64_t held = 0;
  if (self->state.shared->closed_log.admit(held))
    actors_log().info("connection_closed peer={} code={} reason={} "
                      "suppressed={}",
                      self->state.peer, to_string(code), log_safe(message),
                      held);
  send_error(self, rid, code, std::move(message));
  self->close(self->state.hdl);
  self->state.closed = true;
  if (self->state.inflight == 0)
    self->quit();
}

void request_finished(connection_broker* self) {
  auto& st = self->state;
  --st.inflight;
  st.last_active = self->clock().now();
  --st.shared->counters->inflight;
  if (st.closed_by_node && !st.closed && st.inflight == 0) {
    self->close(st.hdl);
    st.closed = true;
  }
  if (st.closed && st.inflight == 0)
    self->quit();
}

// Counts one answer per request kind and result.
void count_answer(connection_broker* self, request_kind kind, errc code) {
  if (auto& m = self->state.shared->cfg.metrics)
    m->record_answer(kind, code);
}

// The answer to a call: counted, sent, and the call's slot freed.
template <class Reply>
void answer(connection_broker* self, uint64_t rid, request_kind kind,
            Reply&& reply) {
  count_answer(self, kind, errc::none);
  send_frame(self, client_response{rid, std::forward<Reply>(reply)});
  request_finished(self);
}

void answer_error(connection_broker* self, uint64_t rid, request_kind kind,
                  failure f) {
  count_answer(self, kind, f.code);
  send_error(self, rid, f.code, std::move(f.message), std::move(f.hint));
  request_finished(self);
}

// -- Deadlines ----------------------------------------------------------------

// The answer given for a call still unanswered at its due time; the call
// may still complete inside the node (retrying is safe: opens are
// idempotent).
constexpr const char* overdue_message
  = "timed out inside the node; the outcome is unknown, retry the same "
    "request (opens are idempotent)";

std::chrono::milliseconds request_timeout(const gateway_settings& cfg) {
  return std::chrono::milliseconds{cfg.request_timeout_ms};
}

// How often a connection with calls in flight looks for overdue ones: a
// tenth of the timeout, within [10 ms, 500 ms].
std::chrono::milliseconds sweep_interval(const gateway_settings& cfg) {
  return std::clamp(request_timeout(cfg) / 10, std::chrono::milliseconds{10},
                    std::chrono::milliseconds{500});
}

void schedule_sweep(connection_broker* self) {
  auto& st = self->state;
  if (st.sweep_scheduled || st.calls.empty())
    return;
  st.sweep_scheduled = true;
  self->delayed_send(self, sweep_interval(st.shared->cfg), sweep_atom::value);
}

// Registers a call due after `timeout`; returns its number.
uint64_t start_call(connection_broker* self, uint64_t rid, request_kind kind,
                    std::chrono::milliseconds timeout) {
  auto& st = self->state;
  auto call = ++st.next_call;
  auto due = self->clock().now() + timeout;
  st.calls.emplace(call, pending_call{rid, kind, due});
  ++st.inflight;
  ++st.shared->counters->inflight;
  schedule_sweep(self);
  return call;
}

// Takes a call's answer: false if the sweep has answered it already (the
// late answer is dropped).
bool finish_call(connection_broker* self, uint64_t call) {
  return self->state.calls.erase(call) > 0;
}

// Answers every overdue call with UNAVAILABLE, as CAF's request timeout did.
void sweep(connection_broker* self) {
  auto& st = self->state;
  st.sweep_scheduled = false;
  auto now = self->clock().now();
  std::vector<pending_call> overdue;
  for (auto i = st.calls.begin(); i != st.calls.end();) {
    if (i->second.due <= now) {
      overdue.push_back(i->second);
      i = st.calls.erase(i);
    } else {
      ++i;
    }
  }
  for (auto& c : overdue) {
    if (auto& m = st.shared->cfg.metrics)
      m->gateway_timeouts.fetch_add(1, std::memory_order_relaxed);
    answer_error(self, c.rid, c.kind,
                 failure{errc::unavailable, overdue_message});
  }
  schedule_sweep(self);
}

// -- The direct path -------------------------------------------------------------

// A connection remembers at most this many envelope actors.
constexpr size_t direct_max = 1024;

// After a successful grab or open through the router, the answer came from
// the envelope actor itself: remember it for the next requests.
void learn_direct(connection_broker* self, int64_t id) {
  const auto& sender = self->current_sender();
  // A forwarded request is answered by the router itself (the envelope
  // lives on another node): nothing to learn.
  if (!sender
      || sender == caf::actor_cast<caf::strong_actor_ptr>(
                     self->state.shared->router))
    return;
  auto& direct = self->state.direct;
  if (direct.size() >= direct_max && direct.count(id) == 0)
    direct.clear();
  direct[id] = caf::actor_cast<caf::actor_addr>(sender);
}

// Sends one request to the router and answers the client when it completes.
// For a grab or open (`direct_id` = the envelope id, else 0) a success also
// teaches the connection the envelope actor that answered.
template <class Reply, class... Ts>
void call_router_within(connection_broker* self, uint64_t rid,
                        request_kind kind, std::chrono::milliseconds timeout,
                        int64_t direct_id, Ts&&... xs) {
  auto& st = self->state;
  auto call = start_call(self, rid, kind, timeout);
  self->request(st.shared->router, caf::infinite, std::forward<Ts>(xs)...)
    .then(
      [=](Reply& reply) {
        if (!finish_call(self, call))
          return;
        if (direct_id != 0)
          learn_direct(self, direct_id);
        answer(self, rid, kind, std::move(reply));
      },
      [=](caf::error& err) {
        if (finish_call(self, call))
          answer_error(self, rid, kind, to_failure(err));
      });
}

// Grab and open of an envelope whose actor this connection knows go to
// the actor directly. If the actor is gone (passivated, moved, crashed),
// is stopping (UNAVAILABLE) or does not answer as an envelope, the request
// goes through the router instead: both requests are idempotent, so asking
// again is safe. The actor's other answers, errors included, go to the
// client as they are.
// The request is (atom, id, user, rest...); the direct one adds direct_atom.
template <class Reply, class Atom, class... Rest>
void call_envelope(connection_broker* self, uint64_t rid, request_kind kind,
                   Atom atom, int64_t id, std::string user, Rest... rest) {
  auto& st = self->state;
  if (auto problem = validate_text_id(user, "user",
                                      st.shared->cfg.text_size_max);
      problem.code != errc::none) {
    count_answer(self, kind, problem.code);
    send_error(self, rid, problem.code, std::move(problem.message));
    return;
  }
  auto timeout = request_timeout(st.shared->cfg);
  auto it = st.direct.find(id);
  caf::actor target;
  if (it != st.direct.end()) {
    target = caf::actor_cast<caf::actor>(it->second);
    if (!target) {
      st.direct.erase(it);  // gone already: the router finds its successor
      if (auto& m = st.shared->cfg.metrics)
        m->direct_fallbacks.fetch_add(1, std::memory_order_relaxed);
    }
  }
  if (!target) {
    call_router_within<Reply>(self, rid, kind, timeout, id, atom, id,
                              std::move(user), rest...);
    return;
  }
  auto call = start_call(self, rid, kind, timeout);
  if (auto& m = st.shared->cfg.metrics)
    m->direct_requests.fetch_add(1, std::memory_order_relaxed);
  self->request(target, caf::infinite, atom, id, user, rest...,
                direct_atom::value)
    .then(
      [=](Reply& reply) {
        if (finish_call(self, call))
          answer(self, rid, kind, std::move(reply));
      },
      [=](caf::error& err) {
        if (!finish_call(self, call))
          return;
        if (err.category() == errc_category
            && to_failure(err).code != errc::unavailable) {
          answer_error(self, rid, kind, to_failure(err));
          return;
        }
        // UNAVAILABLE from the actor: it is stopping (its segment moves to
        // another node, the node shuts down, a write failed). The router
        // knows where the envelope is served now (it holds requests for a
        // segment that is moving): ask it, once. So also when the answer is
        // not one of a live envelope actor.
        self->state.direct.erase(id);
        if (auto& m = self->state.shared->cfg.metrics)
          m->direct_fallbacks.fetch_add(1, std::memory_order_relaxed);
        request_finished(self);
        call_router_within<Reply>(self, rid, kind, timeout, id, atom, id,
                                  user, rest...);
      });
}

template <class Reply, class... Ts>
void call_router(connection_broker* self, uint64_t rid, request_kind kind,
                 Ts&&... xs) {
  call_router_within<Reply>(self, rid, kind,
                            request_timeout(self->state.shared->cfg),
                            int64_t{0}, std::forward<Ts>(xs)...);
}

// A reconciliation reads the whole window; it may take minutes.
constexpr auto reconcile_timeout = std::chrono::minutes(10);

// Admission control: per connection and node-wide in-flight limits.
bool admit(connection_broker* self, uint64_t rid) {
  auto& st = self->state;
  auto& cfg = st.shared->cfg;
  if (st.inflight >= cfg.connection_inflight_max) {
    ++st.shared->counters->rejected;
    send_error(self, rid, errc::busy,
               "too many requests in flight on this connection (limit "
                 + std::to_string(cfg.connection_inflight_max) + ")");
    return false;
  }
  if (st.shared->counters->inflight >= cfg.node_inflight_max) {
    ++st.shared->counters->rejected;
    send_error(self, rid, errc::busy, "the node is overloaded; retry");
    return false;
  }
  return true;
}

// -- Connection deadlines ----------------------------------------------------------

size_t frame_limit(const connection_state& st) {
  return st.authenticated ? st.shared->cfg.frame_size_max
                          : st.shared->cfg.auth_frame_size_max;
}

void schedule_idle_check(connection_broker* self,
                         caf::actor_clock::duration_type delay) {
  auto& st = self->state;
  if (st.idle_check_scheduled || st.shared->cfg.idle_timeout_ms == 0)
    return;
  st.idle_check_scheduled = true;
  self->delayed_send(self, delay, idle_check_atom::value);
}

// One timer per connection: when it fires early (the connection was active
// meanwhile) it is set again for the rest of the idle time.
void idle_check(connection_broker* self) {
  auto& st = self->state;
  st.idle_check_scheduled = false;
  if (st.closed || st.closed_by_node)
    return;
  auto idle = std::chrono::duration_cast<caf::actor_clock::duration_type>(
    std::chrono::milliseconds{st.shared->cfg.idle_timeout_ms});
  auto quiet = self->clock().now() - st.last_active;
  if (st.inflight > 0 || quiet < idle) {
    schedule_idle_check(self, st.inflight > 0 ? idle : idle - quiet);
    return;
  }
  if (auto& m = st.shared->cfg.metrics)
    m->gateway_idle_closed.fetch_add(1, std::memory_order_relaxed);
  close_with_error(self, 0, errc::unavailable,
                   "connection idle for "
                     + std::to_string(st.shared->cfg.idle_timeout_ms)
                     + " ms; closed by the node (reconnect to go on)");
}

void start_authenticated(connection_broker* self) {
  auto& st = self->state;
  self->configure_read(st.hdl,
                       caf::io::receive_policy::at_most(read_size(st)));
  st.last_active = self->clock().now();
  schedule_idle_check(self, std::chrono::milliseconds{
                              st.shared->cfg.idle_timeout_ms});
}

void auth_deadline(connection_broker* self) {
  auto& st = self->state;
  if (st.authenticated || st.closed || st.closed_by_node)
    return;
  if (auto& m = st.shared->cfg.metrics)
    m->gateway_auth_timeouts.fetch_add(1, std::memory_order_relaxed);
  close_with_error(self, 0, errc::unauthenticated,
                   "not authenticated within "
                     + std::to_string(st.shared->cfg.auth_timeout_ms)
                     + " ms");
}

static_assert(std::variant_size_v<request_body>
                == static_cast<size_t>(request_kind::count_),
              "every request kind is counted");

struct dispatcher {
  connection_broker* self;
  uint64_t rid;
  request_kind kind;
  int64_t deadline;  // Unix ms, 0: the client set none

  void operator()(auth_request& req) {
    auto& st = self->state;
    if (req.token != st.shared->cfg.auth_token) {
      count_answer(self, kind, errc::unauthenticated);
      close_with_error(self, rid, errc::unauthenticated, "wrong token");
      return;
    }
    st.authenticated = true;
    start_authenticated(self);
    count_answer(self, kind, errc::none);
    send_frame(self, client_response{rid, auth_ok{st.shared->cfg.node_name}});
  }
  void operator()(create_request& req) {
    call_router<envelope>(self, rid, kind, create_atom::value, std::move(req));
  }
  void operator()(pay_request& req) {
    call_router<envelope>(self, rid, kind, pay_atom::value, req.envelope_id,
                          std::move(req.payment_txn), req.from_wallet);
  }
  void operator()(grab_request& req) {
    call_envelope<grab_result>(self, rid, kind, grab_atom::value,
                               req.envelope_id, std::move(req.user));
  }
  void operator()(open_request& req) {
    call_envelope<open_result>(self, rid, kind, open_atom::value,
                               req.envelope_id, std::move(req.user), deadline);
  }
  void operator()(get_request& req) {
    call_router<envelope_detail>(self, rid, kind, get_atom::value,
                                 req.envelope_id);
  }
  void operator()(history_query& req) {
    call_router<history_page>(self, rid, kind, history_atom::value,
                              std::move(req));
  }
  void operator()(balance_request& req) {
    call_router<balance_info>(self, rid, kind, balance_atom::value,
                              std::move(req.user));
  }
  void operator()(reconcile_request& req) {
    call_router_within<reconcile_report>(self, rid, kind, reconcile_timeout,
                                         int64_t{0}, reconcile_atom::value,
                                         req.since_ms);
  }
  void operator()(stats_request&) {
    call_router<node_stats>(self, rid, kind, stats_atom::value);
  }
  void operator()(segment_request& req) {
    call_router<segment_state>(self, rid, kind, segment_atom::value,
                               std::move(req));
  }
  void operator()(control_request& req) {
    call_router<control_result>(self, rid, kind, drain_atom::value,
                                std::move(req));
  }
};

void handle_payload(connection_broker* self, const char* data, size_t size) {
  auto& st = self->state;
  uint64_t rid = 0;
  auto req = codec::decode_request(data, size, rid);
  if (!req && !st.authenticated && req.error().code != errc::malformed) {
    close_with_error(self, rid, errc::unauthenticated,
                     "authenticate first (send Auth with the node's token)");
    return;
  }
  if (!req) {
    if (req.error().code == errc::malformed) {
      close_with_error(self, rid, errc::malformed, req.error().message);
      return;
    }
    send_error(self, rid, req.error().code, req.error().message);
    return;
  }
  ++st.shared->counters->requests;
  bool is_auth = std::holds_alternative<auth_request>(req->body);
  if (!st.authenticated && !is_auth) {
    close_with_error(self, rid, errc::unauthenticated,
                     "authenticate first (send Auth with the node's token)");
    return;
  }
  auto kind = static_cast<request_kind>(req->body.index());
  st.last_active = self->clock().now();
  // Id 0 marks answers about the connection: an answer to a request with id
  // 0 could not be told from one. The request is not run.
  if (rid == 0) {
    count_answer(self, kind, errc::invalid_argument);
    send_error(self, 0, errc::invalid_argument,
               "request_id 0 is reserved for errors about the connection; "
               "the request was not run (use ids >= 1)");
    return;
  }
  if (!is_auth && !admit(self, rid)) {
    count_answer(self, kind, errc::busy);
    return;
  }
  // The client's timeout counts from now; requests still queued in the node
  // when it passes are dropped, not executed.
  int64_t deadline = req->timeout_ms == 0
                       ? 0
                       : system_now_ms() + static_cast<int64_t>(req->timeout_ms);
  std::visit(dispatcher{self, rid, kind, deadline}, req->body);
}

// Handles the complete frames at the start of [data, data + size) until
// the connection closes or pauses; returns the bytes used.
size_t handle_frames(connection_broker* self, const char* data, size_t size) {
  auto& st = self->state;
  size_t pos = 0;
  while (!st.closed && !st.closed_by_node && !st.paused
         && size - pos >= codec::frame_header_size) {
    auto frame = codec::get_frame_header(data + pos);
    if (frame > frame_limit(st)) {
      close_with_error(self, 0, errc::frame_too_large,
                       "frame of " + std::to_string(frame)
                         + " bytes exceeds the limit of "
                         + std::to_string(frame_limit(st))
                         + (st.authenticated ? "" : " before Auth"));
      break;
    }
    if (frame == 0) {
      close_with_error(self, 0, errc::malformed, "empty frame");
      break;
    }
    if (size - pos - codec::frame_header_size < frame)
      break;
    handle_payload(self, data + pos + codec::frame_header_size, frame);
    pos += codec::frame_header_size + frame;
  }
  return pos;
}

// The frames waiting in `pending` (after a pause, or split across reads).
void process_pending(connection_broker* self) {
  auto& st = self->state;
  if (st.closed || st.closed_by_node) {
    st.pending.clear();
    return;
  }
  auto used = handle_frames(self, st.pending.data(), st.pending.size());
  if (st.closed || st.closed_by_node) {
    st.pending.clear();
    return;
  }
  st.pending.erase(st.pending.begin(),
                   st.pending.begin() + static_cast<std::ptrdiff_t>(used));
}

// Bytes as they arrive, any number of frames per read: every complete
// frame is handled, the rest waits in `pending` for the next read. One
// broker message per read instead of two per frame.
void handle_data(connection_broker* self, const std::vector<char>& buf) {
  auto& st = self->state;
  if (st.closed || st.closed_by_node)
    return;
  if (!st.pending.empty() || st.paused) {
    st.pending.insert(st.pending.end(), buf.begin(), buf.end());
    process_pending(self);
    return;
  }
  auto used = handle_frames(self, buf.data(), buf.size());
  if (st.closed || st.closed_by_node)
    return;
  st.pending.assign(buf.begin() + static_cast<std::ptrdiff_t>(used),
                    buf.end());
}

caf::behavior connection_impl(connection_broker* self,
                              caf::io::connection_handle hdl,
                              std::shared_ptr<gateway_shared> shared,
                              std::string peer) {
  auto& st = self->state;
  st.shared = std::move(shared);
  st.hdl = hdl;
  st.peer = std::move(peer);
  ++st.shared->counters->connections;
  // Before Auth a read holds at most one frame of the small limit.
  self->configure_read(hdl, caf::io::receive_policy::at_most(read_size(st)));
  self->delayed_send(self,
                     std::chrono::milliseconds{st.shared->cfg.auth_timeout_ms},
                     auth_deadline_atom::value);
  return {
    [=](const caf::io::new_data_msg& msg) { handle_data(self, msg.buf); },
    [=](const caf::io::data_transferred_msg& msg) {
      on_data_transferred(self, msg.remaining);
    },
    [=](sweep_atom) { sweep(self); },
    [=](auth_deadline_atom) { auth_deadline(self); },
    [=](idle_check_atom) { idle_check(self); },
    [=](read_sync_atom) { sync_reading(self); },
    [=](const caf::io::connection_closed_msg&) {
      self->state.closed = true;
      if (self->state.inflight == 0)
        self->quit();
    },
    // Shutdown: stop reading, let replies in flight go out, then close. A
    // reply that does not come within the grace period is not waited for.
    [=](stop_atom) {
      auto& st = self->state;
      if (st.closed)
        return;
      if (st.inflight == 0 || st.closed_by_node) {
        // Nothing in flight, or the grace period is over: replies still
        // missing are given up (their requests may or may not complete).
        st.shared->counters->inflight -= st.inflight;
        st.inflight = 0;
        st.calls.clear();
        self->close(st.hdl);
        st.closed = true;
        self->quit();
        return;
      }
      st.closed_by_node = true;
      self->delayed_send(self, shutdown_grace, stop_atom::value);
    },
  };
}

struct open_connection {
  caf::actor broker;
  std::string peer;  // its remote address
};

struct acceptor_state {
  // Forked per-connection brokers, until they quit.
  std::unordered_map<caf::actor_addr, open_connection> connections;
  std::unordered_map<std::string, uint32_t> per_address;  // open, by address
  static inline const char* name = "hb.gateway.acceptor";
};

using acceptor_broker = caf::io::stateful_broker<acceptor_state>;

// Over a cap a connection gets one small frame and is closed at once: no
// broker, no read buffer, nothing kept.
void refuse(acceptor_broker* self, caf::io::connection_handle hdl,
            gateway_shared& shared, const std::string& peer,
            const char* cap, uint32_t limit) {
  if (auto& m = shared.cfg.metrics)
    m->gateway_refused.fetch_add(1, std::memory_order_relaxed);
  auto frame = codec::encode_response_frame(client_response{
    0, error_reply{errc::busy, std::string{"too many connections ("} + cap
                                 + " " + std::to_string(limit)
                                 + "); retry later"}});
  self->write(hdl, frame.size(), frame.data());
  self->flush(hdl);
  self->close(hdl);
  uint64_t held = 0;
  if (shared.refused_log.admit(held))
    actors_log().warn("connection_refused peer={} cap={} limit={} open={} "
                      "suppressed={}",
                      peer, cap, limit, self->state.connections.size(), held);
}

caf::behavior acceptor_impl(acceptor_broker* self, caf::io::doorman_ptr door,
                            std::shared_ptr<gateway_shared> shared) {
  self->add_doorman(std::move(door));
  self->set_down_handler([=](caf::down_msg& msg) {
    auto& st = self->state;
    auto i = st.connections.find(msg.source);
    if (i == st.connections.end())
      return;
    auto a = st.per_address.find(i->second.peer);
    if (a != st.per_address.end() && --a->second == 0)
      st.per_address.erase(a);
    st.connections.erase(i);
    if (auto& m = shared->cfg.metrics)
      m->gateway_connections.fetch_sub(1, std::memory_order_relaxed);
  });
  return {
    [=](const caf::io::new_connection_msg& msg) {
      auto& st = self->state;
      auto& cfg = shared->cfg;
      auto peer = self->remote_addr(msg.handle);
      if (st.connections.size() >= cfg.connections_max) {
        refuse(self, msg.handle, *shared, peer, "connections_max",
               cfg.connections_max);
        return;
      }
      auto& from_peer = st.per_address[peer];
      if (from_peer >= cfg.connections_per_address_max) {
        refuse(self, msg.handle, *shared, peer, "connections_per_address_max",
               cfg.connections_per_address_max);
        return;
      }
      ++from_peer;
      auto conn = self->fork(connection_impl, msg.handle, shared, peer);
      self->monitor(conn);
      st.connections.emplace(conn.address(), open_connection{conn, peer});
      if (auto& m = cfg.metrics)
        m->gateway_connections.fetch_add(1, std::memory_order_relaxed);
    },
    [=](const caf::io::acceptor_closed_msg&) { self->quit(); },
    [=](stop_atom) {
      actors_log().info("gateway_stopped connections={}",
                        self->state.connections.size());
      // Every connection finishes its in-flight replies and closes itself.
      for (auto& conn : self->state.connections)
        self->send(conn.second.broker, stop_atom::value);
      // The connections close by themselves; this acceptor no longer counts
      // them.
      if (auto& m = shared->cfg.metrics)
        m->gateway_connections.fetch_sub(
          static_cast<int64_t>(self->state.connections.size()),
          std::memory_order_relaxed);
      self->close_all();
      self->quit();
    },
  };
}

} // namespace

caf::expected<gateway_handle> spawn_gateway(caf::actor_system& sys,
                                            router_actor router,
                                            const gateway_settings& cfg) {
  auto& mm = sys.middleman();
  auto door = mm.backend().new_tcp_doorman(cfg.port, cfg.host.c_str(), true);
  if (!door)
    return std::move(door.error());
  gateway_handle result;
  result.port = (*door)->port();
  result.counters = std::make_shared<gateway_counters>();
  auto shared = std::make_shared<gateway_shared>();
  shared->cfg = cfg;
  shared->router = std::move(router);
  shared->counters = result.counters;
  result.acceptor = mm.spawn_broker(acceptor_impl, std::move(*door), shared);
  actors_log().info("gateway_listening host={} port={}", cfg.host, result.port);
  return result;
}

} // namespace hb
