#include "proto/codec.hpp"

#include <algorithm>
#include <cassert>
#include <climits>
#include <limits>
#include <type_traits>

#include <google/protobuf/stubs/logging.h>

#include "domain/cluster_summary.hpp"
#include "domain/envelope_id.hpp"

// Generated into the build tree (proto/CMakeLists.txt); only this file sees it.
#include "hongbao.pb.h"

namespace hb::codec {

namespace pb = hongbao::v1;

namespace {

// -- Small helpers -------------------------------------------------------------

failure bad(errc code, std::string message) {
  return failure{code, std::move(message)};
}

/// Parses without letting protobuf log: a proto3 string field with invalid
/// UTF-8 makes the parser print an error, and a client must not be able to
/// fill the node's log by sending garbage.
template <class Message>
bool parse_quietly(Message& msg, const char* data, size_t size) {
  if (size > static_cast<size_t>(INT_MAX))
    return false;
  google::protobuf::LogSilencer silence;
  return msg.ParseFromArray(data, static_cast<int>(size));
}

/// Protobuf writes fields in number order, so a Request that fails to parse
/// usually still starts with its request id (field 1, varint: tag byte 0x08).
/// Reading it lets the error reply carry the id. Returns 0 when absent.
uint64_t peek_request_id(const char* data, size_t size) {
  if (size < 2 || static_cast<unsigned char>(data[0]) != 0x08)
    return 0;
  uint64_t result = 0;
  for (size_t i = 1; i < size && i <= 10; ++i) {
    auto byte = static_cast<unsigned char>(data[i]);
    result |= static_cast<uint64_t>(byte & 0x7f) << (7 * (i - 1));
    if ((byte & 0x80) == 0)
      return result;
  }
  return 0;
}

/// Returns whether `text` is well-formed UTF-8 (RFC 3629: no overlong
/// forms, no surrogates, nothing above U+10FFFF).
bool valid_utf8(const std::string& text) {
  auto at = [&text](size_t i) { return static_cast<unsigned char>(text[i]); };
  size_t i = 0;
  while (i < text.size()) {
    unsigned char c = at(i);
    size_t len = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2
                 : c >= 0xe0 && c <= 0xef               ? 3
                 : c >= 0xf0 && c <= 0xf4               ? 4
                                                        : 0;
    if (len == 0 || i + len > text.size())
      return false;
    // The second byte's range depends on the first (RFC 3629, section 4).
    unsigned char lo = c == 0xe0 ? 0xa0 : c == 0xf0 ? 0x90 : 0x80;
    unsigned char hi = c == 0xed ? 0x9f : c == 0xf4 ? 0x8f : 0xbf;
    for (size_t k = 1; k < len; ++k) {
      unsigned char b = at(i + k);
      if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xbf))
        return false;
    }
    i += len;
  }
  return true;
}

/// Error messages may be built from text the node did not write (database
/// errors, say). proto3 strings must be UTF-8 or the client cannot parse the
/// reply, so bytes outside 7-bit ASCII are replaced when the text is invalid.
std::string printable_message(const std::string& text) {
  if (valid_utf8(text))
    return text;
  std::string result = text;
  for (auto& c : result)
    if (static_cast<unsigned char>(c) >= 0x80)
      c = '?';
  return result;
}

template <class Message>
std::string frame_of(const Message& msg) {
  size_t size = msg.ByteSizeLong();
  // A frame length is 32 bits; nothing the service builds comes close.
  assert(size <= UINT32_MAX);
  std::string frame(frame_header_size + size, '\0');
  put_frame_header(static_cast<uint32_t>(size), frame.data());
  bool ok = msg.SerializeToArray(frame.data() + frame_header_size,
                                 static_cast<int>(size));
  assert(ok);
  (void) ok;
  return frame;
}

// -- Enums ---------------------------------------------------------------------

// The C++ enums and the proto enums share their numbers (see hongbao.proto),
// so conversion is a checked cast.

