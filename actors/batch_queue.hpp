#pragma once

// The waiting room of the activation and pay batchers: requests that
// arrive while `inflight_max` transactions are running wait here and leave
// together, as the next batch, when a slot frees up.

#include <cstdint>
#include <deque>
#include <set>
#include <utility>
#include <vector>

namespace hb {

template <class Pending>
struct batch_queue {
  std::deque<Pending> queue;
  uint32_t inflight = 0;      ///< transactions (batches or lone ones) out
  uint32_t inflight_max = 1;
  uint32_t batch_max = 1;

  bool slot_free() const {
    return inflight < inflight_max && !queue.empty();
  }

  /// The next batch, counted as in flight: items of distinct keys in
  /// arrival order, up to batch_max. An item `lone` says must go alone
  /// leaves alone when it is first and waits otherwise; so does an item
  /// whose key is in the batch already (one write per key and batch). What
  /// is left keeps its place.
  template <class Key, class Lone>
  std::vector<Pending> take(Key key, Lone lone) {
    ++inflight;
    std::vector<Pending> out;
    if (lone(queue.front())) {
      out.push_back(std::move(queue.front()));
      queue.pop_front();
      return out;
    }
    std::set<decltype(key(queue.front()))> keys;
    for (auto it = queue.begin(); it != queue.end() && out.size() < batch_max;) {
      if (!lone(*it) && keys.insert(key(*it)).second) {
        out.push_back(std::move(*it));
        it = queue.erase(it);
      } else {
        ++it;
      }
    }
    return out;
  }
};

} // namespace hb
