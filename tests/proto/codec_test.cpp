#define CAF_SUITE proto.codec
#include "caf/test/unit_test.hpp"

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "domain/cluster_summary.hpp"
#include "proto/codec.hpp"

using namespace hb;

namespace {

std::string bytes(std::initializer_list<int> xs) {
  std::string result;
  for (int x : xs)
    result.push_back(static_cast<char>(x));
  return result;
}

std::string hex(const std::string& data) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string result;
  for (unsigned char c : data) {
    result += digits[c >> 4];
    result += digits[c & 0xf];
  }
  return result;
}

/// Encodes a request frame, checks its header and decodes its payload.
outcome<client_request> round_trip(const client_request& req) {
  auto frame = codec::encode_request_frame(req);
  CAF_REQUIRE(frame.size() >= codec::frame_header_size);
  CAF_CHECK_EQUAL(codec::get_frame_header(frame.data()),
                  frame.size() - codec::frame_header_size);
  uint64_t id = 0;
  auto result = codec::decode_request(frame.data() + codec::frame_header_size,
                                      frame.size() - codec::frame_header_size,
                                      id);
  CAF_CHECK_EQUAL(id, req.request_id);
  return result;
}

outcome<client_response> round_trip(const client_response& resp) {
  auto frame = codec::encode_response_frame(resp);
  CAF_REQUIRE(frame.size() >= codec::frame_header_size);
  CAF_CHECK_EQUAL(codec::get_frame_header(frame.data()),
                  frame.size() - codec::frame_header_size);
  return codec::decode_response(frame.data() + codec::frame_header_size,
                                frame.size() - codec::frame_header_size);
}

outcome<client_request> decode(const std::string& payload, uint64_t& id) {
  return codec::decode_request(payload.data(), payload.size(), id);
}

/// An envelope with every field set to a distinct, non-default value.
envelope full_envelope() {
  envelope env;
  env.id = 2026112600000042217;
  env.sender = "alice";
  env.group = "家人群";
  env.greeting = "恭喜发财";
  env.idempotency_key = "key-1";
  env.kind = envelope_kind::equal;
  env.status = envelope_status::exhausted;
  env.total_fen = 10000;
  env.count = 10;
  env.remaining_fen = 1234;
  env.remaining_count = 3;
  env.refunded_fen = 555;
  env.payment_txn = "txn-9";
  env.created_at_ms = 1764115200000;
  env.paid_at_ms = 1764115201000;
  env.expires_at_ms = 1764201600000;
  env.epoch = 77;
  return env;
}

void check_same(const envelope& x, const envelope& y) {
  CAF_CHECK_EQUAL(x.id, y.id);
  CAF_CHECK_EQUAL(x.sender, y.sender);
  CAF_CHECK_EQUAL(x.group, y.group);
  CAF_CHECK_EQUAL(x.greeting, y.greeting);
  CAF_CHECK_EQUAL(x.idempotency_key, y.idempotency_key);
  CAF_CHECK_EQUAL(static_cast<int>(x.kind), static_cast<int>(y.kind));
  CAF_CHECK_EQUAL(static_cast<int>(x.status), static_cast<int>(y.status));
  CAF_CHECK_EQUAL(x.total_fen, y.total_fen);
  CAF_CHECK_EQUAL(x.count, y.count);
  CAF_CHECK_EQUAL(x.remaining_fen, y.remaining_fen);
  CAF_CHECK_EQUAL(x.remaining_count, y.remaining_count);
  CAF_CHECK_EQUAL(x.refunded_fen, y.refunded_fen);
  CAF_CHECK_EQUAL(x.payment_txn, y.payment_txn);
  CAF_CHECK_EQUAL(x.created_at_ms, y.created_at_ms);
  CAF_CHECK_EQUAL(x.paid_at_ms, y.paid_at_ms);
  CAF_CHECK_EQUAL(x.expires_at_ms, y.expires_at_ms);
  CAF_CHECK_EQUAL(x.epoch, y.epoch);
}

void check_same(const open_record& x, const open_record& y) {
  CAF_CHECK_EQUAL(x.user, y.user);
  CAF_CHECK_EQUAL(x.amount_fen, y.amount_fen);
  CAF_CHECK_EQUAL(x.seq, y.seq);
  CAF_CHECK_EQUAL(x.opened_at_ms, y.opened_at_ms);
}

void check_same(const history_item& x, const history_item& y) {
  CAF_CHECK_EQUAL(x.envelope_id, y.envelope_id);
  CAF_CHECK_EQUAL(x.amount_fen, y.amount_fen);
  CAF_CHECK_EQUAL(x.at_ms, y.at_ms);
  CAF_CHECK_EQUAL(x.group, y.group);
  CAF_CHECK_EQUAL(x.counterpart, y.counterpart);
}

void check_same(const discrepancy& x, const discrepancy& y) {
  CAF_CHECK_EQUAL(x.kind, y.kind);
  CAF_CHECK_EQUAL(x.envelope_id, y.envelope_id);
  CAF_CHECK_EQUAL(x.user, y.user);
  CAF_CHECK_EQUAL(x.detail, y.detail);
  CAF_CHECK_EQUAL(x.repaired, y.repaired);
}

void check_same(const segment_state& x, const segment_state& y) {
  CAF_CHECK_EQUAL(x.segment, y.segment);
  CAF_CHECK_EQUAL(x.blocked, y.blocked);
  CAF_CHECK_EQUAL(x.manual, y.manual);
  CAF_CHECK_EQUAL(x.reason, y.reason);
}

void check_code(const failure& f, errc expected) {
  CAF_CHECK_EQUAL(static_cast<int>(f.code), static_cast<int>(expected));
}

template <class T>
const T& body_as(const client_request& req) {
  auto* x = std::get_if<T>(&req.body);
  CAF_REQUIRE(x != nullptr);
  return *x;
}

template <class T>
const T& body_as(const client_response& resp) {
  auto* x = std::get_if<T>(&resp.body);
  CAF_REQUIRE(x != nullptr);
  return *x;
}

} // namespace

// -- Frame header ----------------------------------------------------------------

CAF_TEST(frame header is big endian) {
  char buf[4];
  codec::put_frame_header(0x01020304u, buf);
  CAF_CHECK_EQUAL(hex(std::string(buf, 4)), "01020304");
  CAF_CHECK_EQUAL(codec::get_frame_header(buf), 0x01020304u);
  codec::put_frame_header(0xfffffffeu, buf);
  CAF_CHECK_EQUAL(hex(std::string(buf, 4)), "fffffffe");
  CAF_CHECK_EQUAL(codec::get_frame_header(buf), 0xfffffffeu);
  codec::put_frame_header(300, buf);
  CAF_CHECK_EQUAL(hex(std::string(buf, 4)), "0000012c");
}

CAF_TEST(an encoded frame starts with its payload length) {
  // The bytes of docs/protocol.md's worked example: keep them in sync.
  CAF_CHECK_EQUAL(
    hex(codec::encode_request_frame({1, auth_request{"s3cret"}})),
    "0000000c08011208" "0a06733363726574");
  CAF_CHECK_EQUAL(hex(codec::encode_response_frame({1, auth_ok{"a1"}})),
                  "0000000808011a040a026131");
  CAF_CHECK_EQUAL(hex(codec::encode_request_frame(
                    {2, grab_request{2026112600000042217, "bob"}})),
                  "0000001308022a0f08e9a9c8afccd58c8f1c1203626f62");
  CAF_CHECK_EQUAL(hex(codec::encode_response_frame(
                    {2, grab_result{grab_outcome::can_open, 0, 7}})),
                  "0000000808022a0408011807");
  // Error{BUSY, retryable} for request 7: the node sets retryable itself.
  client_response resp{7, error_reply{errc::busy, ""}};
  CAF_CHECK_EQUAL(hex(codec::encode_response_frame(resp)),
                  "0000000808071204080818" "01");
}