outcome<envelope_kind> kind_from_proto(int value) {
  if (value == static_cast<int>(envelope_kind::random)
      || value == static_cast<int>(envelope_kind::equal))
    return static_cast<envelope_kind>(value);
  return bad(errc::invalid_argument,
             "kind must be ENVELOPE_KIND_RANDOM or ENVELOPE_KIND_EQUAL, got "
               + std::to_string(value));
}

bool status_from_proto(int value, envelope_status& out) {
  if (value < static_cast<int>(envelope_status::created)
      || value > static_cast<int>(envelope_status::refunded))
    return false;
  out = static_cast<envelope_status>(value);
  return true;
}

bool outcome_from_proto(int value, grab_outcome& out) {
  if (value < static_cast<int>(grab_outcome::can_open)
      || value > static_cast<int>(grab_outcome::not_paid))
    return false;
  out = static_cast<grab_outcome>(value);
  return true;
}

outcome<history_kind> history_kind_from_proto(int value) {
  if (value == static_cast<int>(history_kind::sent)
      || value == static_cast<int>(history_kind::received))
    return static_cast<history_kind>(value);
  return bad(errc::invalid_argument,
             "kind must be HISTORY_KIND_SENT or HISTORY_KIND_RECEIVED, got "
               + std::to_string(value));
}

/// Segments are the last three decimal digits of an envelope id.
constexpr int32_t segment_min = 0;
constexpr int32_t segment_max = 999;

bool valid_segment(int32_t segment) {
  return segment >= segment_min && segment <= segment_max;
}

/// Error codes a newer node may add are kept as they are: an unknown code is
/// still an error, and its message still explains it.
errc errc_from_proto(int value) {
  using underlying = std::underlying_type_t<errc>;
  if (value < 0 || value > std::numeric_limits<underlying>::max())
    return errc::internal;
  return static_cast<errc>(value);
}

// -- Requests ------------------------------------------------------------------

void to_proto(const create_request& x, pb::CreateEnvelope* out) {
  out->set_sender(x.sender);
  out->set_group(x.group);
  out->set_total_fen(x.total_fen);
  out->set_count(x.count);
  out->set_kind(static_cast<pb::EnvelopeKind>(x.kind));
  out->set_greeting(x.greeting);
  out->set_idempotency_key(x.idempotency_key);
}

outcome<create_request> from_proto(const pb::CreateEnvelope& x) {
  auto kind = kind_from_proto(x.kind());
  if (!kind)
    return kind.error();
  create_request result;
  result.sender = x.sender();
  result.group = x.group();
  result.total_fen = x.total_fen();
  result.count = x.count();
  result.kind = *kind;
  result.greeting = x.greeting();
  result.idempotency_key = x.idempotency_key();
  return result;
}

void to_proto(const history_query& x, pb::GetHistory* out) {
  out->set_user(x.user);
  out->set_kind(static_cast<pb::HistoryKind>(x.kind));
  out->set_limit(x.limit);
  out->set_cursor(x.cursor);
}

outcome<history_query> from_proto(const pb::GetHistory& x) {
  auto kind = history_kind_from_proto(x.kind());
  if (!kind)
    return kind.error();
  if (x.limit() < 0 || x.limit() > codec::history_limit_max)
    return bad(errc::invalid_argument,
               "limit must be in 1.." + std::to_string(codec::history_limit_max)
                 + " (0: " + std::to_string(codec::history_limit_default)
                 + "), got " + std::to_string(x.limit()));
  history_query result;
  result.user = x.user();
  result.kind = *kind;
  result.limit = x.limit() == 0 ? codec::history_limit_default : x.limit();
  result.cursor = x.cursor();
  return result;
}

