#include "config/node_config.hpp"

#include <fstream>
#include <sstream>

#include <toml++/toml.h>

#include "domain/envelope_id.hpp"

namespace hb {

namespace {

// Segments are written as a list of integers or "a-b" ranges.
bool read_id_segments(const toml::table& tbl, std::vector<int32_t>& out,
                   std::string& err) {
  auto arr = tbl["ids"]["segments"].as_array();
  if (arr == nullptr)
    return true;
  out.clear();
  for (auto& el : *arr) {
    if (auto i = el.value<int64_t>()) {
      if (*i < 0 || *i >= segment_count) {
        err = "ids.segments: segment out of range [0, 999]";
        return false;
      }
      out.push_back(static_cast<int32_t>(*i));
    } else if (auto s = el.value<std::string>()) {
      int a = 0, b = 0;
      char dash = 0;
      std::istringstream in{*s};
      if (!(in >> a >> dash >> b) || dash != '-' || a < 0 || b < a
          || b >= segment_count) {
        err = "ids.segments: \"" + *s + "\" is not a range like \"0-15\"";
        return false;
      }
      for (int k = a; k <= b; ++k)
        out.push_back(k);
    } else {
      err = "ids.segments must hold integers or \"a-b\" ranges";
      return false;
    }
  }
  return true;
}

// Reads the keys of one section, each range-checked; after the first
// problem it reads nothing more, so the message names the first wrong key.
class section_reader {
public:
  section_reader(const toml::table& tbl, const char* section, std::string& err)
    : tbl_(tbl), section_(section), err_(err) {
  }

  template <class T>
  section_reader& num(const char* key, T& out, int64_t lo, int64_t hi) {
    if (!err_.empty())
      return *this;
    auto node = tbl_[section_][key];
    if (!node)
      return *this;
    auto v = node.template value<int64_t>();
    if (!v || *v < lo || *v > hi) {
      err_ = std::string{section_} + "." + key + " must be an integer in ["
             + std::to_string(lo) + ", " + std::to_string(hi) + "]";
      return *this;
    }
    out = static_cast<T>(*v);
    return *this;
  }

  section_reader& str(const char* key, std::string& out) {
    if (!err_.empty())
      return *this;
    auto node = tbl_[section_][key];
    if (!node)
      return *this;
    auto v = node.template value<std::string>();
    if (!v) {
      err_ = std::string{section_} + "." + key + " must be a string";
      return *this;
    }
    out = *v;
    return *this;
  }

