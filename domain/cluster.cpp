#include "domain/cluster.hpp"

#include <algorithm>
#include <map>

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

namespace {

// A 64-bit mix (splitmix64's finaliser): neighbouring inputs give unrelated
// outputs.
uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// FNV-1a of a node's name.
uint64_t name_hash(const std::string& name) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : name) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

bool serving(const set_view& view, const node_lease& n) {
  return lease_alive(view, n) && !n.draining;
}

// The preferred owner of `segment` among the nodes for which `counts` says
// yes.
template <class Counts>
std::optional<std::string> preferred_among(const set_view& view, int32_t segment,
                                           const std::vector<std::string>& zones,
                                           Counts counts) {
  for (auto& zone : zone_order(segment, zones)) {
    const node_lease* best = nullptr;
    uint64_t best_rank = 0;
    for (auto& n : view.nodes) {
      if (n.zone != zone || !counts(n))
        continue;
      auto rank = mix(name_hash(n.node) ^ mix(static_cast<uint64_t>(segment)));
      if (best == nullptr || rank > best_rank
          || (rank == best_rank && n.node < best->node)) {
        best = &n;
        best_rank = rank;
      }
    }
    if (best != nullptr)
      return best->node;
  }
  return std::nullopt;
}

} // namespace

std::optional<std::string>
preferred_owner(const set_view& view, int32_t segment,
                const std::vector<std::string>& zones) {
  return preferred_among(view, segment, zones,
                         [&](const node_lease& n) { return serving(view, n); });
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


std::vector<segment_handoff> segments_to_give(const set_view& view,
                                              const std::string& me,
                                              int64_t incarnation,
                                              const std::vector<std::string>& zones,
                                              int64_t settle_ms, size_t max) {
  std::vector<segment_handoff> out;
  auto* mine = find_lease(view, me);
  if (mine == nullptr || mine->incarnation != incarnation
      || !lease_alive(view, *mine))
    return out;
  for (auto& row : view.owners) {
    if (out.size() >= max)
      break;
    if (row.owner != me || row.owner_incarnation != incarnation)
      continue;
    auto want = preferred_owner(view, row.segment, zones);
    if (!want || *want == me)
      continue;
    auto* to = find_lease(view, *want);
    if (!mine->draining && view.db_now_ms - to->since_ms < settle_ms)
      continue;
    out.push_back(segment_handoff{row.segment, row.owner_epoch, to->node,
                                  to->incarnation});
  }
  return out;
}

std::vector<segment_handoff> planned_moves(const set_view& view,
                                           const std::vector<std::string>& zones) {
  std::vector<segment_handoff> out;
  for (auto& row : view.owners) {
    if (!owner_alive(view, row))
      continue;  // a dead owner's segments are taken, not moved
    auto want = preferred_owner(view, row.segment, zones);
    if (!want || *want == row.owner)
      continue;
    auto* to = find_lease(view, *want);
    out.push_back(segment_handoff{row.segment, row.owner_epoch, to->node,
                                  to->incarnation});
  }
  return out;
}

std::vector<std::string> zone_loss_warnings(const set_view& view,
                                            const std::vector<std::string>& zones,
                                            int32_t capacity) {
  std::vector<std::string> out;
  if (capacity <= 0)
    return out;
  for (auto& lost : zones) {
    std::map<std::string, int32_t> count;
    for (auto& row : view.owners) {
      auto want = preferred_among(view, row.segment, zones,
                                  [&](const node_lease& n) {
                                    return n.zone != lost && serving(view, n);
                                  });
      if (want)
        ++count[*want];
    }
    for (auto& kv : count)
      if (kv.second > capacity)
        out.push_back("losing " + lost + " would leave " + kv.first + " with "
                      + std::to_string(kv.second) + " segments (capacity "
                      + std::to_string(capacity) + ")");
  }
  return out;
}

} // namespace hb