// -- Requests --------------------------------------------------------------------

CAF_TEST(auth request round trip) {
  auto req = round_trip(client_request{1, auth_request{"s3cret"}});
  CAF_REQUIRE(req.ok());
  CAF_CHECK_EQUAL(req->request_id, 1u);
  CAF_CHECK_EQUAL(body_as<auth_request>(*req).token, "s3cret");
}

CAF_TEST(create request round trip) {
  create_request in;
  in.sender = "alice";
  in.group = "g-42";
  in.total_fen = 12345;
  in.count = 7;
  in.kind = envelope_kind::equal;
  in.greeting = "新年快乐";
  in.idempotency_key = "0f0e-key";
  auto req = round_trip(client_request{UINT64_MAX, in});
  CAF_REQUIRE(req.ok());
  CAF_CHECK_EQUAL(req->request_id, UINT64_MAX);
  auto& out = body_as<create_request>(*req);
  CAF_CHECK_EQUAL(out.sender, in.sender);
  CAF_CHECK_EQUAL(out.group, in.group);
  CAF_CHECK_EQUAL(out.total_fen, in.total_fen);
  CAF_CHECK_EQUAL(out.count, in.count);
  CAF_CHECK_EQUAL(static_cast<int>(out.kind), static_cast<int>(in.kind));
  CAF_CHECK_EQUAL(out.greeting, in.greeting);
  CAF_CHECK_EQUAL(out.idempotency_key, in.idempotency_key);
  in.kind = envelope_kind::random;
  req = round_trip(client_request{2, in});
  CAF_REQUIRE(req.ok());
  CAF_CHECK_EQUAL(static_cast<int>(body_as<create_request>(*req).kind),
                  static_cast<int>(envelope_kind::random));
}

CAF_TEST(pay grab open get request round trips) {
  auto pay = round_trip(client_request{3, pay_request{2026112600000042217, "t1"}});
  CAF_REQUIRE(pay.ok());
  CAF_CHECK_EQUAL(pay->request_id, 3u);
  CAF_CHECK_EQUAL(body_as<pay_request>(*pay).envelope_id, 2026112600000042217);
  CAF_CHECK_EQUAL(body_as<pay_request>(*pay).payment_txn, "t1");
  auto grab = round_trip(client_request{4, grab_request{-5, "bob"}});
  CAF_REQUIRE(grab.ok());
  CAF_CHECK_EQUAL(grab->request_id, 4u);
  CAF_CHECK_EQUAL(body_as<grab_request>(*grab).envelope_id, -5);
  CAF_CHECK_EQUAL(body_as<grab_request>(*grab).user, "bob");
  auto open = round_trip(client_request{5, open_request{INT64_MAX, "carol"}});
  CAF_REQUIRE(open.ok());
  CAF_CHECK_EQUAL(open->request_id, 5u);
  CAF_CHECK_EQUAL(body_as<open_request>(*open).envelope_id, INT64_MAX);
  CAF_CHECK_EQUAL(body_as<open_request>(*open).user, "carol");
  auto get = round_trip(client_request{6, get_request{42}});
  CAF_REQUIRE(get.ok());
  CAF_CHECK_EQUAL(get->request_id, 6u);
  CAF_CHECK_EQUAL(body_as<get_request>(*get).envelope_id, 42);
}

CAF_TEST(pay from wallet round trip) {
  for (bool from_wallet : {false, true}) {
    pay_request in{2026112600000042217, "wallet-txn-1", from_wallet};
    auto req = round_trip(client_request{31, in});
    CAF_REQUIRE(req.ok());
    CAF_CHECK_EQUAL(req->request_id, 31u);
    auto& out = body_as<pay_request>(*req);
    CAF_CHECK_EQUAL(out.envelope_id, in.envelope_id);
    CAF_CHECK_EQUAL(out.payment_txn, in.payment_txn);
    CAF_CHECK_EQUAL(out.from_wallet, from_wallet);
  }
  // from_wallet is field 3 of ConfirmPayment: 18 01.
  CAF_CHECK_EQUAL(hex(codec::encode_request_frame(
                    {1, pay_request{5, "t", true}})),
                  "0000000b" "0801" "2207" "0805" "120174" "1801");
}

CAF_TEST(history query round trip covers all fields) {
  for (auto kind : {history_kind::sent, history_kind::received}) {
    for (int32_t limit : {1, 7, 100}) {
      history_query in{"小明", kind, limit, "opaque:cursor/42"};
      auto req = round_trip(client_request{32, in});
      CAF_REQUIRE(req.ok());
      CAF_CHECK_EQUAL(req->request_id, 32u);
      auto& out = body_as<history_query>(*req);
      CAF_CHECK_EQUAL(out.user, in.user);
      CAF_CHECK_EQUAL(static_cast<int>(out.kind), static_cast<int>(kind));
      CAF_CHECK_EQUAL(out.limit, limit);
      CAF_CHECK_EQUAL(out.cursor, in.cursor);
    }
  }
  // The first page has no cursor.
  auto req = round_trip(
    client_request{33, history_query{"bob", history_kind::sent, 5, ""}});
  CAF_REQUIRE(req.ok());
  CAF_CHECK(body_as<history_query>(*req).cursor.empty());
  // GetHistory is field 8 of Request: 42 ...
  CAF_CHECK_EQUAL(hex(codec::encode_request_frame(
                    {1, history_query{"b", history_kind::received, 3, "c"}})),
                  "0000000e" "0801" "420a" "0a0162" "1002" "1803" "220163");
}

CAF_TEST(history limit 0 means the default) {
  auto req = round_trip(
    client_request{34, history_query{"bob", history_kind::received, 0, ""}});
  CAF_REQUIRE(req.ok());
  CAF_CHECK_EQUAL(body_as<history_query>(*req).limit,
                  codec::history_limit_default);
  CAF_CHECK_EQUAL(codec::history_limit_default, 20);
  CAF_CHECK_EQUAL(codec::history_limit_max, 100);
}

CAF_TEST(history limit out of range is an invalid argument) {
  for (int32_t limit : {-1, 101, INT32_MIN, INT32_MAX}) {
    auto req = round_trip(
      client_request{35, history_query{"bob", history_kind::sent, limit, ""}});
    CAF_REQUIRE(!req);
    check_code(req.error(), errc::invalid_argument);
  }
}

CAF_TEST(unknown history kind is an invalid argument) {
  uint64_t id = 0;
  // request_id 6, history { user: "b", kind: 3 }
  auto req = decode(bytes({0x08, 0x06, 0x42, 0x05, 0x0a, 0x01, 0x62, 0x10,
                           0x03}),
                    id);
  CAF_REQUIRE(!req);
  check_code(req.error(), errc::invalid_argument);
  CAF_CHECK_EQUAL(id, 6u);
  // kind 257 must not wrap around to 1 (sent) in the uint8_t enum.
  req = decode(bytes({0x08, 0x06, 0x42, 0x03, 0x10, 0x81, 0x02}), id);
  CAF_REQUIRE(!req);
  check_code(req.error(), errc::invalid_argument);
  // An unset kind (HISTORY_KIND_UNSPECIFIED) is refused too.
  req = decode(bytes({0x08, 0x06, 0x42, 0x03, 0x0a, 0x01, 0x62}), id);
  CAF_REQUIRE(!req);
  check_code(req.error(), errc::invalid_argument);
  // A negative kind.
  req = decode(bytes({0x08, 0x06, 0x42, 0x0b, 0x10, 0xff, 0xff, 0xff, 0xff,
                      0xff, 0xff, 0xff, 0xff, 0xff, 0x01}),
               id);
  CAF_REQUIRE(!req);
  check_code(req.error(), errc::invalid_argument);
}

