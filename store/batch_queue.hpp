#pragma once

// The waiting room of the activation and pay batchers: requests that
// arrive while `inflight_max` transactions are running wait here and leave
// together, as the next batch, when a slot frees up.

#include <cstdint>
#include <deque>
#include <functional>
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

  /// The loop of every batcher: while a slot is free, the next batch
  /// (`take()`, which calls take above) goes out, one item as
  /// `alone(item, done)`, more as `many(batch, done)`. Each calls `done`
  /// once its answer came, which frees the slot and sends what waits then.
  /// The queue is the batcher's state: it outlives every callback (CAF
  /// drops an actor's pending answers with the actor).
  template <class Take, class Alone, class Many>
  void send(Take take, Alone alone, Many many) {
    while (slot_free()) {
      auto batch = take();
      std::function<void()> done = [this, take, alone, many] {
        --inflight;
        send(take, alone, many);
      };
      if (batch.size() == 1)
        alone(std::move(batch.front()), std::move(done));
      else
        many(std::move(batch), std::move(done));
    }
  }
};

/// The answer to a batch: each item the statement did (`did(item)`) gets
/// its answer (`deliver(item)`), every other one goes `alone(item)`, which
/// answers it or explains. Returns how many went alone.
template <class Pending, class Did, class Deliver, class Alone>
size_t settle(std::vector<Pending>& batch, Did did, Deliver deliver,
              Alone alone) {
  size_t n = 0;
  for (auto& item : batch) {
    if (did(item)) {
      deliver(item);
    } else {
      ++n;
      alone(item);
    }
  }
  return n;
}

} // namespace hb