void to_proto(const request_body& body, pb::Request& out) {
  if (auto* x = std::get_if<auth_request>(&body)) {
    out.mutable_auth()->set_token(x->token);
  } else if (auto* x = std::get_if<create_request>(&body)) {
    to_proto(*x, out.mutable_create());
  } else if (auto* x = std::get_if<pay_request>(&body)) {
    auto* pay = out.mutable_pay();
    pay->set_envelope_id(x->envelope_id);
    pay->set_payment_txn(x->payment_txn);
    pay->set_from_wallet(x->from_wallet);
  } else if (auto* x = std::get_if<grab_request>(&body)) {
    auto* grab = out.mutable_grab();
    grab->set_envelope_id(x->envelope_id);
    grab->set_user(x->user);
  } else if (auto* x = std::get_if<open_request>(&body)) {
    auto* open = out.mutable_open();
    open->set_envelope_id(x->envelope_id);
    open->set_user(x->user);
  } else if (auto* x = std::get_if<get_request>(&body)) {
    out.mutable_get()->set_envelope_id(x->envelope_id);
  } else if (auto* x = std::get_if<history_query>(&body)) {
    to_proto(*x, out.mutable_history());
  } else if (auto* x = std::get_if<balance_request>(&body)) {
    out.mutable_balance()->set_user(x->user);
  } else if (auto* x = std::get_if<reconcile_request>(&body)) {
    out.mutable_reconcile()->set_since_ms(x->since_ms);
  } else if (std::holds_alternative<stats_request>(body)) {
    out.mutable_stats();
  } else if (auto* x = std::get_if<segment_request>(&body)) {
    auto* seg = out.mutable_segment();
    seg->set_segment(x->segment);
    seg->set_block(x->block);
    // Typed by an operator: keep the frame parseable whatever the terminal.
    seg->set_reason(printable_message(x->reason));
  } else if (auto* x = std::get_if<control_request>(&body)) {
    auto* c = out.mutable_cluster();
    c->set_action(static_cast<pb::ClusterControl::Action>(x->action));
    c->set_node(x->node);
    c->set_dry_run(x->dry_run);
  }
}

outcome<request_body> from_proto(const pb::Request& msg) {
  switch (msg.body_case()) {
    case pb::Request::kAuth:
      return request_body{auth_request{msg.auth().token()}};
    case pb::Request::kCreate: {
      auto create = from_proto(msg.create());
      if (!create)
        return create.error();
      return request_body{std::move(*create)};
    }
    case pb::Request::kPay:
      return request_body{pay_request{msg.pay().envelope_id(),
                                      msg.pay().payment_txn(),
                                      msg.pay().from_wallet()}};
    case pb::Request::kGrab:
      return request_body{
        grab_request{msg.grab().envelope_id(), msg.grab().user()}};
    case pb::Request::kOpen:
      return request_body{
        open_request{msg.open().envelope_id(), msg.open().user()}};
    case pb::Request::kGet:
      return request_body{get_request{msg.get().envelope_id()}};
    case pb::Request::kHistory: {
      auto query = from_proto(msg.history());
      if (!query)
        return query.error();
      return request_body{std::move(*query)};
    }
    case pb::Request::kBalance:
      return request_body{balance_request{msg.balance().user()}};
    case pb::Request::kReconcile:
      if (msg.reconcile().since_ms() < 0)
        return bad(errc::invalid_argument,
                   "since_ms must be >= 0 (0: all), got "
                     + std::to_string(msg.reconcile().since_ms()));
      return request_body{reconcile_request{msg.reconcile().since_ms()}};
    case pb::Request::kStats:
      return request_body{stats_request{}};
    case pb::Request::kSegment: {
      auto& x = msg.segment();
      if (!valid_segment(x.segment()))
        return bad(errc::invalid_argument,
                   "segment must be in " + std::to_string(segment_min) + ".."
                     + std::to_string(segment_max) + ", got "
                     + std::to_string(x.segment()));
      return request_body{segment_request{x.segment(), x.block(), x.reason()}};
    }
    case pb::Request::kCluster: {
      auto& x = msg.cluster();
      control_request req;
      switch (x.action()) {
        case pb::ClusterControl::DRAIN:
          req.action = control_action::drain;
          break;
        case pb::ClusterControl::UNDRAIN:
          req.action = control_action::undrain;
          break;
        case pb::ClusterControl::REBALANCE:
          req.action = control_action::rebalance;
          break;
        default:
          return bad(errc::invalid_argument,
                     "ClusterControl.action must be DRAIN, UNDRAIN or "
                     "REBALANCE, got " + std::to_string(x.action()));
      }
      if (req.action != control_action::rebalance && x.node().empty())
        return bad(errc::invalid_argument,
                   std::string{"ClusterControl "} + to_string(req.action)
                     + " needs a node name");
      req.node = x.node();
      req.dry_run = x.dry_run();
      return request_body{std::move(req)};
    }
    case pb::Request::BODY_NOT_SET:
      break;
  }
  // Also reached for a body field number this build does not know.
  return bad(errc::malformed, "request " + std::to_string(msg.request_id())
                                + " has no known body");
}

