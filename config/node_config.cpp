#include "config/node_config.hpp"

#include <algorithm>
#include <fstream>
#include <optional>
#include <sstream>

#include <toml++/toml.h>

#include "domain/cluster_summary.hpp"
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

  section_reader& flag(const char* key, bool& out) {
    if (!err_.empty())
      return *this;
    auto node = tbl_[section_][key];
    if (!node)
      return *this;
    auto v = node.template value<bool>();
    if (!v) {
      err_ = std::string{section_} + "." + key + " must be true or false";
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
    .num("connections_max", cfg.connections_max, 1, 1 << 24)
    .num("connections_per_address_max", cfg.connections_per_address_max, 1,
         1 << 24)
    .num("auth_timeout_ms", cfg.auth_timeout_ms, 1, 3600 * 1000)
    .num("idle_timeout_ms", cfg.idle_timeout_ms, 0, 7 * 24 * 3600 * 1000)
    .num("auth_frame_size_max", cfg.auth_frame_size_max, 64, 64 * 1024)
    .num("output_buffer_max", cfg.output_buffer_max, 4096, 1 << 30)
    .ok();
}

bool read_database(const toml::table& tbl, database_config& cfg,
                   std::string& err) {
  constexpr int64_t hour_ms = 3600 * 1000;
  auto& s = cfg.store;
  bool ok = section_reader{tbl, "database", err}
    .str("url", s.database_url)
    .num("pool_size", s.pool_size, 1, 256)
    .num("commits_in_flight", cfg.commits.inflight_max, 1, 256)
    .num("batches_in_flight", cfg.batches.inflight_max, 1, 256)
    .num("batch_max", cfg.batches.batch_max, 1, 1024)
    .num("keepalives_idle_s", s.keepalives_idle_s, 0, 3600)
    .num("keepalives_interval_s", s.keepalives_interval_s, 0, 3600)
    .num("keepalives_count", s.keepalives_count, 0, 100)
    .num("tcp_user_timeout_ms", s.tcp_user_timeout_ms, 0, hour_ms)
    .num("statement_timeout_ms", s.statement_timeout_ms, 0, hour_ms)
    .num("lock_timeout_ms", s.lock_timeout_ms, 0, hour_ms)
    .num("idle_in_transaction_session_timeout_ms",
         s.idle_in_transaction_session_timeout_ms, 0, hour_ms)
    .num("client_connection_check_interval_ms",
         s.client_connection_check_interval_ms, 0, hour_ms)
    .num("call_timeout_ms", s.call_timeout_ms, 0, hour_ms)
    .num("stuck_after_ms", s.stuck_after_ms, 1, hour_ms)
    .num("reply_timeout_ms", cfg.commits.reply_timeout_ms, 1, hour_ms)
    .num("background_call_timeout_ms", cfg.background_call_timeout_ms, 0,
         24 * hour_ms)
    .num("background_statement_timeout_ms",
         cfg.background_statement_timeout_ms, 0, 24 * hour_ms)
    .ok();
  cfg.batches.reply_timeout_ms = cfg.commits.reply_timeout_ms;
  // The batchers wait for the store's answer, which comes within the call
  // deadline (more for a call that waited behind others in a busy pool).
  if (ok && s.call_timeout_ms != 0
      && cfg.commits.reply_timeout_ms <= s.call_timeout_ms) {
    err = "database.reply_timeout_ms (" + std::to_string(cfg.commits.reply_timeout_ms)
          + ") must exceed database.call_timeout_ms ("
          + std::to_string(s.call_timeout_ms)
          + "): the batchers would give up on calls the store still answers";
    return false;
  }
  return ok;
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
    .num("clock_skew_max_ms", cfg.clock_skew_max_ms, int64_t{10},
         int64_t{400} * 24 * 3600 * 1000)
    .num("clock_check_interval_ms", cfg.clock_check_interval_ms, 100, 3600000)
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

// [admin]: the secret is read from secret_file when given (one line; the
// trailing newline is not part of it).
bool read_admin(const toml::table& tbl, admin_config& cfg, std::string& err) {
  bool ok = section_reader{tbl, "admin", err}
              .str("host", cfg.host)
              .num("port", cfg.port, 0, 65535)
              .num("metrics_port", cfg.metrics_port, 0, 65535)
              .str("secret", cfg.secret)
              .str("secret_file", cfg.secret_file)
              .str("credential", cfg.credential)
              .str("audit_file", cfg.audit_file)
              .flag("demo", cfg.demo)
              .num("forward_timeout_ms", cfg.forward_timeout_ms, 100, 600000)
              .num("request_timeout_ms", cfg.request_timeout_ms, 100, 3600000)
              .ok();
  if (!ok)
    return false;
  if (!cfg.secret_file.empty()) {
    if (!cfg.secret.empty()) {
      err = "admin.secret and admin.secret_file are both set; keep one";
      return false;
    }
    std::ifstream in{cfg.secret_file};
    if (!in || !std::getline(in, cfg.secret)) {
      err = "admin.secret_file: cannot read " + cfg.secret_file;
      return false;
    }
    while (!cfg.secret.empty()
           && (cfg.secret.back() == '\r' || cfg.secret.back() == ' '))
      cfg.secret.pop_back();
  }
  if (cfg.port != 0 && cfg.port == cfg.metrics_port) {
    err = "admin.metrics_port must differ from admin.port";
    return false;
  }
  if (cfg.port == 0)
    return true;
  if (cfg.secret.size() < 16) {
    err = "admin.secret (or admin.secret_file) must hold at least 16 "
          "characters when admin.port is set: every console request "
          "carries it";
    return false;
  }
  if (cfg.secret == admin_example_secret && !cfg.demo) {
    err = "admin.secret is the example's from node.example.toml; set a "
          "secret of your own (admin.demo = true allows it for a demo)";
    return false;
  }
  if (cfg.credential.empty()) {
    err = "admin.credential must not be empty (the audit log names it)";
    return false;
  }
  return true;
}

// -- [cluster] -----------------------------------------------------------------

// The [cluster] section is checked as a whole: every problem is reported,
// one per line, so that an operator fixing a cluster's SET map sees all of
// it at once instead of one mistake per run.
using problem_list = std::vector<std::string>;

// Reads keys of one table, each range-checked; a wrong key adds a problem
// named `prefix` + key and the reader goes on with the next key.
class table_reader {
public:
  table_reader(toml::node_view<const toml::node> tbl, std::string prefix,
               problem_list& problems)
    : tbl_(tbl), prefix_(std::move(prefix)), problems_(problems) {
  }

  template <class T>
  table_reader& num(const char* key, T& out, int64_t lo, int64_t hi) {
    auto node = tbl_[key];
    if (!node)
      return *this;
    // Strictly integers: toml++ would read true as 1.
    auto* i = node.as_integer();
    auto v = i != nullptr ? std::optional<int64_t>{i->get()} : std::nullopt;
    if (!v || *v < lo || *v > hi) {
      problems_.push_back(prefix_ + key + " must be an integer in ["
                          + std::to_string(lo) + ", " + std::to_string(hi)
                          + "]");
      return *this;
    }
    out = static_cast<T>(*v);
    return *this;
  }

  table_reader& str(const char* key, std::string& out) {
    auto node = tbl_[key];
    if (!node)
      return *this;
    auto v = node.template value<std::string>();
    if (!v) {
      problems_.push_back(prefix_ + key + " must be a string");
      return *this;
    }
    out = *v;
    return *this;
  }

  table_reader& strings(const char* key, std::vector<std::string>& out) {
    auto node = tbl_[key];
    if (!node)
      return *this;
    auto* arr = node.as_array();
    bool ok = arr != nullptr;
    std::vector<std::string> result;
    if (ok)
      for (auto& el : *arr) {
        auto v = el.value<std::string>();
        if (!v) {
          ok = false;
          break;
        }
        result.push_back(*v);
      }
    if (!ok) {
      problems_.push_back(prefix_ + key + " must be a list of strings");
      return *this;
    }
    out = std::move(result);
    return *this;
  }

  // Segment ranges: strings "a-b" or "n", or integers, all within 0..999.
  table_reader& ranges(const char* key, std::vector<segment_range>& out) {
    auto node = tbl_[key];
    if (!node)
      return *this;
    auto* arr = node.as_array();
    if (arr == nullptr) {
      problems_.push_back(prefix_ + key
                          + " must be a list of ranges like \"0-499\" or \"7\"");
      return *this;
    }
    std::vector<segment_range> result;
    for (auto& el : *arr) {
      std::optional<segment_range> range;
      std::string shown;
      if (auto* i = el.as_integer()) {
        shown = std::to_string(i->get());
        if (i->get() >= 0 && i->get() < segment_count)
          range = segment_range{static_cast<int32_t>(i->get()),
                                static_cast<int32_t>(i->get())};
      } else if (auto text = el.value<std::string>()) {
        shown = "\"" + *text + "\"";
        range = parse_segment_range(*text);
      }
      if (!range) {
        problems_.push_back(prefix_ + key + ": "
                            + (shown.empty() ? "an element" : shown)
                            + " is not a range \"a-b\" or \"n\" with 0 <= a "
                              "<= b <= 999");
        return *this;
      }
      result.push_back(*range);
    }
    out = std::move(result);
    return *this;
  }

private:
  toml::node_view<const toml::node> tbl_;
  std::string prefix_;
  problem_list& problems_;
};

constexpr int64_t cluster_ms_max = 3600 * 1000;

// "cluster.sets #2 (set-2)": how problems of one SET name it.
std::string set_label(size_t index, const set_config& set) {
  std::string label = "cluster.sets #" + std::to_string(index + 1);
  if (!set.name.empty())
    label += " (" + set.name + ")";
  return label;
}

void read_cluster_sets(toml::node_view<const toml::node> sec,
                       cluster_config& cfg, problem_list& problems) {
  auto node = sec["sets"];
  if (!node) {
    problems.push_back("[[cluster.sets]] is required in a cluster: the SET "
                       "map (name, segments, database_url of every SET)");
    return;
  }
  auto* arr = node.as_array();
  if (arr == nullptr || !arr->is_array_of_tables()) {
    problems.push_back("cluster.sets must be written as [[cluster.sets]] "
                       "tables");
    return;
  }
  for (size_t i = 0; i < arr->size(); ++i) {
    set_config set;
    toml::node_view<const toml::node> tbl{arr->get(i)};
    auto name_problems = problems.size();
    table_reader{tbl, "cluster.sets #" + std::to_string(i + 1) + ".", problems}
      .str("name", set.name);
    table_reader{tbl, set_label(i, set) + ": ", problems}
      .ranges("segments", set.segments)
      .str("database_url", set.database_url);
    if (problems.size() == name_problems) {
      if (set.name.empty())
        problems.push_back(set_label(i, set) + ": name is required");
      if (set.segments.empty())
        problems.push_back(set_label(i, set)
                           + ": segments is required (ranges like \"0-499\")");
      if (set.database_url.empty())
        problems.push_back(set_label(i, set)
                           + ": database_url is required (each SET has its "
                             "own PostgreSQL database)");
    }
    cfg.sets.push_back(std::move(set));
  }
}

// Reads [cluster] and [[cluster.sets]] key by key; a file without a
// [cluster] section leaves the node on its own.
void read_cluster(const toml::table& tbl, cluster_config& cfg,
                  problem_list& problems) {
  auto sec = tbl["cluster"];
  if (!sec)
    return;
  if (!sec.is_table()) {
    problems.push_back("cluster must be a table ([cluster])");
    return;
  }
  cfg.enabled = true;
  table_reader{sec, "cluster.", problems}
    .str("set", cfg.set)
    .str("peer_host", cfg.peer_host)
    .num("peer_port", cfg.peer_port, 0, 65535)
    .strings("seeds", cfg.seeds)
    .strings("zones", cfg.zones)
    .num("lease_ms", cfg.lease_ms, 1, cluster_ms_max)
    .num("renew_ms", cfg.renew_ms, 1, cluster_ms_max)
    .num("lease_margin_ms", cfg.lease_margin_ms, 1, cluster_ms_max)
    .num("settle_ms", cfg.settle_ms, 1, cluster_ms_max)
    .num("sync_ms", cfg.sync_ms, 1, cluster_ms_max)
    .num("forward_timeout_ms", cfg.forward_timeout_ms, 1, cluster_ms_max)
    .num("forward_inflight_max", cfg.forward_inflight_max, 1, 1 << 24)
    .num("heartbeat_ms", cfg.heartbeat_ms, 1, cluster_ms_max)
    .num("link_timeout_ms", cfg.link_timeout_ms, 1, cluster_ms_max)
    .num("rebalance_settle_ms", cfg.rebalance_settle_ms, 0, cluster_ms_max)
    .num("handoff_batch", cfg.handoff_batch, 1, 1000)
    .num("handoff_timeout_ms", cfg.handoff_timeout_ms, 1, cluster_ms_max)
    .num("drain_timeout_ms", cfg.drain_timeout_ms, 0, cluster_ms_max)
    .num("node_capacity_segments", cfg.node_capacity_segments, 0, 1000);
  read_cluster_sets(sec, cfg, problems);
}

// "host:port" with a non-empty host and a port in 1..65535 ("[::1]:7811"
// for IPv6).
bool valid_host_port(const std::string& text) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size())
    return false;
  auto port = text.substr(colon + 1);
  if (port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos)
    return false;
  auto n = std::stoi(port);
  if (n < 1 || n > 65535)
    return false;
  auto host = text.substr(0, colon);
  if (host.front() == '[')
    return host.size() > 2 && host.back() == ']';
  return host.find(':') == std::string::npos;
}

