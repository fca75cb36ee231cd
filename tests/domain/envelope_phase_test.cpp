#define CAF_SUITE domain.envelope_phase

#include "caf/test/unit_test.hpp"

#include <vector>

#include "domain/envelope_phase.hpp"

using namespace hb;

namespace {

using p = envelope_phase;

const std::vector<envelope_phase> all_phases{
  p::loading, p::failed,    p::archived,  p::unpaid,
  p::paying,  p::paid,      p::writing,   p::refunding,
  p::exhausted, p::expired, p::refunded,  p::stopped};

} // namespace

CAF_TEST(the happy path of an envelope is allowed step by step) {
  std::vector<envelope_phase> path{p::loading, p::unpaid,    p::paying,
                                   p::paid,    p::writing,   p::paid,
                                   p::writing, p::exhausted, p::stopped};
  for (size_t i = 1; i < path.size(); ++i)
    CAF_CHECK(phase_transition_allowed(path[i - 1], path[i]));
  std::vector<envelope_phase> expiry{p::loading, p::paid, p::refunding,
                                     p::refunded, p::stopped};
  for (size_t i = 1; i < expiry.size(); ++i)
    CAF_CHECK(phase_transition_allowed(expiry[i - 1], expiry[i]));
}

CAF_TEST(writes exclude each other and need the right status) {
  // Only a PAID envelope without a write in flight starts a batch or a
  // refund; only an unpaid one starts a payment.
  for (auto from : all_phases) {
    CAF_CHECK_EQUAL(phase_transition_allowed(from, p::writing),
                    from == p::paid);
    CAF_CHECK_EQUAL(phase_transition_allowed(from, p::refunding),
                    from == p::paid);
    CAF_CHECK_EQUAL(phase_transition_allowed(from, p::paying),
                    from == p::unpaid);
  }
  CAF_CHECK(!phase_transition_allowed(p::writing, p::refunded));
  // A refund the database refused as not yet expired (its clock) leaves
  // the envelope paid; a refund never leads anywhere else but refunded.
  CAF_CHECK(phase_transition_allowed(p::refunding, p::paid));
  CAF_CHECK(!phase_transition_allowed(p::refunding, p::writing));
  CAF_CHECK(!phase_transition_allowed(p::refunding, p::exhausted));
  CAF_CHECK(write_in_flight(p::paying));
  CAF_CHECK(write_in_flight(p::writing));
  CAF_CHECK(write_in_flight(p::refunding));
  CAF_CHECK(!write_in_flight(p::paid));
  CAF_CHECK(!write_in_flight(p::loading));
}

CAF_TEST(read-only and final phases only stop) {
  for (auto from : {p::failed, p::archived, p::exhausted, p::expired,
                    p::refunded})
    for (auto to : all_phases)
      CAF_CHECK_EQUAL(phase_transition_allowed(from, to), to == p::stopped);
  for (auto to : all_phases)
    CAF_CHECK(!phase_transition_allowed(p::stopped, to));
  // A loading actor has nothing to finish: it cannot stop before it knows
  // the envelope, and it never starts with a write in flight.
  CAF_CHECK(!phase_transition_allowed(p::loading, p::stopped));
  CAF_CHECK(!phase_transition_allowed(p::loading, p::writing));
}

CAF_TEST(every phase but loading can stop) {
  for (auto from : all_phases)
    CAF_CHECK_EQUAL(phase_transition_allowed(from, p::stopped),
                    from != p::loading && from != p::stopped);
}

CAF_TEST(a loaded snapshot starts in the phase of its status) {
  envelope_snapshot snap;
  snap.env.status = envelope_status::created;
  CAF_CHECK_EQUAL(loaded_phase(snap), p::unpaid);
  snap.env.status = envelope_status::paid;
  CAF_CHECK_EQUAL(loaded_phase(snap), p::paid);
  snap.env.status = envelope_status::exhausted;
  CAF_CHECK_EQUAL(loaded_phase(snap), p::exhausted);
  snap.env.status = envelope_status::refunded;
  CAF_CHECK_EQUAL(loaded_phase(snap), p::refunded);
  snap.archived = true;
  CAF_CHECK_EQUAL(loaded_phase(snap), p::archived);
  CAF_CHECK_EQUAL(resting_phase(envelope_status::expired), p::expired);
  for (auto status : {envelope_status::created, envelope_status::paid,
                      envelope_status::exhausted, envelope_status::expired,
                      envelope_status::refunded})
    CAF_CHECK(phase_transition_allowed(p::loading, resting_phase(status)));
}

CAF_TEST(phases have names) {
  CAF_CHECK_EQUAL(std::string{to_string(p::writing)}, "writing");
  CAF_CHECK_EQUAL(std::string{to_string(p::stopped)}, "stopped");
}