// -- Responses -----------------------------------------------------------------

void to_proto(const envelope& x, pb::Envelope* out) {
  out->set_id(x.id);
  out->set_sender(x.sender);
  out->set_group(x.group);
  out->set_greeting(x.greeting);
  out->set_idempotency_key(x.idempotency_key);
  out->set_kind(static_cast<pb::EnvelopeKind>(x.kind));
  out->set_status(static_cast<pb::EnvelopeStatus>(x.status));
  out->set_total_fen(x.total_fen);
  out->set_count(x.count);
  out->set_remaining_fen(x.remaining_fen);
  out->set_remaining_count(x.remaining_count);
  out->set_payment_txn(x.payment_txn);
  out->set_created_at_ms(x.created_at_ms);
  out->set_paid_at_ms(x.paid_at_ms);
  out->set_expires_at_ms(x.expires_at_ms);
  out->set_epoch(x.epoch);
  out->set_refunded_fen(x.refunded_fen);
}

outcome<envelope> from_proto(const pb::Envelope& x) {
  envelope result;
  auto kind = kind_from_proto(x.kind());
  if (!kind)
    return bad(errc::malformed, "Envelope.kind: " + kind.error().message);
  if (!status_from_proto(x.status(), result.status))
    return bad(errc::malformed, "Envelope.status has unknown value "
                                  + std::to_string(x.status()));
  result.id = x.id();
  result.sender = x.sender();
  result.group = x.group();
  result.greeting = x.greeting();
  result.idempotency_key = x.idempotency_key();
  result.kind = *kind;
  result.total_fen = x.total_fen();
  result.count = x.count();
  result.remaining_fen = x.remaining_fen();
  result.remaining_count = x.remaining_count();
  result.payment_txn = x.payment_txn();
  result.created_at_ms = x.created_at_ms();
  result.paid_at_ms = x.paid_at_ms();
  result.expires_at_ms = x.expires_at_ms();
  result.epoch = x.epoch();
  result.refunded_fen = x.refunded_fen();
  return result;
}

void to_proto(const open_record& x, pb::OpenRecord* out) {
  out->set_user(x.user);
  out->set_amount_fen(x.amount_fen);
  out->set_seq(x.seq);
  out->set_opened_at_ms(x.opened_at_ms);
}

open_record from_proto(const pb::OpenRecord& x) {
  return open_record{x.user(), x.amount_fen(), x.seq(), x.opened_at_ms()};
}

void to_proto(const history_page& x, pb::HistoryPage* out) {
  out->mutable_items()->Reserve(static_cast<int>(x.items.size()));
  for (auto& item : x.items) {
    auto* y = out->add_items();
    y->set_envelope_id(item.envelope_id);
    y->set_amount_fen(item.amount_fen);
    y->set_at_ms(item.at_ms);
    y->set_group(item.group);
    y->set_counterpart(item.counterpart);
  }
  out->set_next_cursor(x.next_cursor);
}

history_page from_proto(const pb::HistoryPage& x) {
  history_page result;
  result.items.reserve(x.items_size());
  for (auto& y : x.items())
    result.items.push_back(history_item{y.envelope_id(), y.amount_fen(),
                                        y.at_ms(), y.group(),
                                        y.counterpart()});
  result.next_cursor = x.next_cursor();
  return result;
}