std::string quoted_list(const std::vector<std::string>& xs) {
  std::string out;
  for (auto& x : xs)
    out += (out.empty() ? "" : ", ") + x;
  return out.empty() ? "none" : out;
}

void check_cluster_node(const node_config& cfg, problem_list& problems) {
  auto& c = cfg.cluster;
  if (cfg.node.name.empty())
    problems.push_back("node.name is required in a cluster (unique among its "
                       "nodes)");
  if (c.peer_port == 0)
    problems.push_back("cluster.peer_port is required (1..65535): node "
                       "links listen there");
  if (c.peer_host.empty())
    problems.push_back("cluster.peer_host must not be empty");
  for (size_t i = 0; i < c.seeds.size(); ++i)
    if (!valid_host_port(c.seeds[i]))
      problems.push_back("cluster.seeds: \"" + c.seeds[i]
                         + "\" is not host:port");
  auto zones = c.zones;
  std::sort(zones.begin(), zones.end());
  bool distinct = std::adjacent_find(zones.begin(), zones.end()) == zones.end();
  bool named = std::find(zones.begin(), zones.end(), "") == zones.end();
  if (zones.size() != 3 || !distinct || !named)
    problems.push_back("cluster.zones must name exactly three distinct zones, "
                       "got [" + quoted_list(c.zones) + "]");
  else if (std::find(zones.begin(), zones.end(), cfg.node.zone) == zones.end())
    problems.push_back("node.zone \"" + cfg.node.zone
                       + "\" is not one of cluster.zones ("
                       + quoted_list(c.zones) + ")");
  if (c.lease_margin_ms >= c.lease_ms
      || c.renew_ms >= c.lease_ms - c.lease_margin_ms)
    problems.push_back(
      "cluster.renew_ms (" + std::to_string(c.renew_ms)
      + ") must be less than cluster.lease_ms - cluster.lease_margin_ms ("
      + std::to_string(c.lease_ms) + " - " + std::to_string(c.lease_margin_ms)
      + "): a node must renew before it fences itself");
}