CAF_TEST(balance request round trip) {
  auto req = round_trip(client_request{36, balance_request{"家人"}});
  CAF_REQUIRE(req.ok());
  CAF_CHECK_EQUAL(req->request_id, 36u);
  CAF_CHECK_EQUAL(body_as<balance_request>(*req).user, "家人");
  // GetBalance is field 9 of Request: 4a ...
  CAF_CHECK_EQUAL(hex(codec::encode_request_frame({1, balance_request{"bob"}})),
                  "00000009" "0801" "4a05" "0a03626f62");
}

CAF_TEST(reconcile request round trip) {
  for (int64_t since : {int64_t{0}, int64_t{1764115200000}, INT64_MAX}) {
    auto req = round_trip(client_request{37, reconcile_request{since}});
    CAF_REQUIRE(req.ok());
    CAF_CHECK_EQUAL(req->request_id, 37u);
    CAF_CHECK_EQUAL(body_as<reconcile_request>(*req).since_ms, since);
  }
  // Reconcile is field 10 of Request: 52 ...; since_ms 0 is an empty body.
  CAF_CHECK_EQUAL(hex(codec::encode_request_frame({1, reconcile_request{0}})),
                  "00000004" "0801" "5200");
  auto req = round_trip(client_request{38, reconcile_request{-1}});
  CAF_REQUIRE(!req);
  check_code(req.error(), errc::invalid_argument);
}

CAF_TEST(request timeout round trip) {
  for (uint32_t timeout : {0u, 1u, 2500u, 300000u, UINT32_MAX}) {
    std::vector<request_body> bodies{
      auth_request{"t"}, open_request{2026112600000042217, "bob"},
      reconcile_request{5}, stats_request{}, segment_request{217, true, "r"}};
    for (auto& body : bodies) {
      auto req = round_trip(client_request{50, body, timeout});
      CAF_REQUIRE(req.ok());
      CAF_CHECK_EQUAL(req->request_id, 50u);
      CAF_CHECK_EQUAL(req->timeout_ms, timeout);
      CAF_CHECK_EQUAL(req->body.index(), body.index());
    }
  }
  // timeout_ms is field 20 of Request, after the body: a0 01 (two-byte tag).
  CAF_CHECK_EQUAL(hex(codec::encode_request_frame(
                    {1, stats_request{}, 250})),
                  "00000008" "0801" "5a00" "a001fa01");
  // 0 (no deadline) is not on the wire at all.
  CAF_CHECK_EQUAL(hex(codec::encode_request_frame({1, stats_request{}, 0})),
                  "00000004" "0801" "5a00");
  // Requests without the field (older clients) decode with no deadline.
  uint64_t id = 0;
  auto req = decode(bytes({0x08, 0x02, 0x5a, 0x00}), id);
  CAF_REQUIRE(req.ok());
  CAF_CHECK_EQUAL(req->timeout_ms, 0u);
  CAF_CHECK(std::holds_alternative<stats_request>(req->body));
}

CAF_TEST(stats request round trip) {
  auto req = round_trip(client_request{51, stats_request{}});
  CAF_REQUIRE(req.ok());
  CAF_CHECK_EQUAL(req->request_id, 51u);
  CAF_CHECK(std::holds_alternative<stats_request>(req->body));
  // Stats is field 11 of Request: 5a 00 (an empty message).
  CAF_CHECK_EQUAL(hex(codec::encode_request_frame({1, stats_request{}})),
                  "00000004" "0801" "5a00");
}

CAF_TEST(segment request round trip covers all fields) {
  for (int32_t segment : {0, 1, 217, 999}) {
    for (bool block : {true, false}) {
      for (std::string reason : {"", "db maintenance", "迁移 shard"}) {
        segment_request in{segment, block, reason};
        auto req = round_trip(client_request{52, in, 3000});
        CAF_REQUIRE(req.ok());
        CAF_CHECK_EQUAL(req->request_id, 52u);
        CAF_CHECK_EQUAL(req->timeout_ms, 3000u);
        auto& out = body_as<segment_request>(*req);
        CAF_CHECK_EQUAL(out.segment, segment);
        CAF_CHECK_EQUAL(out.block, block);
        CAF_CHECK_EQUAL(out.reason, reason);
      }
    }
  }
  // SegmentControl is field 12 of Request: 62 ...; segment 217 = d9 01.
  CAF_CHECK_EQUAL(hex(codec::encode_request_frame(
                    {1, segment_request{217, true, "m"}})),
                  "0000000c" "0801" "6208" "08d901" "1001" "1a016d");
  // Unblock segment 0 is an empty SegmentControl, and still a body.
  CAF_CHECK_EQUAL(hex(codec::encode_request_frame(
                    {1, segment_request{0, false, ""}})),
                  "00000004" "0801" "6200");
  uint64_t id = 0;
  auto req = decode(bytes({0x08, 0x03, 0x62, 0x00}), id);
  CAF_REQUIRE(req.ok());
  CAF_CHECK_EQUAL(body_as<segment_request>(*req).segment, 0);
  CAF_CHECK_EQUAL(body_as<segment_request>(*req).block, false);
}

CAF_TEST(segment outside 0 to 999 is an invalid argument) {
  for (int32_t segment : {-1, 1000, 1217, INT32_MIN, INT32_MAX}) {
    for (bool block : {true, false}) {
      auto req = round_trip(
        client_request{53, segment_request{segment, block, "x"}, 100});
      CAF_REQUIRE(!req);
      check_code(req.error(), errc::invalid_argument);
    }
  }
  // request_id 6, segment { segment: 1000 } (e8 07): the id is kept.
  uint64_t id = 0;
  auto req = decode(bytes({0x08, 0x06, 0x62, 0x03, 0x08, 0xe8, 0x07}), id);
  CAF_REQUIRE(!req);
  check_code(req.error(), errc::invalid_argument);
  CAF_CHECK_EQUAL(id, 6u);
}

CAF_TEST(a body with default fields still decodes as that body) {
  // Proto3 drops default values on the wire: an Open for envelope 0 by "" is
  // an empty sub-message, which is a body all the same.
  auto open = round_trip(client_request{8, open_request{}});
  CAF_REQUIRE(open.ok());
  CAF_CHECK(std::holds_alternative<open_request>(open->body));
}

// -- Responses -------------------------------------------------------------------

CAF_TEST(error response round trip) {
  for (int code = 0; code <= static_cast<int>(errc::not_expired); ++code) {
    auto x = static_cast<errc>(code);
    auto resp = round_trip(client_response{9, error_reply{x, "why"}});
    CAF_REQUIRE(resp.ok());
    CAF_CHECK_EQUAL(resp->request_id, 9u);
    auto& err = body_as<error_reply>(*resp);
    CAF_CHECK_EQUAL(static_cast<int>(err.code), code);
    CAF_CHECK_EQUAL(err.message, "why");
  }
}