void to_proto(const reconcile_report& x, pb::ReconcileReport* out) {
  out->set_since_ms(x.since_ms);
  out->set_envelopes_checked(x.envelopes_checked);
  out->set_opens_checked(x.opens_checked);
  out->set_accounts_checked(x.accounts_checked);
  out->set_wallets_fen(x.wallets_fen);
  out->set_escrow_fen(x.escrow_fen);
  out->set_external_fen(x.external_fen);
  out->set_relay_pending(x.relay_pending);
  out->mutable_discrepancies()->Reserve(
    static_cast<int>(x.discrepancies.size()));
  for (auto& d : x.discrepancies) {
    auto* y = out->add_discrepancies();
    y->set_kind(d.kind);
    y->set_envelope_id(d.envelope_id);
    y->set_user(d.user);
    // Details may quote database text: keep the reply parseable.
    y->set_detail(printable_message(d.detail));
    y->set_repaired(d.repaired);
  }
}

reconcile_report from_proto(const pb::ReconcileReport& x) {
  reconcile_report result;
  result.since_ms = x.since_ms();
  result.envelopes_checked = x.envelopes_checked();
  result.opens_checked = x.opens_checked();
  result.accounts_checked = x.accounts_checked();
  result.wallets_fen = x.wallets_fen();
  result.escrow_fen = x.escrow_fen();
  result.external_fen = x.external_fen();
  result.relay_pending = x.relay_pending();
  result.discrepancies.reserve(x.discrepancies_size());
  for (auto& y : x.discrepancies())
    result.discrepancies.push_back(discrepancy{
      y.kind(), y.envelope_id(), y.user(), y.detail(), y.repaired()});
  return result;
}

void to_proto(const segment_state& x, pb::SegmentState* out) {
  out->set_segment(x.segment);
  out->set_blocked(x.blocked);
  out->set_manual(x.manual);
  // An automatic block's reason may quote a database error.
  out->set_reason(printable_message(x.reason));
}

outcome<segment_state> from_proto(const pb::SegmentState& x) {
  if (!valid_segment(x.segment()))
    return bad(errc::malformed, "SegmentState.segment out of range: "
                                  + std::to_string(x.segment()));
  return segment_state{x.segment(), x.blocked(), x.manual(), x.reason()};
}

// -- The cluster view of Stats ----------------------------------------------------

// A SET's owner rows go on the wire grouped per owner with their segments as
// compact ranges: a SET of 500 segments and three nodes is three short
// entries, not 500 rows.

void to_proto(const set_view& v, pb::ClusterSet* out) {
  out->set_name(printable_message(v.set));
  out->set_db_now_ms(v.db_now_ms);
  out->mutable_nodes()->Reserve(static_cast<int>(v.nodes.size()));
  for (auto& n : v.nodes) {
    auto* y = out->add_nodes();
    y->set_name(printable_message(n.node));
    y->set_incarnation(n.incarnation);
    y->set_zone(printable_message(n.zone));
    y->set_peer_host(printable_message(n.peer_host));
    y->set_peer_port(n.peer_port);
    y->set_gateway_host(printable_message(n.gateway_host));
    y->set_gateway_port(n.gateway_port);
    y->set_alive(lease_alive(v, n));
    y->set_lease_left_ms(n.expires_at_ms - v.db_now_ms);
    y->set_draining(n.draining);
    y->set_serving_ms(n.since_ms > 0 ? v.db_now_ms - n.since_ms : 0);
  }
  for (auto& g : owner_groups(v)) {
    auto* y = out->add_owners();
    y->set_owner(printable_message(g.owner));
    y->set_owner_incarnation(g.owner_incarnation);
    y->set_segments(segments_text(g.segments));
    y->set_segment_count(static_cast<int32_t>(g.segments.size()));
    y->set_owner_epoch_max(g.owner_epoch_max);
  }
  out->mutable_blocked()->Reserve(static_cast<int>(v.blocked.size()));
  for (auto& seg : v.blocked)
    to_proto(seg, out->add_blocked());
}

void to_proto(const cluster_info& x, pb::ClusterView* out) {
  out->set_enabled(x.enabled);
  out->set_set(printable_message(x.set));
  out->set_zone(printable_message(x.zone));
  out->set_incarnation(x.incarnation);
  out->set_fenced(x.fenced);
  out->set_draining(x.draining);
  for (auto& z : x.zones)
    out->add_zones(printable_message(z));
  for (auto& w : x.warnings)
    out->add_warnings(printable_message(w));
  out->mutable_sets()->Reserve(static_cast<int>(x.sets.size()));
  for (auto& v : x.sets)
    to_proto(v, out->add_sets());
}

