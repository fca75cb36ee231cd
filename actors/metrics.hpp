#pragma once

#include <atomic>
#include <cstdint>

namespace hb {

/// Node-wide counters, shared by the actors of one node. Relaxed atomics:
/// they are statistics, never used for decisions.
struct node_metrics {
  std::atomic<uint64_t> activations{0};       ///< envelope actors activated
  std::atomic<uint64_t> open_batches{0};      ///< group-commit writes committed
  std::atomic<uint64_t> opens_committed{0};   ///< opens in those writes
  std::atomic<uint64_t> write_failures{0};    ///< writes failed or unknown
  std::atomic<uint64_t> open_batch_max{0};    ///< largest batch seen
  std::atomic<uint64_t> relay_batches{0};     ///< relay transactions with rows
  std::atomic<uint64_t> relay_credited{0};    ///< wallet credits posted
  std::atomic<uint64_t> relay_duplicates{0};  ///< redeliveries found credited
  std::atomic<uint64_t> relay_busy_ms{0};     ///< time spent in relay batches
  std::atomic<uint64_t> refunds{0};           ///< envelopes refunded

  void record_batch(uint64_t size) {
    open_batches.fetch_add(1, std::memory_order_relaxed);
    opens_committed.fetch_add(size, std::memory_order_relaxed);
    auto prev = open_batch_max.load(std::memory_order_relaxed);
    while (size > prev
           && !open_batch_max.compare_exchange_weak(prev, size,
                                                    std::memory_order_relaxed))
      ;
  }
};

} // namespace hb