CAF_TEST(new error codes are on the wire and retryable) {
  CAF_CHECK_EQUAL(static_cast<int>(errc::segment_unavailable), 17);
  CAF_CHECK_EQUAL(static_cast<int>(errc::deadline_exceeded), 18);
  CAF_CHECK(retryable(errc::segment_unavailable));
  CAF_CHECK(retryable(errc::deadline_exceeded));
  // Error{code 17, retryable} and Error{code 18, retryable} for request 7.
  CAF_CHECK_EQUAL(hex(codec::encode_response_frame(
                    {7, error_reply{errc::segment_unavailable, ""}})),
                  "0000000808071204081118" "01");
  CAF_CHECK_EQUAL(hex(codec::encode_response_frame(
                    {7, error_reply{errc::deadline_exceeded, ""}})),
                  "0000000808071204081218" "01");
}

CAF_TEST(shares pending is on the wire and retryable) {
  CAF_CHECK_EQUAL(static_cast<int>(errc::shares_pending), 20);
  CAF_CHECK(retryable(errc::shares_pending));
  CAF_CHECK(!retryable(errc::exhausted));
  // Error{code 20, retryable} for request 7: an old client that does not
  // know code 20 still reads retryable = true and retries.
  CAF_CHECK_EQUAL(hex(codec::encode_response_frame(
                    {7, error_reply{errc::shares_pending, ""}})),
                  "0000000808071204081418" "01");
  CAF_CHECK_EQUAL(static_cast<int>(errc::not_expired), 21);
  CAF_CHECK(!retryable(errc::not_expired));
}

CAF_TEST(not owner is retryable and carries the owner hint) {
  CAF_CHECK_EQUAL(static_cast<int>(errc::not_owner), 19);
  CAF_CHECK(retryable(errc::not_owner));
  auto resp = round_trip(client_response{
    7, error_reply{errc::not_owner, "segment 5 moved", "10.0.0.2:7711"}});
  CAF_REQUIRE(resp.ok());
  auto& err = body_as<error_reply>(*resp);
  CAF_CHECK_EQUAL(err.code, errc::not_owner);
  CAF_CHECK_EQUAL(err.message, "segment 5 moved");
  CAF_CHECK_EQUAL(err.owner_hint, "10.0.0.2:7711");
  // Error{code 19, retryable, owner_hint "h:1"} for request 7: the hint is
  // field 4, after the fields existing clients read.
  CAF_CHECK_EQUAL(hex(codec::encode_response_frame(
                    {7, error_reply{errc::not_owner, "", "h:1"}})),
                  "0000000d" "0807" "1209" "0813" "1801" "2203683a31");
  // Without a hint nothing is added: the bytes are as before.
  CAF_CHECK_EQUAL(hex(codec::encode_response_frame(
                    {7, error_reply{errc::not_owner, ""}})),
                  "0000000808071204081318" "01");
  resp = round_trip(client_response{7, error_reply{errc::busy, "b"}});
  CAF_REQUIRE(resp.ok());
  CAF_CHECK_EQUAL(body_as<error_reply>(*resp).owner_hint, "");
}

CAF_TEST(error messages that are not utf8 are made printable) {
  auto resp = round_trip(
    client_response{1, error_reply{errc::internal, "db said \xff\xfe ok"}});
  CAF_REQUIRE(resp.ok());
  CAF_CHECK_EQUAL(body_as<error_reply>(*resp).message, "db said ?? ok");
  resp = round_trip(client_response{1, error_reply{errc::internal, "手慢了"}});
  CAF_REQUIRE(resp.ok());
  CAF_CHECK_EQUAL(body_as<error_reply>(*resp).message, "手慢了");
}

CAF_TEST(auth ok response round trip) {
  auto resp = round_trip(client_response{10, auth_ok{"node-a1"}});
  CAF_REQUIRE(resp.ok());
  CAF_CHECK_EQUAL(resp->request_id, 10u);
  CAF_CHECK_EQUAL(body_as<auth_ok>(*resp).node_name, "node-a1");
}

CAF_TEST(envelope response round trip covers all fields) {
  auto env = full_envelope();
  auto resp = round_trip(client_response{11, env});
  CAF_REQUIRE(resp.ok());
  CAF_CHECK_EQUAL(resp->request_id, 11u);
  check_same(body_as<envelope>(*resp), env);
  for (int s = 1; s <= 5; ++s) {
    env.status = static_cast<envelope_status>(s);
    resp = round_trip(client_response{12, env});
    CAF_REQUIRE(resp.ok());
    CAF_CHECK_EQUAL(static_cast<int>(body_as<envelope>(*resp).status), s);
  }
}

CAF_TEST(grab response round trip) {
  for (int o = 1; o <= 5; ++o) {
    grab_result in{static_cast<grab_outcome>(o), 1234, 4};
    auto resp = round_trip(client_response{13, in});
    CAF_REQUIRE(resp.ok());
    CAF_CHECK_EQUAL(resp->request_id, 13u);
    auto& out = body_as<grab_result>(*resp);
    CAF_CHECK_EQUAL(static_cast<int>(out.outcome), o);
    CAF_CHECK_EQUAL(out.amount_fen, 1234);
    CAF_CHECK_EQUAL(out.remaining_count, 4);
  }
}

CAF_TEST(open response round trip) {
  for (bool first : {true, false}) {
    auto resp = round_trip(client_response{14, open_result{777, 3, first, 10}});
    CAF_REQUIRE(resp.ok());
    CAF_CHECK_EQUAL(resp->request_id, 14u);
    auto& out = body_as<open_result>(*resp);
    CAF_CHECK_EQUAL(out.amount_fen, 777);
    CAF_CHECK_EQUAL(out.seq, 3);
    CAF_CHECK_EQUAL(out.first_time, first);
    CAF_CHECK_EQUAL(out.count, 10);
  }
}

CAF_TEST(detail response round trip covers all fields) {
  envelope_detail in;
  in.env = full_envelope();
  in.opens.push_back(open_record{"bob", 5000, 1, 1764115300000});
  in.opens.push_back(open_record{"小明", 3766, 2, 1764115300001});
  auto resp = round_trip(client_response{15, in});
  CAF_REQUIRE(resp.ok());
  CAF_CHECK_EQUAL(resp->request_id, 15u);
  auto& out = body_as<envelope_detail>(*resp);
  check_same(out.env, in.env);
  CAF_REQUIRE_EQUAL(out.opens.size(), 2u);
  check_same(out.opens[0], in.opens[0]);
  check_same(out.opens[1], in.opens[1]);
  // No opens at all is a valid detail too.
  resp = round_trip(client_response{16, envelope_detail{in.env, {}}});
  CAF_REQUIRE(resp.ok());
  CAF_CHECK(body_as<envelope_detail>(*resp).opens.empty());
}

CAF_TEST(history page response round trip covers all fields) {
  history_page in;
  in.items.push_back(
    history_item{2026112600000042217, 5000, 1764115300000, "家人群", "alice"});
  in.items.push_back(history_item{2026112500000001001, 1, 1764000000000,
                                  "g-2", "小明"});
  in.items.push_back(history_item{3, 0, 0, "", ""});
  in.next_cursor = "opaque-cursor\x01";
  auto resp = round_trip(client_response{40, in});
  CAF_REQUIRE(resp.ok());
  CAF_CHECK_EQUAL(resp->request_id, 40u);
  auto& out = body_as<history_page>(*resp);
  CAF_REQUIRE_EQUAL(out.items.size(), 3u);
  for (size_t i = 0; i < 3; ++i)
    check_same(out.items[i], in.items[i]);
  CAF_CHECK_EQUAL(out.next_cursor, in.next_cursor);
  // An empty last page is a history page all the same.
  resp = round_trip(client_response{41, history_page{}});
  CAF_REQUIRE(resp.ok());
  CAF_CHECK(body_as<history_page>(*resp).items.empty());
  CAF_CHECK(body_as<history_page>(*resp).next_cursor.empty());
}

