#include "domain/cluster.hpp"

#include <algorithm>

namespace hb {

std::vector<int32_t> segments_of(const set_config& set) {
  std::vector<int32_t> out;
  for (auto& r : set.segments)
    for (auto s = r.first; s <= r.last; ++s)
      out.push_back(s);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

int set_index_of(const std::vector<set_config>& sets, int32_t segment) {
  for (size_t i = 0; i < sets.size(); ++i)
    for (auto& r : sets[i].segments)
      if (segment >= r.first && segment <= r.last)
        return static_cast<int>(i);
  return -1;
}

bool lease_alive(const set_view& view, const node_lease& lease) {
  return lease.expires_at_ms > view.db_now_ms;
}

const node_lease* find_lease(const set_view& view, const std::string& node) {
  for (auto& n : view.nodes)
    if (n.node == node)
      return &n;
  return nullptr;
}

bool owner_alive(const set_view& view, const segment_owner& owner) {
  if (owner.owner.empty())
    return false;
  auto* lease = find_lease(view, owner.owner);
  return lease != nullptr && lease->incarnation == owner.owner_incarnation
         && lease_alive(view, *lease);
}

std::vector<std::string> zone_order(int32_t segment,
                                    const std::vector<std::string>& zones) {
  std::vector<std::string> out;
  if (zones.empty())
    return out;
  auto n = static_cast<int32_t>(zones.size());
  auto first = ((segment % n) + n) % n;
  // Of the segments a zone is primary for, every other one goes forwards
  // and the others backwards through the other zones: a lost zone's
  // segments split evenly over the survivors.
  auto step = n > 2 && (segment / n) % 2 == 1 ? n - 1 : 1;
  for (int32_t i = 0; i < n; ++i)
    out.push_back(zones[static_cast<size_t>((first + i * step) % n)]);
  return out;
}

std::optional<std::string>
preferred_owner(const set_view& view, int32_t segment,
                const std::vector<std::string>& zones) {
  for (auto& zone : zone_order(segment, zones)) {
    std::vector<const node_lease*> live;
    for (auto& n : view.nodes)
      if (n.zone == zone && lease_alive(view, n))
        live.push_back(&n);
    if (live.empty())
      continue;
    std::sort(live.begin(), live.end(),
              [](auto* a, auto* b) { return a->node < b->node; });
    // Segments whose primary is this zone step by the zone count, and
    // their direction alternates (zone_order): divide both out so that the
    // zone's nodes share its own segments and a lost zone's alike.
    auto k = static_cast<size_t>(segment)
             / (2 * std::max<size_t>(1, zones.size()));
    return live[k % live.size()]->node;
  }
  return std::nullopt;
}

std::vector<segment_owner> segments_to_take(const set_view& view,
                                            const std::string& me,
                                            const std::vector<std::string>& zones) {
  std::vector<segment_owner> out;
  auto* mine = find_lease(view, me);
  if (mine == nullptr || !lease_alive(view, *mine))
    return out;
  for (auto& row : view.owners) {
    if (owner_alive(view, row))
      continue;
    auto want = preferred_owner(view, row.segment, zones);
    if (want && *want == me)
      out.push_back(row);
  }
  return out;
}

std::vector<int32_t> owned_segments(const set_view& view, const std::string& me,
                                    int64_t incarnation) {
  std::vector<int32_t> out;
  for (auto& row : view.owners)
    if (row.owner == me && row.owner_incarnation == incarnation)
      out.push_back(row.segment);
  return out;
}

} // namespace hb