// Lists at most this many ranges of segments in one problem.
constexpr size_t ranges_shown_max = 12;

// "segment 7 is", "segments 0-2,5 are", "segments 1,3,... and 488 more
// ranges are".
std::string segments_are(const std::vector<int32_t>& segments) {
  if (segments.size() == 1)
    return "segment " + std::to_string(segments[0]) + " is";
  auto ranges = compact_ranges(segments);
  if (ranges.size() <= ranges_shown_max)
    return "segments " + ranges_text(ranges) + " are";
  auto more = ranges.size() - ranges_shown_max;
  ranges.resize(ranges_shown_max);
  return "segments " + ranges_text(ranges) + " and " + std::to_string(more)
         + " more ranges are";
}

void check_cluster_sets(const cluster_config& c, problem_list& problems) {
  auto& sets = c.sets;
  for (size_t i = 0; i < sets.size(); ++i)
    for (size_t j = i + 1; j < sets.size(); ++j) {
      if (!sets[i].name.empty() && sets[i].name == sets[j].name)
        problems.push_back("cluster.sets: the name \"" + sets[i].name
                           + "\" is used twice (#" + std::to_string(i + 1)
                           + " and #" + std::to_string(j + 1) + ")");
      if (!sets[i].database_url.empty()
          && sets[i].database_url == sets[j].database_url)
        problems.push_back("cluster.sets: " + set_label(i, sets[i]) + " and "
                           + set_label(j, sets[j])
                           + " have the same database_url (each SET has its "
                             "own database)");
    }
  // Which SETs hold each segment: each segment must be in exactly one.
  std::vector<std::vector<size_t>> holders(segment_count);
  for (size_t i = 0; i < sets.size(); ++i)
    for (auto s : segments_of(sets[i]))
      holders[static_cast<size_t>(s)].push_back(i);
  std::vector<int32_t> uncovered;
  std::vector<std::vector<std::vector<int32_t>>> shared(
    sets.size(), std::vector<std::vector<int32_t>>(sets.size()));
  for (int32_t s = 0; s < segment_count; ++s) {
    auto& h = holders[static_cast<size_t>(s)];
    if (h.empty())
      uncovered.push_back(s);
    for (size_t a = 0; a < h.size(); ++a)
      for (size_t b = a + 1; b < h.size(); ++b)
        shared[h[a]][h[b]].push_back(s);
  }
  for (size_t i = 0; i < sets.size(); ++i)
    for (size_t j = i + 1; j < sets.size(); ++j)
      if (!shared[i][j].empty())
        problems.push_back("cluster.sets: " + segments_are(shared[i][j])
                           + " in both " + set_label(i, sets[i]) + " and "
                           + set_label(j, sets[j])
                           + " (each segment belongs to exactly one SET)");
  if (!uncovered.empty() && !sets.empty())
    problems.push_back("cluster.sets: " + segments_are(uncovered)
                       + " in no SET (together the SETs must cover "
                         "0-999)");
}

