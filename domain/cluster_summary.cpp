#include "domain/cluster_summary.hpp"

#include <algorithm>
#include <map>
#include <utility>

#include "domain/envelope_id.hpp"

namespace hb {

namespace {

// Reads a segment number: 1 to 3 digits, nothing else.
std::optional<int32_t> parse_segment(const std::string& text) {
  if (text.empty() || text.size() > 3
      || text.find_first_not_of("0123456789") != std::string::npos)
    return std::nullopt;
  auto n = std::stoi(text);
  if (n >= segment_count)
    return std::nullopt;
  return n;
}

} // namespace

std::vector<segment_range> compact_ranges(std::vector<int32_t> segments) {
  std::sort(segments.begin(), segments.end());
  segments.erase(std::unique(segments.begin(), segments.end()),
                 segments.end());
  std::vector<segment_range> out;
  for (auto s : segments) {
    if (!out.empty() && out.back().last + 1 == s)
      out.back().last = s;
    else
      out.push_back(segment_range{s, s});
  }
  return out;
}

std::string ranges_text(const std::vector<segment_range>& ranges) {
  std::string out;
  for (auto& r : ranges) {
    if (!out.empty())
      out += ',';
    out += std::to_string(r.first);
    if (r.last != r.first)
      out += '-' + std::to_string(r.last);
  }
  return out;
}

std::string segments_text(const std::vector<int32_t>& segments) {
  return ranges_text(compact_ranges(segments));
}

std::optional<segment_range> parse_segment_range(const std::string& text) {
  auto dash = text.find('-');
  if (dash == std::string::npos) {
    auto n = parse_segment(text);
    if (!n)
      return std::nullopt;
    return segment_range{*n, *n};
  }
  auto first = parse_segment(text.substr(0, dash));
  auto last = parse_segment(text.substr(dash + 1));
  if (!first || !last || *first > *last)
    return std::nullopt;
  return segment_range{*first, *last};
}

std::optional<std::vector<segment_range>>
parse_ranges_text(const std::string& text) {
  std::vector<segment_range> out;
  if (text.empty())
    return out;
  size_t pos = 0;
  for (;;) {
    auto comma = text.find(',', pos);
    auto part = text.substr(pos, comma == std::string::npos ? std::string::npos
                                                            : comma - pos);
    auto range = parse_segment_range(part);
    if (!range)
      return std::nullopt;
    out.push_back(*range);
    if (comma == std::string::npos)
      return out;
    pos = comma + 1;
  }
}

std::vector<owner_group> owner_groups(const set_view& view) {
  // Keyed so that the unowned segments (empty name) sort last.
  using key = std::pair<std::pair<bool, std::string>, int64_t>;
  std::map<key, owner_group> groups;
  for (auto& row : view.owners) {
    key k{{row.owner.empty(), row.owner}, row.owner_incarnation};
    auto& g = groups[k];
    if (g.segments.empty()) {
      g.owner = row.owner;
      g.owner_incarnation = row.owner_incarnation;
      g.owner_epoch_max = row.owner_epoch;
    }
    g.segments.push_back(row.segment);
    g.owner_epoch_max = std::max(g.owner_epoch_max, row.owner_epoch);
  }
  std::vector<owner_group> out;
  out.reserve(groups.size());
  for (auto& [k, g] : groups) {
    std::sort(g.segments.begin(), g.segments.end());
    out.push_back(std::move(g));
  }
  return out;
}

const char* owner_state(const set_view& view, const owner_group& g) {
  if (g.owner.empty())
    return "unowned";
  auto* lease = find_lease(view, g.owner);
  if (lease == nullptr)
    return "not joined";
  if (lease->incarnation != g.owner_incarnation)
    return "old incarnation";
  return lease_alive(view, *lease) ? "alive" : "lease expired";
}

} // namespace hb
