#include "config/node_config.hpp"

#include <fstream>
#include <sstream>

#include <toml++/toml.h>

#include "domain/envelope_id.hpp"

namespace hb {

namespace {

// Reads an optional integer key into `out`, range-checked.
template <class T>
bool read_int(const toml::table& tbl, const char* section, const char* key,
              T& out, int64_t lo, int64_t hi, std::string& err) {
  auto node = tbl[section][key];
  if (!node)
    return true;
  auto v = node.value<int64_t>();
  if (!v || *v < lo || *v > hi) {
    err = std::string{section} + "." + key + " must be an integer in ["
          + std::to_string(lo) + ", " + std::to_string(hi) + "]";
    return false;
  }
  out = static_cast<T>(*v);
  return true;
}

bool read_str(const toml::table& tbl, const char* section, const char* key,
              std::string& out, std::string& err) {
  auto node = tbl[section][key];
  if (!node)
    return true;
  auto v = node.value<std::string>();
  if (!v) {
    err = std::string{section} + "." + key + " must be a string";
    return false;
  }
  out = *v;
  return true;
}

// Segments are written as a list of integers or "a-b" ranges.
bool read_segments(const toml::table& tbl, std::vector<int32_t>& out,
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
  cfg.segments.clear();
  for (int32_t i = 0; i < 16; ++i)
    cfg.segments.push_back(i);
  std::string err;
  auto& lim = cfg.limits;
  int64_t expiry_s = lim.expiry_ms / 1000;
  bool ok = read_str(tbl, "node", "name", cfg.node_name, err)
            && read_str(tbl, "node", "zone", cfg.zone, err)
            && read_int(tbl, "node", "idle_poll_us", cfg.idle_poll_us, 0, 1000000, err)
            && read_str(tbl, "gateway", "host", cfg.listen_host, err)
            && read_int(tbl, "gateway", "port", cfg.listen_port, 0, 65535, err)
            && read_str(tbl, "gateway", "auth_token", cfg.auth_token, err)
            && read_int(tbl, "gateway", "frame_size_max", cfg.frame_size_max,
                        64, 16 << 20, err)
            && read_int(tbl, "gateway", "connection_inflight_max",
                        cfg.connection_inflight_max, 1, 1 << 20, err)
            && read_int(tbl, "gateway", "node_inflight_max",
                        cfg.node_inflight_max, 1, 1 << 24, err)
            && read_str(tbl, "database", "url", cfg.database_url, err)
            && read_int(tbl, "database", "pool_size", cfg.store_pool_size, 1,
                        256, err)
            && read_int(tbl, "database", "commits_in_flight",
                        cfg.commits_in_flight, 1, 256, err)
            && read_int(tbl, "database", "batches_in_flight",
                        cfg.batches_in_flight, 1, 256, err)
            && read_int(tbl, "database", "batch_max", cfg.batch_max, 1, 1024,
                        err)
            && read_int(tbl, "limits", "share_min_fen", lim.share_min_fen, 1,
                        int64_t{1} << 40, err)
            && read_int(tbl, "limits", "share_max_fen", lim.share_max_fen, 1,
                        int64_t{1} << 40, err)
            && read_int(tbl, "limits", "count_max", lim.count_max, 1, 1000000,
                        err)
            && read_int(tbl, "limits", "expiry_s", expiry_s, 1,
                        int64_t{365} * 24 * 3600, err)
            && read_int(tbl, "envelope", "queue_max", cfg.envelope_queue_max,
                        1, 1 << 24, err)
            && read_int(tbl, "envelope", "batch_max", cfg.envelope_batch_max,
                        1, 1 << 20, err)
            && read_int(tbl, "envelope", "idle_ms", cfg.envelope_idle_ms, 10,
                        int64_t{24} * 3600 * 1000, err)
            && read_int(tbl, "envelope", "live_max", cfg.live_envelopes_max,
                        1, 1 << 24, err)
            && read_int(tbl, "envelope", "keep_live", cfg.envelope_keep_live,
                        0, 1 << 24, err)
            && read_int(tbl, "envelope", "cap_quiet_ms",
                        cfg.envelope_cap_quiet_ms, 1, int64_t{24} * 3600 * 1000,
                        err)
            && read_int(tbl, "envelope", "cap_check_ms",
                        cfg.envelope_cap_check_ms, 10, 600000, err)
            && read_int(tbl, "relay", "batch_max", cfg.relay_batch_max, 1,
                        100000, err)
            && read_int(tbl, "relay", "poll_ms", cfg.relay_poll_ms, 1, 600000,
                        err)
            && read_int(tbl, "relay", "yield_ms", cfg.relay_yield_ms, 1, 60000,
                        err)
            && read_int(tbl, "relay", "defer_max_ms", cfg.relay_defer_max_ms,
                        0, 600000, err)
            && read_int(tbl, "expiry", "sweep_interval_ms",
                        cfg.sweep_interval_ms, 10, 3600000, err)
            && read_int(tbl, "expiry", "sweep_batch_max", cfg.sweep_batch_max,
                        1, 100000, err)
            && read_int(tbl, "reconcile", "interval_s",
                        cfg.reconcile_interval_s, 0, 86400 * 7, err)
            && read_int(tbl, "reconcile", "window_s", cfg.reconcile_window_s,
                        1, 86400 * 400, err)
            && read_int(tbl, "partitions", "hot_days", cfg.hot_days, 1, 3650,
                        err)
            && read_int(tbl, "partitions", "ahead_days",
                        cfg.partitions_ahead_days, 1, 365, err)
            && read_int(tbl, "partitions", "interval_s",
                        cfg.partitions_interval_s, 1, 86400 * 7, err)
            && read_int(tbl, "segments", "window_ms", cfg.segment_window_ms,
                        100, 3600000, err)
            && read_int(tbl, "segments", "fault_threshold",
                        cfg.segment_fault_threshold, 1, 1000000, err)
            && read_int(tbl, "segments", "probe_interval_ms",
                        cfg.segment_probe_interval_ms, 10, 3600000, err)
            && read_int(tbl, "supervisor", "restarts_max", cfg.restarts_max, 0,
                        1000, err)
            && read_int(tbl, "supervisor", "window_s", cfg.restart_window_s, 1,
                        86400, err)
            && read_segments(tbl, cfg.segments, err)
            && read_int(tbl, "ids", "lease_block", cfg.id_lease_block, 1,
                        1000000, err)
            && read_str(tbl, "log", "level", cfg.log_level, err);
  if (!ok)
    return failure{errc::invalid_argument, err};
  lim.expiry_ms = expiry_s * 1000;
  if (cfg.auth_token.empty())
    return failure{errc::invalid_argument,
                   "gateway.auth_token is required (clients authenticate with it)"};
  if (cfg.database_url.empty())
    return failure{errc::invalid_argument,
                   "database.url is required (a libpq connection string)"};
  if (lim.share_min_fen > lim.share_max_fen)
    return failure{errc::invalid_argument,
                   "limits.share_min_fen must not exceed limits.share_max_fen"};
  if (cfg.segments.empty())
    return failure{errc::invalid_argument, "ids.segments must not be empty"};
  if (cfg.envelope_keep_live == keep_live_default)
    cfg.envelope_keep_live = cfg.live_envelopes_max / 2;
  if (cfg.envelope_keep_live > cfg.live_envelopes_max)
    return failure{errc::invalid_argument,
                   "envelope.keep_live must not exceed envelope.live_max"};
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
