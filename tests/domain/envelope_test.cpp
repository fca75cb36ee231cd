#define CAF_SUITE domain.envelope

#include "caf/test/unit_test.hpp"

#include "domain/envelope.hpp"
#include "domain/limits.hpp"
#include "domain/money.hpp"

using namespace hb;

CAF_TEST(the state machine allows only the designed transitions) {
  using s = envelope_status;
  CAF_CHECK(transition_allowed(s::created, s::paid));
  CAF_CHECK(transition_allowed(s::paid, s::exhausted));
  CAF_CHECK(transition_allowed(s::paid, s::expired));
  CAF_CHECK(transition_allowed(s::expired, s::refunded));
  CAF_CHECK(!transition_allowed(s::created, s::exhausted));
  CAF_CHECK(!transition_allowed(s::exhausted, s::refunded));
  CAF_CHECK(!transition_allowed(s::refunded, s::paid));
  CAF_CHECK(!transition_allowed(s::paid, s::created));
}

CAF_TEST(limits reject bad creates with clear errors) {
  envelope_limits lim;
  create_request ok;
  ok.sender = "s";
  ok.group = "g";
  ok.idempotency_key = "k";
  ok.total_fen = 1000;
  ok.count = 10;
  CAF_CHECK_EQUAL(validate(ok, lim).code, errc::none);
  auto bad = ok;
  bad.count = 101;
  CAF_CHECK_EQUAL(validate(bad, lim).code, errc::limit_exceeded);
  bad = ok;
  bad.total_fen = 9;  // below 1 fen per share
  CAF_CHECK_EQUAL(validate(bad, lim).code, errc::limit_exceeded);
  bad = ok;
  bad.total_fen = 200001;  // above 200 yuan per share
  CAF_CHECK_EQUAL(validate(bad, lim).code, errc::limit_exceeded);
  bad = ok;
  bad.count = 0;
  CAF_CHECK_EQUAL(validate(bad, lim).code, errc::invalid_argument);
  bad = ok;
  bad.sender.clear();
  CAF_CHECK_EQUAL(validate(bad, lim).code, errc::invalid_argument);
  bad = ok;
  bad.kind = static_cast<envelope_kind>(9);
  CAF_CHECK_EQUAL(validate(bad, lim).code, errc::invalid_argument);
  bad = ok;
  bad.greeting = std::string(1000, 'x');
  CAF_CHECK_EQUAL(validate(bad, lim).code, errc::invalid_argument);
  lim.count_max = 10000;
  bad = ok;
  bad.count = 10000;
  bad.total_fen = 1000000;
  CAF_CHECK_EQUAL(validate(bad, lim).code, errc::none);
}

CAF_TEST(the invariant check finds broken envelopes) {
  envelope env;
  env.total_fen = 100;
  env.count = 2;
  env.remaining_fen = 40;
  env.remaining_count = 1;
  env.status = envelope_status::paid;
  std::vector<open_record> opens{{"a", 60, 1, 0}};
  CAF_CHECK_EQUAL(check_invariants(env, opens), "");
  opens[0].amount_fen = 61;
  CAF_CHECK_NOT_EQUAL(check_invariants(env, opens), "");
  opens[0].amount_fen = 60;
  opens.push_back({"a", 40, 2, 0});
  env.remaining_fen = 0;
  env.remaining_count = 0;
  CAF_CHECK_NOT_EQUAL(check_invariants(env, opens), "");  // user twice
  opens[1].user = "b";
  CAF_CHECK_EQUAL(check_invariants(env, opens), "");
  auto best = best_luck(opens);
  CAF_REQUIRE(best != nullptr);
  CAF_CHECK_EQUAL(best->user, "a");
}

CAF_TEST(a batch needs distinct users and consecutive ascending seqs) {
  open_batch b;
  b.status = envelope_status::paid;
  b.opens = {{"a", 10, 4, 0}, {"b", 10, 5, 0}, {"c", 10, 6, 0}};
  CAF_CHECK_EQUAL(batch_problem(b), "");
  b.opens[2].seq = 7;  // a gap
  CAF_CHECK_NOT_EQUAL(batch_problem(b), "");
  b.opens[2].seq = 5;  // a repeat
  CAF_CHECK_NOT_EQUAL(batch_problem(b), "");
  std::swap(b.opens[1].seq, b.opens[2].seq);  // 4, 6, 5: out of order
  b.opens[1].seq = 6;
  b.opens[2].seq = 5;
  CAF_CHECK_NOT_EQUAL(batch_problem(b), "");
  b.opens[1].seq = 5;
  b.opens[2].seq = 6;
  b.opens[2].user = "a";
  CAF_CHECK_NOT_EQUAL(batch_problem(b), "");  // a user twice
  b.opens[2].user = "c";
  b.status = envelope_status::created;
  CAF_CHECK_NOT_EQUAL(batch_problem(b), "");
}

CAF_TEST(money renders as yuan) {
  CAF_CHECK_EQUAL(to_yuan_string(1234), "12.34");
  CAF_CHECK_EQUAL(to_yuan_string(5), "0.05");
  CAF_CHECK_EQUAL(to_yuan_string(-100), "-1.00");
  CAF_CHECK_EQUAL(money{5} + money{7}, money{12});
}
