#define CAF_SUITE domain.limits

#include "caf/test/unit_test.hpp"

#include <string>

#include "domain/limits.hpp"

using namespace hb;

namespace {

// A request that passes every rule under the default limits; each test
// changes one field so that a refusal can only come from that field's rule.
create_request valid_request() {
  create_request req;
  req.sender = "alice";
  req.group = "g1";
  req.total_fen = 1000;
  req.count = 10;
  req.kind = envelope_kind::random;
  req.greeting = "恭喜发财";
  req.idempotency_key = "k1";
  return req;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

} // namespace

CAF_TEST(a request within every limit is accepted with no message) {
  envelope_limits lim;
  auto f = validate(valid_request(), lim);
  CAF_CHECK_EQUAL(f.code, errc::none);
  CAF_CHECK(f.message.empty());
  auto eq = valid_request();
  eq.kind = envelope_kind::equal;
  CAF_CHECK_EQUAL(validate(eq, lim).code, errc::none);
  // The greeting is optional, unlike sender, group and key.
  auto quiet = valid_request();
  quiet.greeting.clear();
  CAF_CHECK_EQUAL(validate(quiet, lim).code, errc::none);
}

CAF_TEST(sender group and idempotency key must not be empty) {
  envelope_limits lim;
  auto req = valid_request();
  req.sender.clear();
  auto f = validate(req, lim);
  CAF_CHECK_EQUAL(f.code, errc::invalid_argument);
  CAF_CHECK_EQUAL(f.message, "sender must not be empty");
  req = valid_request();
  req.group.clear();
  f = validate(req, lim);
  CAF_CHECK_EQUAL(f.code, errc::invalid_argument);
  CAF_CHECK_EQUAL(f.message, "group must not be empty");
  req = valid_request();
  req.idempotency_key.clear();
  f = validate(req, lim);
  CAF_CHECK_EQUAL(f.code, errc::invalid_argument);
  CAF_CHECK_EQUAL(f.message, "idempotency key must not be empty");
}

CAF_TEST(every text field may hold exactly text_size_max bytes and no more) {
  envelope_limits lim;
  lim.text_size_max = 8;
  std::string at_limit(8, 'x');
  std::string over_limit(9, 'x');
  for (auto field : {&create_request::sender, &create_request::group,
                     &create_request::greeting,
                     &create_request::idempotency_key}) {
    auto req = valid_request();
    req.greeting = "hi";
    req.*field = at_limit;
    CAF_CHECK_EQUAL(validate(req, lim).code, errc::none);
    req.*field = over_limit;
    auto f = validate(req, lim);
    CAF_CHECK_EQUAL(f.code, errc::invalid_argument);
    CAF_CHECK_EQUAL(f.message, "text field longer than 8 bytes");
  }
}

CAF_TEST(the text limit counts bytes and not characters) {
  envelope_limits lim;
  lim.text_size_max = 6;
  auto req = valid_request();
  req.greeting = "红包"; // two characters, six bytes
  CAF_CHECK_EQUAL(validate(req, lim).code, errc::none);
  req.greeting = "红包!"; // three characters, seven bytes
  CAF_CHECK_EQUAL(validate(req, lim).code, errc::invalid_argument);
}

CAF_TEST(text fields with a NUL byte or broken UTF-8 are refused) {
  envelope_limits lim;
  const std::string bad[] = {
    std::string("a\0b", 3), // NUL, which PostgreSQL text cannot hold
    "\xff",                 // never a UTF-8 byte
    "\xe7\xba",             // a three-byte sequence cut short
    "\x80",                 // a continuation byte with no lead
    "\xc3\x28",             // a lead byte followed by a non-continuation
  };
  for (auto field : {&create_request::sender, &create_request::group,
                     &create_request::greeting,
                     &create_request::idempotency_key}) {
    for (auto& text : bad) {
      auto req = valid_request();
      req.*field = text;
      auto f = validate(req, lim);
      CAF_CHECK_EQUAL(f.code, errc::invalid_argument);
      CAF_CHECK_EQUAL(f.message,
                      "text fields must be valid UTF-8 without NUL bytes");
    }
  }
}

CAF_TEST(a kind outside random and equal is refused) {
  envelope_limits lim;
  auto req = valid_request();
  req.kind = static_cast<envelope_kind>(0);
  auto f = validate(req, lim);
  CAF_CHECK_EQUAL(f.code, errc::invalid_argument);
  CAF_CHECK_EQUAL(f.message, "kind must be random or equal");
  req.kind = static_cast<envelope_kind>(3);
  CAF_CHECK_EQUAL(validate(req, lim).code, errc::invalid_argument);
}

CAF_TEST(count runs from one to count_max inclusive) {
  envelope_limits lim;
  lim.count_max = 5;
  auto req = valid_request();
  req.total_fen = 100;
  req.count = 0;
  auto f = validate(req, lim);
  CAF_CHECK_EQUAL(f.code, errc::invalid_argument);
  CAF_CHECK_EQUAL(f.message, "count must be at least 1");
  req.count = -1;
  CAF_CHECK_EQUAL(validate(req, lim).code, errc::invalid_argument);
  req.count = 1;
  CAF_CHECK_EQUAL(validate(req, lim).code, errc::none);
  req.count = 5;
  CAF_CHECK_EQUAL(validate(req, lim).code, errc::none);
  // Too many shares is a limit and not a malformed field.
  req.count = 6;
  f = validate(req, lim);
  CAF_CHECK_EQUAL(f.code, errc::limit_exceeded);
  CAF_CHECK_EQUAL(f.message, "count 6 exceeds the limit of 5");
}

CAF_TEST(the total must be positive) {
  envelope_limits lim;
  lim.share_min_fen = 0; // so that only the positivity rule can refuse
  auto req = valid_request();
  req.total_fen = 0;
  auto f = validate(req, lim);
  CAF_CHECK_EQUAL(f.code, errc::invalid_argument);
  CAF_CHECK_EQUAL(f.message, "total_fen must be positive");
  req.total_fen = -100;
  CAF_CHECK_EQUAL(validate(req, lim).code, errc::invalid_argument);
}

CAF_TEST(the total covers at least share_min_fen per share) {
  envelope_limits lim;
  lim.share_min_fen = 10;
  auto req = valid_request();
  req.count = 4;
  req.total_fen = 40;
  CAF_CHECK_EQUAL(validate(req, lim).code, errc::none);
  req.total_fen = 39;
  auto f = validate(req, lim);
  CAF_CHECK_EQUAL(f.code, errc::limit_exceeded);
  CAF_CHECK_EQUAL(f.message, "total 39 fen is below 10 fen per share");
}

CAF_TEST(the total holds at most share_max_fen per share) {
  envelope_limits lim;
  lim.share_max_fen = 20000;
  auto req = valid_request();
  req.count = 3;
  req.total_fen = 60000;
  CAF_CHECK_EQUAL(validate(req, lim).code, errc::none);
  req.total_fen = 60001;
  auto f = validate(req, lim);
  CAF_CHECK_EQUAL(f.code, errc::limit_exceeded);
  CAF_CHECK_EQUAL(f.message, "total 60001 fen exceeds 20000 fen per share");
}

CAF_TEST(the default limits allow one to a hundred shares of up to 200 yuan) {
  envelope_limits lim;
  auto req = valid_request();
  req.count = 100;
  req.total_fen = 100 * 20000;
  CAF_CHECK_EQUAL(validate(req, lim).code, errc::none);
  req.total_fen += 1;
  CAF_CHECK_EQUAL(validate(req, lim).code, errc::limit_exceeded);
  req.count = 101;
  CAF_CHECK_EQUAL(validate(req, lim).code, errc::limit_exceeded);
  req.count = 1;
  req.total_fen = 1;
  CAF_CHECK_EQUAL(validate(req, lim).code, errc::none);
}

CAF_TEST(a text id must be non empty within its size and valid UTF-8) {
  auto f = validate_text_id("bob", "user id", 3);
  CAF_CHECK_EQUAL(f.code, errc::none);
  CAF_CHECK(f.message.empty());
  f = validate_text_id("", "user id", 3);
  CAF_CHECK_EQUAL(f.code, errc::invalid_argument);
  CAF_CHECK_EQUAL(f.message, "user id must not be empty");
  f = validate_text_id("bobs", "user id", 3);
  CAF_CHECK_EQUAL(f.code, errc::invalid_argument);
  CAF_CHECK_EQUAL(f.message, "user id longer than 3 bytes");
  f = validate_text_id(std::string("b\0b", 3), "payment txn", 3);
  CAF_CHECK_EQUAL(f.code, errc::invalid_argument);
  CAF_CHECK_EQUAL(f.message,
                  "payment txn must be valid UTF-8 without NUL bytes");
  CAF_CHECK(contains(validate_text_id("\xff", "payment txn", 3).message,
                     "payment txn"));
}

CAF_TEST(valid UTF-8 of one to four bytes per character is accepted) {
  CAF_CHECK(valid_utf8_text(""));
  CAF_CHECK(valid_utf8_text("abc"));
  CAF_CHECK(valid_utf8_text("\xc3\xa9"));         // é
  CAF_CHECK(valid_utf8_text("\xe7\xba\xa2"));     // 红
  CAF_CHECK(valid_utf8_text("\xf0\x9f\xa7\xa7")); // 🧧
  CAF_CHECK(!valid_utf8_text("\xf0\x9f\xa7"));    // four-byte lead, cut short
  CAF_CHECK(!valid_utf8_text("\xf8\x88\x80\x80\x80")); // five-byte form
}
