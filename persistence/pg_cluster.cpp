// pg_store: the SET's membership: node leases and segment owners, on the
// database clock.
#include "persistence/pg_store.hpp"

#include "persistence/pg_detail.hpp"

namespace hb::persistence {

using namespace detail;

outcome<std::string> pg_store::cluster_set() {
  return failure{errc::internal, "cluster_set: not implemented yet"};
}

outcome<set_view> pg_store::join(const join_request&) {
  return failure{errc::internal, "join: not implemented yet"};
}

outcome<set_view> pg_store::renew(const renew_request&) {
  return failure{errc::internal, "renew: not implemented yet"};
}

outcome<std::vector<segment_owner>> pg_store::take(const take_request&) {
  return failure{errc::internal, "take: not implemented yet"};
}

} // namespace hb::persistence