// Each owner's segments come back as rows carrying the owner's highest
// owner_epoch (the wire keeps no per-segment epoch), ordered by segment.
outcome<set_view> from_proto(const pb::ClusterSet& x) {
  set_view v;
  v.set = x.name();
  v.db_now_ms = x.db_now_ms();
  v.nodes.reserve(x.nodes_size());
  for (auto& y : x.nodes()) {
    node_lease n;
    n.node = y.name();
    n.incarnation = y.incarnation();
    n.zone = y.zone();
    n.set = x.name();
    n.peer_host = y.peer_host();
    n.peer_port = y.peer_port();
    n.gateway_host = y.gateway_host();
    n.gateway_port = y.gateway_port();
    n.draining = y.draining();
    if (y.serving_ms() > 0)
      n.since_ms = x.db_now_ms() - y.serving_ms();
    if (__builtin_add_overflow(x.db_now_ms(), y.lease_left_ms(),
                               &n.expires_at_ms))
      return bad(errc::malformed, "ClusterNode.lease_left_ms out of range");
    v.nodes.push_back(std::move(n));
  }
  for (auto& y : x.owners()) {
    auto ranges = parse_ranges_text(y.segments());
    if (!ranges)
      return bad(errc::malformed, "SegmentOwners.segments is not a list of "
                                  "ranges: \"" + y.segments() + "\"");
    auto first = v.owners.size();
    // A SET has at most segment_count segments; more is not a SET.
    size_t count = 0;
    for (auto& r : *ranges)
      count += static_cast<size_t>(r.last - r.first + 1);
    if (first + count > static_cast<size_t>(segment_count))
      return bad(errc::malformed, "ClusterSet " + x.name()
                                    + " names more than 1000 segments");
    for (auto& r : *ranges)
      for (auto s = r.first; s <= r.last; ++s)
        v.owners.push_back(segment_owner{s, y.owner(), y.owner_incarnation(),
                                         y.owner_epoch_max()});
    if (v.owners.size() - first != static_cast<size_t>(y.segment_count()))
      return bad(errc::malformed, "SegmentOwners.segment_count "
                                    + std::to_string(y.segment_count())
                                    + " does not match \"" + y.segments()
                                    + "\"");
  }
  std::stable_sort(v.owners.begin(), v.owners.end(),
                   [](const segment_owner& a, const segment_owner& b) {
                     return a.segment < b.segment;
                   });
  v.blocked.reserve(x.blocked_size());
  for (auto& y : x.blocked()) {
    auto seg = from_proto(y);
    if (!seg)
      return seg.error();
    v.blocked.push_back(std::move(*seg));
  }
  return v;
}

outcome<cluster_info> from_proto(const pb::ClusterView& x) {
  cluster_info result;
  result.enabled = x.enabled();
  result.set = x.set();
  result.zone = x.zone();
  result.incarnation = x.incarnation();
  result.fenced = x.fenced();
  result.draining = x.draining();
  result.zones.assign(x.zones().begin(), x.zones().end());
  result.warnings.assign(x.warnings().begin(), x.warnings().end());
  result.sets.reserve(x.sets_size());
  for (auto& y : x.sets()) {
    auto v = from_proto(y);
    if (!v)
      return v.error();
    result.sets.push_back(std::move(*v));
  }
  return result;
}

void to_proto(const node_stats& x, pb::StatsReport* out) {
  out->set_node_name(x.node_name);
  out->mutable_metrics()->Reserve(static_cast<int>(x.metrics.size()));
  for (auto& m : x.metrics) {
    auto* y = out->add_metrics();
    y->set_name(printable_message(m.name));
    y->set_value(m.value);
  }
  out->mutable_segments()->Reserve(static_cast<int>(x.segments.size()));
  for (auto& seg : x.segments)
    to_proto(seg, out->add_segments());
  // A node on its own sends no cluster part: its reply is as before.
  if (x.cluster.enabled)
    to_proto(x.cluster, out->mutable_cluster());
}

