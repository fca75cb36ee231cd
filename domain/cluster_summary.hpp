#pragma once

// The cluster as people and clients read it: segment lists written as
// compact ranges ("0-2,5") and a SET's segment owners grouped per node.
// Shared by the config (the SET map, `--check`), the codec (StatsReport's
// cluster view) and the `hongbao stats` tables. Pure: no CAF, no I/O.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "domain/cluster.hpp"

namespace hb {

/// The segments as ascending, non-adjacent ranges (sorted and deduplicated
/// first): {5, 0, 1, 2} -> [0-2], [5-5].
std::vector<segment_range> compact_ranges(std::vector<int32_t> segments);

/// "0-2,5" for [0-2], [5-5]; "" for none.
std::string ranges_text(const std::vector<segment_range>& ranges);

/// ranges_text(compact_ranges(segments)).
std::string segments_text(const std::vector<int32_t>& segments);

/// One range as written in a config file: "a-b" or "n", 0 <= a <= b < 1000,
/// digits only. Empty if the text is anything else.
std::optional<segment_range> parse_segment_range(const std::string& text);

/// The inverse of ranges_text: comma-separated ranges ("0-2,5"), "" for
/// none. Empty if any part is not a range.
std::optional<std::vector<segment_range>>
parse_ranges_text(const std::string& text);

/// The segments of one owner of a SET: who (by name and incarnation; an
/// empty owner stands for segments nobody has taken yet), which segments
/// (ascending) and the highest owner_epoch among them.
struct owner_group {
  std::string owner;
  int64_t owner_incarnation = 0;
  std::vector<int32_t> segments;
  int64_t owner_epoch_max = 0;
};

/// The owner rows of a view grouped by (owner, incarnation), ordered by
/// owner name and incarnation, the unowned segments last.
std::vector<owner_group> owner_groups(const set_view& view);

/// The state of a group's owner in the view: "alive", "lease expired",
/// "old incarnation" (the node restarted since it took the segments), "not
/// joined", or "unowned" for the segments nobody has taken.
const char* owner_state(const set_view& view, const owner_group& g);

} // namespace hb