CAF_TEST(balance response round trip) {
  for (int64_t fen : {int64_t{0}, int64_t{123456}, int64_t{-7}, INT64_MAX}) {
    auto resp = round_trip(client_response{42, balance_info{"bob", fen}});
    CAF_REQUIRE(resp.ok());
    CAF_CHECK_EQUAL(resp->request_id, 42u);
    auto& out = body_as<balance_info>(*resp);
    CAF_CHECK_EQUAL(out.user, "bob");
    CAF_CHECK_EQUAL(out.balance_fen, fen);
  }
}

CAF_TEST(reconcile report response round trip covers all fields) {
  reconcile_report in;
  in.since_ms = 1764115200000;
  in.envelopes_checked = 1200;
  in.opens_checked = 34567;
  in.accounts_checked = 890;
  in.wallets_fen = 1234567;
  in.escrow_fen = 7654;
  in.external_fen = -1242221;
  in.relay_pending = 12;
  in.discrepancies.push_back(discrepancy{"missing_credit", 2026112600000042217,
                                         "bob", "share 3 not credited", true});
  in.discrepancies.push_back(
    discrepancy{"wallet_mismatch", 0, "小明", "balance 5 != ledger 6", false});
  in.discrepancies.push_back(discrepancy{"ledger_unbalanced", 0, "", "", false});
  auto resp = round_trip(client_response{43, in});
  CAF_REQUIRE(resp.ok());
  CAF_CHECK_EQUAL(resp->request_id, 43u);
  auto& out = body_as<reconcile_report>(*resp);
  CAF_CHECK_EQUAL(out.since_ms, in.since_ms);
  CAF_CHECK_EQUAL(out.envelopes_checked, in.envelopes_checked);
  CAF_CHECK_EQUAL(out.opens_checked, in.opens_checked);
  CAF_CHECK_EQUAL(out.accounts_checked, in.accounts_checked);
  CAF_CHECK_EQUAL(out.wallets_fen, in.wallets_fen);
  CAF_CHECK_EQUAL(out.escrow_fen, in.escrow_fen);
  CAF_CHECK_EQUAL(out.external_fen, in.external_fen);
  CAF_CHECK_EQUAL(out.relay_pending, in.relay_pending);
  CAF_REQUIRE_EQUAL(out.discrepancies.size(), 3u);
  for (size_t i = 0; i < 3; ++i)
    check_same(out.discrepancies[i], in.discrepancies[i]);
  // A clean report: no discrepancies.
  resp = round_trip(client_response{44, reconcile_report{}});
  CAF_REQUIRE(resp.ok());
  CAF_CHECK(body_as<reconcile_report>(*resp).discrepancies.empty());
}

CAF_TEST(discrepancy details that are not utf8 are made printable) {
  reconcile_report in;
  in.discrepancies.push_back(
    discrepancy{"missing_credit", 1, "bob", "db said \xff ok", false});
  auto resp = round_trip(client_response{45, in});
  CAF_REQUIRE(resp.ok());
  CAF_CHECK_EQUAL(body_as<reconcile_report>(*resp).discrepancies.at(0).detail,
                  "db said ? ok");
}

CAF_TEST(stats response round trip covers all fields) {
  node_stats in;
  in.node_name = "node-a1";
  in.metrics.push_back(metric{"envelopes.activations", 12});
  in.metrics.push_back(metric{"opens.committed", INT64_MAX});
  in.metrics.push_back(metric{"refunds", 0});
  in.metrics.push_back(metric{"store.delta", -5});
  in.metrics.push_back(metric{"store.min", INT64_MIN});
  in.segments.push_back(segment_state{217, true, true, "db maintenance"});
  in.segments.push_back(segment_state{3, true, false, "probe failed: 超时"});
  in.segments.push_back(segment_state{0, false, false, ""});
  in.segments.push_back(segment_state{999, true, true, ""});
  auto resp = round_trip(client_response{60, in});
  CAF_REQUIRE(resp.ok());
  CAF_CHECK_EQUAL(resp->request_id, 60u);
  auto& out = body_as<node_stats>(*resp);
  CAF_CHECK_EQUAL(out.node_name, in.node_name);
  CAF_REQUIRE_EQUAL(out.metrics.size(), in.metrics.size());
  for (size_t i = 0; i < in.metrics.size(); ++i) {
    CAF_CHECK_EQUAL(out.metrics[i].name, in.metrics[i].name);
    CAF_CHECK_EQUAL(out.metrics[i].value, in.metrics[i].value);
  }
  CAF_REQUIRE_EQUAL(out.segments.size(), in.segments.size());
  for (size_t i = 0; i < in.segments.size(); ++i)
    check_same(out.segments[i], in.segments[i]);
  // A node with no metrics and no blocked segment.
  resp = round_trip(client_response{61, node_stats{}});
  CAF_REQUIRE(resp.ok());
  CAF_CHECK(body_as<node_stats>(*resp).metrics.empty());
  CAF_CHECK(body_as<node_stats>(*resp).segments.empty());
  CAF_CHECK(body_as<node_stats>(*resp).node_name.empty());
  // StatsReport is field 11 of Response: 5a ...; Metric{"a", 1}.
  node_stats small;
  small.node_name = "n";
  small.metrics.push_back(metric{"a", 1});
  CAF_CHECK_EQUAL(hex(codec::encode_response_frame({1, small})),
                  "0000000e" "0801" "5a0a" "0a016e" "1205" "0a0161" "1001");
}