// What no single key of the cluster shows; on success the node's database
// is its SET's.
void check_cluster(const toml::table& tbl, node_config& cfg,
                   problem_list& problems) {
  auto& c = cfg.cluster;
  check_cluster_node(cfg, problems);
  check_cluster_sets(c, problems);
  const set_config* mine = nullptr;
  for (auto& set : c.sets)
    if (set.name == c.set)
      mine = &set;
  if (c.set.empty())
    problems.push_back("cluster.set is required: the name of this node's SET");
  else if (mine == nullptr) {
    std::vector<std::string> names;
    for (auto& set : c.sets)
      names.push_back(set.name);
    problems.push_back("cluster.set \"" + c.set
                       + "\" is not in the SET map (cluster.sets: "
                       + quoted_list(names) + ")");
  }
  if (tbl["ids"]["segments"])
    problems.push_back("ids.segments is not allowed in a cluster: a node "
                       "allocates ids only in the segments it owns");
  if (mine == nullptr)
    return;
  auto& url = cfg.database.store.database_url;
  if (tbl["database"]["url"] && url != mine->database_url)
    problems.push_back("database.url differs from the database_url of SET "
                       + mine->name
                       + "; in a cluster omit database.url (the SET map "
                         "gives it) or make them equal");
  else
    url = mine->database_url;
}