outcome<node_stats> from_proto(const pb::StatsReport& x) {
  node_stats result;
  result.node_name = x.node_name();
  result.metrics.reserve(x.metrics_size());
  for (auto& m : x.metrics())
    result.metrics.push_back(metric{m.name(), m.value()});
  result.segments.reserve(x.segments_size());
  for (auto& y : x.segments()) {
    auto seg = from_proto(y);
    if (!seg)
      return seg.error();
    result.segments.push_back(std::move(*seg));
  }
  if (x.has_cluster()) {
    auto cluster = from_proto(x.cluster());
    if (!cluster)
      return cluster.error();
    result.cluster = std::move(*cluster);
  }
  return result;
}

void to_proto(const response_body& body, pb::Response& out) {
  if (auto* x = std::get_if<error_reply>(&body)) {
    auto* err = out.mutable_error();
    err->set_code(static_cast<pb::ErrorCode>(x->code));
    err->set_message(printable_message(x->message));
    err->set_retryable(retryable(x->code));
    err->set_owner_hint(printable_message(x->owner_hint));
  } else if (auto* x = std::get_if<auth_ok>(&body)) {
    out.mutable_auth_ok()->set_node_name(x->node_name);
  } else if (auto* x = std::get_if<envelope>(&body)) {
    to_proto(*x, out.mutable_envelope());
  } else if (auto* x = std::get_if<grab_result>(&body)) {
    auto* grab = out.mutable_grab();
    grab->set_outcome(static_cast<pb::GrabOutcome>(x->outcome));
    grab->set_amount_fen(x->amount_fen);
    grab->set_remaining_count(x->remaining_count);
  } else if (auto* x = std::get_if<open_result>(&body)) {
    auto* open = out.mutable_open();
    open->set_amount_fen(x->amount_fen);
    open->set_seq(x->seq);
    open->set_first_time(x->first_time);
    open->set_count(x->count);
  } else if (auto* x = std::get_if<envelope_detail>(&body)) {
    auto* detail = out.mutable_detail();
    to_proto(x->env, detail->mutable_envelope());
    detail->mutable_opens()->Reserve(static_cast<int>(x->opens.size()));
    for (auto& rec : x->opens)
      to_proto(rec, detail->add_opens());
  } else if (auto* x = std::get_if<history_page>(&body)) {
    to_proto(*x, out.mutable_history());
  } else if (auto* x = std::get_if<balance_info>(&body)) {
    auto* balance = out.mutable_balance();
    balance->set_user(x->user);
    balance->set_balance_fen(x->balance_fen);
  } else if (auto* x = std::get_if<reconcile_report>(&body)) {
    to_proto(*x, out.mutable_reconcile());
  } else if (auto* x = std::get_if<node_stats>(&body)) {
    to_proto(*x, out.mutable_stats());
  } else if (auto* x = std::get_if<segment_state>(&body)) {
    to_proto(*x, out.mutable_segment());
  } else if (auto* x = std::get_if<control_result>(&body)) {
    auto* c = out.mutable_cluster();
    c->set_node(printable_message(x->node));
    c->set_draining(x->draining);
    c->set_owned(x->owned);
    for (auto& m : x->moves) {
      auto* y = c->add_moves();
      y->set_segment(m.segment);
      y->set_from(printable_message(m.from));
      y->set_to(printable_message(m.to));
    }
    c->set_message(printable_message(x->message));
  }
}