namespace {

node_lease lease(std::string node, int64_t incarnation, std::string zone,
                 std::string set, int64_t expires_at_ms) {
  node_lease n;
  n.node = std::move(node);
  n.incarnation = incarnation;
  n.zone = std::move(zone);
  n.set = std::move(set);
  n.peer_host = "10.0.0." + std::to_string(incarnation);
  n.peer_port = 7811;
  n.gateway_host = "10.1.0." + std::to_string(incarnation);
  n.gateway_port = 7711;
  n.expires_at_ms = expires_at_ms;
  return n;
}

// A cluster of two SETs seen from a1: set-1 with a live a1, a live b1 and a
// dead c1 (segments of an older incarnation of c1, and some unowned), and
// set-2 as last pulled from its nodes. Within one owner every row has the
// same owner_epoch, so the round trip restores every row exactly.
cluster_info full_cluster() {
  cluster_info c;
  c.enabled = true;
  c.set = "set-1";
  c.zone = "zone-a";
  c.incarnation = 41;
  c.fenced = true;
  c.zones = {"zone-a", "zone-b", "zone-c"};
  set_view s1;
  s1.set = "set-1";
  s1.db_now_ms = 1764115200000;
  s1.nodes = {lease("a1", 41, "zone-a", "set-1", 1764115202500),
              lease("b1", 7, "zone-b", "set-1", 1764115201000),
              lease("c1", 3, "zone-c", "set-1", 1764115100000)};
  for (int32_t s = 0; s < 10; ++s) {
    auto owner = s % 3 == 0 ? "a1" : s % 3 == 1 ? "b1" : "c1";
    auto inc = s % 3 == 0 ? 41 : s % 3 == 1 ? 7 : 2;
    s1.owners.push_back(segment_owner{s, owner, inc, s % 3 == 0 ? 12 : 5});
  }
  s1.owners.push_back(segment_owner{10, "c1", 3, 9});
  s1.owners.push_back(segment_owner{11, "", 0, 0});
  s1.owners.push_back(segment_owner{12, "", 0, 0});
  s1.blocked = {segment_state{4, true, true, "maintenance"},
                segment_state{7, true, false, "3 faults"}};
  set_view s2;
  s2.set = "set-2";
  s2.db_now_ms = 1764115199000;
  s2.nodes = {lease("d1", 5, "zone-a", "set-2", 1764115201000)};
  for (int32_t s = 500; s < 1000; ++s)
    s2.owners.push_back(segment_owner{s, "d1", 5, 1});
  c.sets = {s1, s2};
  return c;
}

void check_same(const node_lease& x, const node_lease& y) {
  CAF_CHECK_EQUAL(x.node, y.node);
  CAF_CHECK_EQUAL(x.incarnation, y.incarnation);
  CAF_CHECK_EQUAL(x.zone, y.zone);
  CAF_CHECK_EQUAL(x.set, y.set);
  CAF_CHECK_EQUAL(x.peer_host, y.peer_host);
  CAF_CHECK_EQUAL(x.peer_port, y.peer_port);
  CAF_CHECK_EQUAL(x.gateway_host, y.gateway_host);
  CAF_CHECK_EQUAL(x.gateway_port, y.gateway_port);
  CAF_CHECK_EQUAL(x.expires_at_ms, y.expires_at_ms);
}

void check_same(const segment_owner& x, const segment_owner& y) {
  CAF_CHECK_EQUAL(x.segment, y.segment);
  CAF_CHECK_EQUAL(x.owner, y.owner);
  CAF_CHECK_EQUAL(x.owner_incarnation, y.owner_incarnation);
  CAF_CHECK_EQUAL(x.owner_epoch, y.owner_epoch);
}

void check_same(const cluster_info& x, const cluster_info& y) {
  CAF_CHECK_EQUAL(x.enabled, y.enabled);
  CAF_CHECK_EQUAL(x.set, y.set);
  CAF_CHECK_EQUAL(x.zone, y.zone);
  CAF_CHECK_EQUAL(x.incarnation, y.incarnation);
  CAF_CHECK_EQUAL(x.fenced, y.fenced);
  CAF_CHECK_EQUAL(x.zones, y.zones);
  CAF_REQUIRE_EQUAL(x.sets.size(), y.sets.size());
  for (size_t i = 0; i < x.sets.size(); ++i) {
    auto& a = x.sets[i];
    auto& b = y.sets[i];
    CAF_CHECK_EQUAL(a.set, b.set);
    CAF_CHECK_EQUAL(a.db_now_ms, b.db_now_ms);
    CAF_REQUIRE_EQUAL(a.nodes.size(), b.nodes.size());
    for (size_t k = 0; k < a.nodes.size(); ++k)
      check_same(a.nodes[k], b.nodes[k]);
    CAF_REQUIRE_EQUAL(a.owners.size(), b.owners.size());
    for (size_t k = 0; k < a.owners.size(); ++k)
      check_same(a.owners[k], b.owners[k]);
    CAF_REQUIRE_EQUAL(a.blocked.size(), b.blocked.size());
    for (size_t k = 0; k < a.blocked.size(); ++k)
      check_same(a.blocked[k], b.blocked[k]);
  }
}

// Protobuf's wire format by hand, for replies a correct node never sends.
std::string varint(uint64_t x) {
  std::string out;
  do {
    auto byte = static_cast<char>(x & 0x7f);
    x >>= 7;
    out.push_back(static_cast<char>(byte | (x != 0 ? 0x80 : 0)));
  } while (x != 0);
  return out;
}

std::string int_field(int field, uint64_t x) {
  return varint(static_cast<uint64_t>(field) << 3) + varint(x);
}

std::string len_field(int field, const std::string& payload) {
  return varint((static_cast<uint64_t>(field) << 3) | 2)
         + varint(payload.size()) + payload;
}

// Response{1, stats{cluster{enabled, sets{set}}}}.
std::string stats_with_set(const std::string& set) {
  auto view = int_field(1, 1) + len_field(7, set);
  return int_field(1, 1) + len_field(11, len_field(4, view));
}

std::string owners(const std::string& segments, int32_t count) {
  return len_field(4, len_field(1, "a1") + len_field(3, segments)
                        + int_field(4, static_cast<uint64_t>(count)));
}

} // namespace

CAF_TEST(stats response round trip covers the cluster view) {
  node_stats in;
  in.node_name = "a1";
  in.metrics.push_back(metric{"opens.committed", 3});
  in.cluster = full_cluster();
  auto resp = round_trip(client_response{62, in});
  CAF_REQUIRE(resp.ok());
  auto& out = body_as<node_stats>(*resp);
  CAF_CHECK_EQUAL(out.node_name, "a1");
  CAF_REQUIRE_EQUAL(out.metrics.size(), 1u);
  check_same(out.cluster, in.cluster);
  // What people read (alive, lease left) is what the node computed.
  auto& s1 = out.cluster.sets[0];
  CAF_CHECK(lease_alive(s1, s1.nodes[0]));
  CAF_CHECK_EQUAL(s1.nodes[0].expires_at_ms - s1.db_now_ms, 2500);
  CAF_CHECK(!lease_alive(s1, s1.nodes[2]));
  CAF_CHECK_EQUAL(s1.nodes[2].expires_at_ms - s1.db_now_ms, -100000);
}

CAF_TEST(owners travel grouped with their highest owner epoch) {
  node_stats in;
  in.cluster = full_cluster();
  auto& s1 = in.cluster.sets[0];
  s1.owners[3].owner_epoch = 20;  // segment 3 of a1: a1's highest epoch now
  auto resp = round_trip(client_response{63, in});
  CAF_REQUIRE(resp.ok());
  auto& out = body_as<node_stats>(*resp).cluster.sets[0];
  CAF_REQUIRE_EQUAL(out.owners.size(), s1.owners.size());
  // Every segment of a1 comes back with a1's highest epoch; the others keep
  // theirs, and the grouping is the same on both sides.
  for (auto& row : out.owners)
    if (row.owner == "a1")
      CAF_CHECK_EQUAL(row.owner_epoch, 20);
  CAF_CHECK_EQUAL(out.owners[1].owner_epoch, 5);
  auto before = owner_groups(s1);
  auto after = owner_groups(out);
  CAF_REQUIRE_EQUAL(before.size(), after.size());
  for (size_t i = 0; i < before.size(); ++i) {
    CAF_CHECK_EQUAL(before[i].owner, after[i].owner);
    CAF_CHECK_EQUAL(before[i].owner_incarnation, after[i].owner_incarnation);
    CAF_CHECK_EQUAL(before[i].segments, after[i].segments);
    CAF_CHECK_EQUAL(before[i].owner_epoch_max, after[i].owner_epoch_max);
  }
  // Five groups: a1, b1, c1 at 2, c1 at 3, and the unowned segments.
  CAF_CHECK_EQUAL(after.size(), 5u);
}

CAF_TEST(a node on its own sends no cluster view) {
  node_stats in;
  in.node_name = "n";
  in.metrics.push_back(metric{"a", 1});
  // Whatever the struct holds, a disabled cluster is not on the wire: the
  // bytes are those of a node before clusters existed.
  in.cluster.zone = "zone-a";
  CAF_CHECK_EQUAL(hex(codec::encode_response_frame({1, in})),
                  "0000000e" "0801" "5a0a" "0a016e" "1205" "0a0161" "1001");
  auto resp = round_trip(client_response{1, in});
  CAF_REQUIRE(resp.ok());
  CAF_CHECK(!body_as<node_stats>(*resp).cluster.enabled);
  CAF_CHECK(body_as<node_stats>(*resp).cluster.sets.empty());
}