std::string joined(const problem_list& problems) {
  std::string out;
  for (auto& p : problems)
    out += (out.empty() ? "" : "\n") + p;
  return out;
}

// What no single key shows: required keys and keys that bound each other.
failure check_node_config(node_config& cfg) {
  if (cfg.gateway.auth_token.empty())
    return {errc::invalid_argument,
            "gateway.auth_token is required (clients authenticate with it)"};
  if (cfg.gateway.auth_frame_size_max > cfg.gateway.frame_size_max)
    return {errc::invalid_argument,
            "gateway.auth_frame_size_max must not exceed "
            "gateway.frame_size_max"};
  // In a cluster the SET map gives the database (check_cluster).
  if (!cfg.cluster.enabled && cfg.database.store.database_url.empty())
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
            && read_log(tbl, cfg.log, err)
            && read_admin(tbl, cfg.admin, err);
  // The other sections stop at their first wrong key; the cluster's
  // problems are all reported, after it.
  problem_list problems;
  if (!ok)
    problems.push_back(err);
  read_cluster(tbl, cfg.cluster, problems);
  if (problems.empty() && cfg.cluster.enabled)
    check_cluster(tbl, cfg, problems);
  if (!problems.empty())
    return failure{errc::invalid_argument, joined(problems)};
  auto bad = check_node_config(cfg);
  if (bad.code != errc::none)
    return bad;
  return cfg;
}