  bool ok() const {
    return err_.empty();
  }

private:
  const toml::table& tbl_;
  const char* section_;
  std::string& err_;
};

constexpr int64_t day_ms = int64_t{24} * 3600 * 1000;

bool read_node(const toml::table& tbl, node_basics_config& cfg,
               std::string& err) {
  return section_reader{tbl, "node", err}
    .str("name", cfg.name)
    .str("zone", cfg.zone)
    .num("idle_poll_us", cfg.idle_poll_us, 0, 1000000)
    .ok();
}

bool read_gateway(const toml::table& tbl, gateway_config& cfg,
                  std::string& err) {
  return section_reader{tbl, "gateway", err}
    .str("host", cfg.host)
    .num("port", cfg.port, 0, 65535)
    .str("auth_token", cfg.auth_token)
    .num("frame_size_max", cfg.frame_size_max, 64, 16 << 20)
    .num("connection_inflight_max", cfg.connection_inflight_max, 1, 1 << 20)
    .num("node_inflight_max", cfg.node_inflight_max, 1, 1 << 24)
    .ok();
}

bool read_database(const toml::table& tbl, database_config& cfg,
                   std::string& err) {
  return section_reader{tbl, "database", err}
    .str("url", cfg.store.database_url)
    .num("pool_size", cfg.store.pool_size, 1, 256)
    .num("commits_in_flight", cfg.commits.inflight_max, 1, 256)
    .num("batches_in_flight", cfg.batches.inflight_max, 1, 256)
    .num("batch_max", cfg.batches.batch_max, 1, 1024)
    .ok();
}

bool read_limits(const toml::table& tbl, envelope_limits& lim,
                 std::string& err) {
  int64_t expiry_s = lim.expiry_ms / 1000;
  bool ok = section_reader{tbl, "limits", err}
              .num("share_min_fen", lim.share_min_fen, 1, int64_t{1} << 40)
              .num("share_max_fen", lim.share_max_fen, 1, int64_t{1} << 40)
              .num("count_max", lim.count_max, 1, 1000000)
              .num("expiry_s", expiry_s, 1, int64_t{365} * 24 * 3600)
              .ok();
  lim.expiry_ms = expiry_s * 1000;
  return ok;
}

// The [envelope] section holds the envelope actor's keys and the registry's.
bool read_envelope(const toml::table& tbl, envelope_config& env,
                   registry_config& reg, std::string& err) {
  return section_reader{tbl, "envelope", err}
    .num("queue_max", env.queue_max, 1, 1 << 24)
    .num("batch_max", env.batch_max, 1, 1 << 20)
    .num("idle_ms", env.idle_ms, 10, day_ms)
    .num("live_max", reg.live_max, 1, 1 << 24)
    .num("keep_live", reg.keep_live, 0, 1 << 24)
    .num("cap_quiet_ms", reg.cap_quiet_ms, 1, day_ms)
    .num("cap_check_ms", reg.cap_check_ms, 10, 600000)
    .ok();
}

bool read_relay(const toml::table& tbl, relay_config& cfg, std::string& err) {
  return section_reader{tbl, "relay", err}
    .num("batch_max", cfg.batch_max, 1, 100000)
    .num("poll_ms", cfg.poll_ms, 1, 600000)
    .num("yield_ms", cfg.yield_ms, 1, 60000)
    .num("defer_max_ms", cfg.defer_max_ms, 0, 600000)
    .ok();
}

bool read_expiry(const toml::table& tbl, expiry_config& cfg,
                 std::string& err) {
  return section_reader{tbl, "expiry", err}
    .num("sweep_interval_ms", cfg.interval_ms, 10, 3600000)
    .num("sweep_batch_max", cfg.batch_max, 1, 100000)
    .ok();
}

bool read_reconcile(const toml::table& tbl, reconcile_config& cfg,
                    std::string& err) {
  return section_reader{tbl, "reconcile", err}
    .num("interval_s", cfg.interval_s, 0, 86400 * 7)
    .num("window_s", cfg.window_s, 1, 86400 * 400)
    .ok();
}

bool read_partitions(const toml::table& tbl, partitions_config& cfg,
                     std::string& err) {
  return section_reader{tbl, "partitions", err}
    .num("hot_days", cfg.hot_days, 1, 3650)
    .num("ahead_days", cfg.ahead_days, 1, 365)
    .num("interval_s", cfg.interval_s, 1, 86400 * 7)
    .ok();
}

bool read_segments_health(const toml::table& tbl, segments_config& cfg,
                          std::string& err) {
  return section_reader{tbl, "segments", err}
    .num("window_ms", cfg.window_ms, 100, 3600000)
    .num("fault_threshold", cfg.fault_threshold, 1, 1000000)
    .num("probe_interval_ms", cfg.probe_interval_ms, 10, 3600000)
    .ok();
}

bool read_supervisor(const toml::table& tbl, supervisor_config& cfg,
                     std::string& err) {
  uint32_t window_s = cfg.window_ms / 1000;
  bool ok = section_reader{tbl, "supervisor", err}
              .num("restarts_max", cfg.restarts_max, 0, 1000)
              .num("window_s", window_s, 1, 86400)
              .ok();
  cfg.window_ms = window_s * 1000;
  return ok;
}

bool read_ids(const toml::table& tbl, ids_config& cfg, std::string& err) {
  return read_id_segments(tbl, cfg.segments, err)
         && section_reader{tbl, "ids", err}
              .num("lease_block", cfg.lease_block, 1, 1000000)
              .ok();
}

bool read_log(const toml::table& tbl, log_config& cfg, std::string& err) {
  return section_reader{tbl, "log", err}.str("level", cfg.level).ok();
}

// What no single key shows: required keys and keys that bound each other.
failure check_node_config(node_config& cfg) {
  if (cfg.gateway.auth_token.empty())
    return {errc::invalid_argument,
            "gateway.auth_token is required (clients authenticate with it)"};
  if (cfg.database.store.database_url.empty())
    return {errc::invalid_argument,
            "database.url is required (a libpq connection string)"};
  if (cfg.limits.share_min_fen > cfg.limits.share_max_fen)
    return {errc::invalid_argument,
            "limits.share_min_fen must not exceed limits.share_max_fen"};
  if (cfg.ids.segments.empty())
    return {errc::invalid_argument, "ids.segments must not be empty"};
  cfg.registry.keep_live = keep_live_of(cfg.registry);
  if (cfg.registry.keep_live > cfg.registry.live_max)
    return {errc::invalid_argument,
            "envelope.keep_live must not exceed envelope.live_max"};
  return {errc::none, {}};
}

} // namespace

outcome<node_config> parse_node_config(const std::string& text) {
  toml::table tbl;
  try {
    tbl = toml::parse(text);
  } catch (const toml::parse_error& e) {
    std::ostringstream os;
    os << "config is not valid TOML: " << e.description() << " at line "
       << e.source().begin.line;
    return failure{errc::invalid_argument, os.str()};
  }
  node_config cfg;
  std::string err;
  bool ok = read_node(tbl, cfg.node, err)
            && read_gateway(tbl, cfg.gateway, err)
            && read_database(tbl, cfg.database, err)
            && read_limits(tbl, cfg.limits, err)
            && read_envelope(tbl, cfg.envelope, cfg.registry, err)
            && read_relay(tbl, cfg.relay, err)
            && read_expiry(tbl, cfg.expiry, err)
            && read_reconcile(tbl, cfg.reconcile, err)
            && read_partitions(tbl, cfg.partitions, err)
            && read_segments_health(tbl, cfg.segments, err)
            && read_supervisor(tbl, cfg.supervisor, err)
            && read_ids(tbl, cfg.ids, err)
            && read_log(tbl, cfg.log, err);
  if (!ok)
    return failure{errc::invalid_argument, err};
  auto bad = check_node_config(cfg);
  if (bad.code != errc::none)
    return bad;
  return cfg;
}

outcome<node_config> load_node_config(const std::string& path) {
  std::ifstream in{path};
  if (!in)
    return failure{errc::invalid_argument,
                   "cannot read config file " + path};
  std::ostringstream buf;
  buf << in.rdbuf();
  auto res = parse_node_config(buf.str());
  if (!res)
    return failure{res.error().code, path + ": " + res.error().message};
  return res;
}

} // namespace hb