outcome<response_body> from_proto(const pb::Response& msg) {
  switch (msg.body_case()) {
    case pb::Response::kError:
      return response_body{error_reply{errc_from_proto(msg.error().code()),
                                       msg.error().message(),
                                       msg.error().owner_hint()}};
    case pb::Response::kAuthOk:
      return response_body{auth_ok{msg.auth_ok().node_name()}};
    case pb::Response::kEnvelope: {
      auto env = from_proto(msg.envelope());
      if (!env)
        return env.error();
      return response_body{std::move(*env)};
    }
    case pb::Response::kGrab: {
      grab_result result;
      if (!outcome_from_proto(msg.grab().outcome(), result.outcome))
        return bad(errc::malformed, "GrabResult.outcome has unknown value "
                                      + std::to_string(msg.grab().outcome()));
      result.amount_fen = msg.grab().amount_fen();
      result.remaining_count = msg.grab().remaining_count();
      return response_body{result};
    }
    case pb::Response::kOpen:
      return response_body{open_result{msg.open().amount_fen(),
                                       msg.open().seq(),
                                       msg.open().first_time(),
                                       msg.open().count()}};
    case pb::Response::kDetail: {
      envelope_detail result;
      auto env = from_proto(msg.detail().envelope());
      if (!env)
        return env.error();
      result.env = std::move(*env);
      result.opens.reserve(msg.detail().opens_size());
      for (auto& rec : msg.detail().opens())
        result.opens.push_back(from_proto(rec));
      return response_body{std::move(result)};
    }
    case pb::Response::kHistory:
      return response_body{from_proto(msg.history())};
    case pb::Response::kBalance:
      return response_body{balance_info{msg.balance().user(),
                                        msg.balance().balance_fen()}};
    case pb::Response::kReconcile:
      return response_body{from_proto(msg.reconcile())};
    case pb::Response::kStats: {
      auto stats = from_proto(msg.stats());
      if (!stats)
        return stats.error();
      return response_body{std::move(*stats)};
    }
    case pb::Response::kSegment: {
      auto seg = from_proto(msg.segment());
      if (!seg)
        return seg.error();
      return response_body{std::move(*seg)};
    }
    case pb::Response::kCluster: {
      auto& x = msg.cluster();
      control_result result;
      result.node = x.node();
      result.draining = x.draining();
      result.owned = x.owned();
      for (auto& m : x.moves())
        result.moves.push_back(control_move{m.segment(), m.from(), m.to()});
      result.message = x.message();
      return response_body{std::move(result)};
    }
    case pb::Response::BODY_NOT_SET:
      break;
  }
  return bad(errc::malformed, "response " + std::to_string(msg.request_id())
                                + " has no known body");
}

} // namespace

// -- Public API ----------------------------------------------------------------

void put_frame_header(uint32_t size, char* out) {
  out[0] = static_cast<char>((size >> 24) & 0xff);
  out[1] = static_cast<char>((size >> 16) & 0xff);
  out[2] = static_cast<char>((size >> 8) & 0xff);
  out[3] = static_cast<char>(size & 0xff);
}

uint32_t get_frame_header(const char* in) {
  auto byte = [in](int i) {
    return static_cast<uint32_t>(static_cast<unsigned char>(in[i]));
  };
  return (byte(0) << 24) | (byte(1) << 16) | (byte(2) << 8) | byte(3);
}

outcome<client_request> decode_request(const char* data, size_t size,
                                       uint64_t& request_id_out) {
  request_id_out = 0;
  pb::Request msg;
  if (!parse_quietly(msg, data, size)) {
    request_id_out = peek_request_id(data, size);
    return bad(errc::malformed, "frame is not a hongbao.v1.Request");
  }
  request_id_out = msg.request_id();
  auto body = from_proto(msg);
  if (!body)
    return body.error();
  return client_request{msg.request_id(), std::move(*body), msg.timeout_ms()};
}

std::string encode_request_frame(const client_request& req) {
  pb::Request msg;
  msg.set_request_id(req.request_id);
  to_proto(req.body, msg);
  msg.set_timeout_ms(req.timeout_ms);
  return frame_of(msg);
}

outcome<client_response> decode_response(const char* data, size_t size) {
  pb::Response msg;
  if (!parse_quietly(msg, data, size))
    return bad(errc::malformed, "frame is not a hongbao.v1.Response");
  auto body = from_proto(msg);
  if (!body)
    return body.error();
  return client_response{msg.request_id(), std::move(*body)};
}

std::string encode_response_frame(const client_response& resp) {
  pb::Response msg;
  msg.set_request_id(resp.request_id);
  to_proto(resp.body, msg);
  return frame_of(msg);
}

} // namespace hb::codec