std::string redacted_database_url(const std::string& url) {
  std::string out = url;
  // URI: scheme://user:password@host...
  auto scheme = out.find("://");
  if (scheme != std::string::npos) {
    auto start = scheme + 3;
    auto at = out.find('@', start);
    auto colon = out.find(':', start);
    if (at != std::string::npos && colon != std::string::npos && colon < at)
      out.replace(colon + 1, at - colon - 1, "***");
  }
  // Key/value: password=value or password = 'quoted value', anywhere
  // (a URI may carry it as a query parameter too).
  for (size_t pos = out.find("password"); pos != std::string::npos;
       pos = out.find("password", pos + 1)) {
    auto eq = out.find_first_not_of(' ', pos + 8);
    if (eq == std::string::npos || out[eq] != '=')
      continue;
    auto start = out.find_first_not_of(' ', eq + 1);
    if (start == std::string::npos)
      break;
    size_t end = start;
    if (out[start] == '\'') {
      for (end = start + 1; end < out.size() && out[end] != '\''; ++end)
        if (out[end] == '\\')
          ++end;
      end = std::min(end + 1, out.size());
    } else {
      end = out.find_first_of(" &", start);
      if (end == std::string::npos)
        end = out.size();
    }
    out.replace(start, end - start, "***");
  }
  return out;
}

outcome<node_config> load_node_config(const std::string& path) {
  std::ifstream in{path};
  if (!in)
    return failure{errc::invalid_argument,
                   "cannot read config file " + path};
  std::ostringstream buf;
  buf << in.rdbuf();
  auto res = parse_node_config(buf.str());
  if (!res) {
    // One problem per line, each naming the file.
    std::string message;
    std::istringstream lines{res.error().message};
    for (std::string line; std::getline(lines, line);)
      message += (message.empty() ? "" : "\n") + path + ": " + line;
    return failure{res.error().code, message};
  }
  return res;
}

} // namespace hb
