#include "bench/targets.hpp"

namespace hb::bench {

outcome<std::unique_ptr<target>> make_target(const target_options& opts) {
  if (opts.name == "hongbao")
    return make_hongbao_target(opts);
  if (opts.name == "pg-lock" || opts.name == "pg-update")
    return make_pg_target(opts);
  if (opts.name == "redis-lua")
    return make_redis_target(opts);
  return failure{errc::invalid_argument, "unknown target " + opts.name};
}

} // namespace hb::bench
