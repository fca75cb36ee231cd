#define CAF_SUITE runtime.errors

#include "caf/test/unit_test.hpp"

#include "caf/actor_system.hpp"
#include "caf/actor_system_config.hpp"
#include "caf/sec.hpp"

#include "runtime/errors.hpp"
#include "runtime/messages.hpp"

using namespace hb;

CAF_TEST(an error carries its code and message to the client) {
  auto f = to_failure(make_error(errc::busy, "queue full"));
  CAF_CHECK_EQUAL(f.code, errc::busy);
  CAF_CHECK_EQUAL(f.message, "queue full");
  CAF_CHECK_EQUAL(f.hint, "");
  // Without a message the client reads the code's name.
  f = to_failure(make_error(errc::exhausted));
  CAF_CHECK_EQUAL(f.code, errc::exhausted);
  CAF_CHECK_EQUAL(f.message, "exhausted");
}

CAF_TEST(a not owner error carries the owner hint) {
  auto err = make_error(errc::not_owner, "segment 7 is owned by b1",
                        "10.0.0.2:7711");
  auto f = to_failure(err);
  CAF_CHECK_EQUAL(f.code, errc::not_owner);
  CAF_CHECK_EQUAL(f.message, "segment 7 is owned by b1");
  CAF_CHECK_EQUAL(f.hint, "10.0.0.2:7711");
  // An empty hint makes the same error as the two-argument form.
  CAF_CHECK_EQUAL(make_error(errc::not_owner, "m", ""),
                  make_error(errc::not_owner, "m"));
  CAF_CHECK_EQUAL(to_failure(make_error(errc::not_owner, "m", "")).hint, "");
}

CAF_TEST(a failure goes through a caf error and back unchanged) {
  for (auto in : {failure{errc::not_owner, "moved", "h:1"},
                  failure{errc::unavailable, "db down"},
                  failure{errc::invalid_argument, "bad", ""}}) {
    auto out = to_failure(make_error(in));
    CAF_CHECK_EQUAL(out.code, in.code);
    CAF_CHECK_EQUAL(out.message, in.message);
    CAF_CHECK_EQUAL(out.hint, in.hint);
  }
}

CAF_TEST(errors of CAF itself become client errors) {
  auto f = to_failure(caf::make_error(caf::sec::request_timeout));
  CAF_CHECK_EQUAL(f.code, errc::unavailable);
  CAF_CHECK(f.hint.empty());
  f = to_failure(caf::make_error(caf::sec::unexpected_message));
  CAF_CHECK_EQUAL(f.code, errc::internal);
}

CAF_TEST(rendered errors show the message and the owner hint) {
  caf::actor_system_config cfg;
  add_hongbao_types(cfg);
  caf::actor_system sys{cfg};
  CAF_CHECK_EQUAL(sys.render(make_error(errc::busy, "queue full")),
                  "hongbao: busy (queue full)");
  CAF_CHECK_EQUAL(sys.render(make_error(errc::not_owner, "moved", "h:7711")),
                  "hongbao: not_owner (moved; owner at h:7711)");
}