CAF_TEST(a cluster view with impossible owners is a malformed response) {
  auto decode_stats = [](const std::string& payload) {
    return codec::decode_response(payload.data(), payload.size());
  };
  // The hand-made encoding is right: a good set decodes.
  auto good = decode_stats(stats_with_set(len_field(1, "s") + owners("0-2,5", 4)));
  CAF_REQUIRE(good.ok());
  auto& set = body_as<node_stats>(*good).cluster.sets.at(0);
  CAF_REQUIRE_EQUAL(set.owners.size(), 4u);
  CAF_CHECK_EQUAL(set.owners[3].segment, 5);
  CAF_CHECK_EQUAL(set.owners[3].owner, "a1");
  for (auto& bad : {
         stats_with_set(owners("x", 1)),
         stats_with_set(owners("0-2", 2)),
         stats_with_set(owners("0-2", -1)),
         stats_with_set(owners("0-999", 1000) + owners("0", 1)),
         stats_with_set(owners("5-1", 5)),
         stats_with_set(len_field(5, int_field(1, 1000))),
         stats_with_set(int_field(2, INT64_MAX)
                        + len_field(3, int_field(9, 1))),
       }) {
    auto resp = decode_stats(bad);
    CAF_REQUIRE(!resp.ok());
    check_code(resp.error(), errc::malformed);
  }
}

CAF_TEST(segment state response round trip covers all fields) {
  for (int32_t segment : {0, 217, 999}) {
    for (bool blocked : {true, false}) {
      for (bool manual : {true, false}) {
        segment_state in{segment, blocked, manual, "磁盘满 disk full"};
        auto resp = round_trip(client_response{62, in});
        CAF_REQUIRE(resp.ok());
        CAF_CHECK_EQUAL(resp->request_id, 62u);
        check_same(body_as<segment_state>(*resp), in);
      }
    }
  }
  // SegmentState is field 12 of Response: 62 ...
  CAF_CHECK_EQUAL(hex(codec::encode_response_frame(
                    {1, segment_state{5, true, true, "r"}})),
                  "0000000d" "0801" "6209" "0805" "1001" "1801" "220172");
}

CAF_TEST(segment states out of range are malformed responses) {
  // segment { segment: 1000 }
  auto bad = bytes({0x08, 0x01, 0x62, 0x03, 0x08, 0xe8, 0x07});
  auto resp = codec::decode_response(bad.data(), bad.size());
  CAF_REQUIRE(!resp);
  check_code(resp.error(), errc::malformed);
  // stats { segments { segment: -1 } }
  bad = bytes({0x08, 0x01, 0x5a, 0x0d, 0x1a, 0x0b, 0x08, 0xff, 0xff, 0xff,
               0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01});
  resp = codec::decode_response(bad.data(), bad.size());
  CAF_REQUIRE(!resp);
  check_code(resp.error(), errc::malformed);
}

CAF_TEST(segment reasons that are not utf8 are made printable) {
  auto resp = round_trip(
    client_response{63, segment_state{1, true, false, "pq: \xff\xfe down"}});
  CAF_REQUIRE(resp.ok());
  CAF_CHECK_EQUAL(body_as<segment_state>(*resp).reason, "pq: ?? down");
  node_stats st;
  st.segments.push_back(segment_state{2, true, false, "x\xc0y"});
  resp = round_trip(client_response{64, st});
  CAF_REQUIRE(resp.ok());
  CAF_CHECK_EQUAL(body_as<node_stats>(*resp).segments.at(0).reason, "x?y");
  // An operator's reason typed in a non-UTF-8 terminal still makes a
  // Request the node can read.
  auto req = round_trip(
    client_request{65, segment_request{3, true, "r\xe9paration"}});
  CAF_REQUIRE(req.ok());
  CAF_CHECK_EQUAL(body_as<segment_request>(*req).reason, "r?paration");
}

CAF_TEST(refunded envelope round trip) {
  auto env = full_envelope();
  env.status = envelope_status::refunded;
  env.remaining_fen = 0;
  env.refunded_fen = 4321;
  auto resp = round_trip(client_response{46, env});
  CAF_REQUIRE(resp.ok());
  CAF_CHECK_EQUAL(body_as<envelope>(*resp).refunded_fen, 4321);
  // refunded_fen is field 17 of Envelope: 88 01 (two-byte tag).
  envelope small;
  small.kind = envelope_kind::random;
  small.status = envelope_status::refunded;
  small.refunded_fen = 1;
  CAF_CHECK_EQUAL(hex(codec::encode_response_frame({1, small})),
                  "0000000b" "0801" "2207" "3001" "3805" "880101");
}

// -- Bad input -------------------------------------------------------------------

CAF_TEST(empty request is malformed) {
  uint64_t id = 99;
  auto req = decode("", id);
  CAF_REQUIRE(!req);
  CAF_CHECK_EQUAL(static_cast<int>(req.error().code),
                  static_cast<int>(errc::malformed));
  CAF_CHECK_EQUAL(id, 0u);
  CAF_CHECK_EQUAL(static_cast<int>(codec::decode_response("", 0).error().code),
                  static_cast<int>(errc::malformed));
}

CAF_TEST(request without body is malformed but keeps its id) {
  uint64_t id = 0;
  auto req = decode(bytes({0x08, 0x09}), id);  // request_id = 9, no body
  CAF_REQUIRE(!req);
  CAF_CHECK_EQUAL(static_cast<int>(req.error().code),
                  static_cast<int>(errc::malformed));
  CAF_CHECK_EQUAL(id, 9u);
  // A body field this build does not know (field 15) is no body either.
  req = decode(bytes({0x08, 0x0a, 0x7a, 0x00}), id);
  CAF_REQUIRE(!req);
  CAF_CHECK_EQUAL(static_cast<int>(req.error().code),
                  static_cast<int>(errc::malformed));
  CAF_CHECK_EQUAL(id, 10u);
}

CAF_TEST(garbage is malformed and the id is recovered when present) {
  uint64_t id = 0;
  auto req = decode(bytes({0xff, 0xff, 0xff, 0xff}), id);
  CAF_REQUIRE(!req);
  CAF_CHECK_EQUAL(req.error().message, "frame is not a hongbao.v1.Request");
  CAF_CHECK_EQUAL(id, 0u);
  // request_id = 300 (varint ac 02), then an unterminated tag.
  req = decode(bytes({0x08, 0xac, 0x02, 0xff, 0xff}), id);
  CAF_REQUIRE(!req);
  CAF_CHECK_EQUAL(static_cast<int>(req.error().code),
                  static_cast<int>(errc::malformed));
  CAF_CHECK_EQUAL(id, 300u);
  // An Auth whose token is not UTF-8: proto3 refuses it.
  req = decode(bytes({0x08, 0x03, 0x12, 0x03, 0x0a, 0x01, 0xff}), id);
  CAF_REQUIRE(!req);
  CAF_CHECK_EQUAL(static_cast<int>(req.error().code),
                  static_cast<int>(errc::malformed));
  CAF_CHECK_EQUAL(id, 3u);
}

CAF_TEST(unknown enum values are invalid arguments) {
  uint64_t id = 0;
  // request_id 5, create { kind: 7 }
  auto req = decode(bytes({0x08, 0x05, 0x1a, 0x02, 0x28, 0x07}), id);
  CAF_REQUIRE(!req);
  CAF_CHECK_EQUAL(static_cast<int>(req.error().code),
                  static_cast<int>(errc::invalid_argument));
  CAF_CHECK_EQUAL(id, 5u);
  // kind 257 must not wrap around to 1 (random) in the uint8_t enum.
  req = decode(bytes({0x08, 0x05, 0x1a, 0x03, 0x28, 0x81, 0x02}), id);
  CAF_REQUIRE(!req);
  CAF_CHECK_EQUAL(static_cast<int>(req.error().code),
                  static_cast<int>(errc::invalid_argument));
  // An unset kind (ENVELOPE_KIND_UNSPECIFIED) is refused too.
  req = decode(bytes({0x08, 0x05, 0x1a, 0x00}), id);
  CAF_REQUIRE(!req);
  CAF_CHECK_EQUAL(static_cast<int>(req.error().code),
                  static_cast<int>(errc::invalid_argument));
}

CAF_TEST(responses with unknown enum values) {
  // envelope { kind: 1, status: 9 }
  auto bad_status = bytes({0x08, 0x01, 0x22, 0x04, 0x30, 0x01, 0x38, 0x09});
  auto resp = codec::decode_response(bad_status.data(), bad_status.size());
  CAF_REQUIRE(!resp);
  CAF_CHECK_EQUAL(static_cast<int>(resp.error().code),
                  static_cast<int>(errc::malformed));
  // grab { outcome: 6 }
  auto bad_outcome = bytes({0x08, 0x01, 0x2a, 0x02, 0x08, 0x06});
  resp = codec::decode_response(bad_outcome.data(), bad_outcome.size());
  CAF_REQUIRE(!resp);
  // error { code: 99 }: a newer node's error code is still an error.
  auto new_code = bytes({0x08, 0x01, 0x12, 0x02, 0x08, 0x63});
  resp = codec::decode_response(new_code.data(), new_code.size());
  CAF_REQUIRE(resp.ok());
  CAF_CHECK_EQUAL(static_cast<int>(body_as<error_reply>(*resp).code), 99);
}

CAF_TEST(random bytes never crash the decoder) {
  std::mt19937_64 rng{20261126};
  CAF_MESSAGE("seed 20261126");
  int decoded = 0;
  for (int i = 0; i < 10000; ++i) {
    std::string data(rng() % 64, '\0');
    for (auto& c : data)
      c = static_cast<char>(rng());
    uint64_t id = 0;
    auto req = decode(data, id);
    if (req) {
      ++decoded;
      CAF_CHECK_EQUAL(req->request_id, id);
    } else {
      auto code = req.error().code;
      CAF_CHECK(code == errc::malformed || code == errc::invalid_argument);
    }
    auto resp = codec::decode_response(data.data(), data.size());
    if (!resp)
      CAF_CHECK_EQUAL(static_cast<int>(resp.error().code),
                      static_cast<int>(errc::malformed));
  }
  CAF_MESSAGE(decoded << " of 10000 random strings happened to be requests");
}

CAF_TEST(corrupted valid frames never crash the decoder) {
  std::mt19937_64 rng{7};
  envelope_detail detail{full_envelope(),
                         {open_record{"bob", 5000, 1, 1764115300000}}};
  auto frame = codec::encode_response_frame(client_response{1, detail});
  create_request create{"alice", "g", 100, 2, envelope_kind::random, "hi", "k"};
  auto req_frame = codec::encode_request_frame(client_request{2, create});
  for (int i = 0; i < 10000; ++i) {
    auto resp_payload = frame.substr(codec::frame_header_size);
    auto req_payload = req_frame.substr(codec::frame_header_size);
    for (auto* p : {&resp_payload, &req_payload}) {
      (*p)[rng() % p->size()] = static_cast<char>(rng());
      p->resize(rng() % (p->size() + 1));
    }
    auto resp = codec::decode_response(resp_payload.data(), resp_payload.size());
    CAF_CHECK(resp.ok() || resp.error().code == errc::malformed);
    uint64_t id = 0;
    auto req = decode(req_payload, id);
    CAF_CHECK(req.ok() || req.error().code == errc::malformed
              || req.error().code == errc::invalid_argument);
  }
}

CAF_TEST(corrupted new messages never crash the decoder) {
  std::mt19937_64 rng{16};
  reconcile_report report;
  report.since_ms = 1764115200000;
  report.envelopes_checked = 3;
  report.discrepancies.push_back(
    discrepancy{"missing_credit", 2026112600000042217, "bob", "d", true});
  history_page page{{history_item{1, 2, 3, "g", "alice"}}, "cur"};
  std::vector<std::string> responses{
    codec::encode_response_frame(client_response{1, report}),
    codec::encode_response_frame(client_response{2, page}),
    codec::encode_response_frame(client_response{3, balance_info{"bob", 9}}),
    codec::encode_response_frame(client_response{
      8, node_stats{"n1",
                    {metric{"opens.committed", 42}, metric{"refunds", 1}},
                    {segment_state{217, true, true, "maint"}}, {}}}),
    codec::encode_response_frame(
      client_response{9, segment_state{999, true, false, "probe"}}),
    codec::encode_response_frame(client_response{
      12, node_stats{"a1", {}, {}, full_cluster()}}),
    codec::encode_response_frame(client_response{
      13, error_reply{errc::not_owner, "moved", "10.0.0.2:7711"}})};
  std::vector<std::string> requests{
    codec::encode_request_frame(
      client_request{4, history_query{"bob", history_kind::sent, 7, "c"}}),
    codec::encode_request_frame(client_request{5, balance_request{"bob"}}),
    codec::encode_request_frame(client_request{6, reconcile_request{99}}),
    codec::encode_request_frame(
      client_request{7, pay_request{1, "t", true}}),
    codec::encode_request_frame(client_request{10, stats_request{}, 5000}),
    codec::encode_request_frame(
      client_request{11, segment_request{217, true, "maint"}, 70000})};
  for (int i = 0; i < 5000; ++i) {
    for (auto& frame : responses) {
      auto payload = frame.substr(codec::frame_header_size);
      payload[rng() % payload.size()] = static_cast<char>(rng());
      payload.resize(rng() % (payload.size() + 1));
      auto resp = codec::decode_response(payload.data(), payload.size());
      CAF_CHECK(resp.ok() || resp.error().code == errc::malformed);
      if (resp) {
        if (auto* g = std::get_if<segment_state>(&resp->body))
          CAF_CHECK(g->segment >= 0 && g->segment <= 999);
        if (auto* st = std::get_if<node_stats>(&resp->body)) {
          for (auto& g : st->segments)
            CAF_CHECK(g.segment >= 0 && g.segment <= 999);
          for (auto& set : st->cluster.sets) {
            CAF_CHECK(set.owners.size() <= 1000u);
            for (auto& row : set.owners)
              CAF_CHECK(row.segment >= 0 && row.segment <= 999);
            for (auto& g : set.blocked)
              CAF_CHECK(g.segment >= 0 && g.segment <= 999);
          }
        }
      }
    }
    for (auto& frame : requests) {
      auto payload = frame.substr(codec::frame_header_size);
      payload[rng() % payload.size()] = static_cast<char>(rng());
      payload.resize(rng() % (payload.size() + 1));
      uint64_t id = 0;
      auto req = decode(payload, id);
      CAF_CHECK(req.ok() || req.error().code == errc::malformed
                || req.error().code == errc::invalid_argument);
      if (req) {
        if (auto* q = std::get_if<history_query>(&req->body)) {
          CAF_CHECK(q->limit >= 1 && q->limit <= codec::history_limit_max);
          CAF_CHECK(q->kind == history_kind::sent
                    || q->kind == history_kind::received);
        }
        if (auto* r = std::get_if<reconcile_request>(&req->body))
          CAF_CHECK(r->since_ms >= 0);
        if (auto* g = std::get_if<segment_request>(&req->body))
          CAF_CHECK(g->segment >= 0 && g->segment <= 999);
      }
    }
  }
}
