#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "domain/errc.hpp"

namespace hb {

/// A histogram with power-of-two buckets: bucket k counts values in
/// [2^(k-1), 2^k) (bucket 0 counts 0). Lock-free; percentiles are upper
/// bounds of their bucket, which is what an operator needs to see trends.
class log2_histogram {
public:
  static constexpr size_t buckets = 40;

  void record(uint64_t value) {
    size_t k = 0;
    while (value > 0 && k + 1 < buckets) {
      value >>= 1;
      ++k;
    }
    counts_[k].fetch_add(1, std::memory_order_relaxed);
  }

  /// The upper bound of the bucket holding the p-th percentile (0 if empty).
  uint64_t percentile(double p) const;

  uint64_t count() const;

  /// The count of bucket k (values in [2^(k-1), 2^k); k = 0: zeros), for
  /// exporters (the Prometheus endpoint).
  uint64_t bucket(size_t k) const {
    return k < buckets ? counts_[k].load(std::memory_order_relaxed) : 0;
  }

private:
  std::array<std::atomic<uint64_t>, buckets> counts_{};
};

/// The request kinds counted by the gateway (the client protocol's).
enum class request_kind : uint8_t {
  auth, create, pay, grab, open, get, history, balance, reconcile, stats,
  segment, cluster, count_  // keep last
};

const char* to_string(request_kind x);

/// Node-wide counters, shared by the actors of one node. Relaxed atomics:
/// statistics, and a scheduling hint for the relay (it yields while opens
/// are busy); never used for a decision about money.
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
  std::atomic<uint64_t> relay_yields{0};      ///< relay pauses for busy opens
  std::atomic<uint64_t> refunds{0};           ///< envelopes refunded
  std::atomic<int64_t> queued_opens{0};       ///< opens waiting in envelopes
  std::atomic<uint64_t> deadline_drops{0};    ///< requests dropped past deadline
  std::atomic<uint64_t> direct_requests{0};   ///< grabs/opens sent straight to an envelope actor
  std::atomic<uint64_t> direct_fallbacks{0};  ///< ... whose actor had gone (asked the router)
  std::atomic<uint64_t> gateway_timeouts{0};  ///< requests answered UNAVAILABLE at their due time
  std::atomic<int64_t> gateway_connections{0};    ///< client connections open now
  std::atomic<uint64_t> gateway_refused{0};       ///< connections closed at once: over a cap
  std::atomic<uint64_t> gateway_auth_timeouts{0}; ///< connections closed: no Auth in time
  std::atomic<uint64_t> gateway_idle_closed{0};   ///< connections closed: idle too long
  std::atomic<uint64_t> gateway_read_pauses{0};   ///< times a connection's reading paused (unsent output)
  std::atomic<uint64_t> cluster_joins{0};     ///< joins (a new incarnation each)
  std::atomic<uint64_t> cluster_fences{0};    ///< times the node fenced itself
  std::atomic<uint64_t> cluster_takes{0};     ///< segments taken by compare-and-set
  std::atomic<uint64_t> cluster_gives{0};     ///< segments handed over (planned moves)
  std::atomic<uint64_t> cluster_received{0};  ///< segments handed to this node
  std::atomic<uint64_t> cluster_forwarded{0}; ///< requests forwarded to an owner
  std::atomic<uint64_t> cluster_forward_failures{0};  ///< ... not answered by it
  std::atomic<uint64_t> cluster_not_owner{0}; ///< forwarded here, owned elsewhere
  std::atomic<uint64_t> owner_refusals{0};    ///< writes the database refused: not the owner
  std::atomic<int64_t> clock_skew_ms{0};      ///< node clock minus database clock
  std::atomic<int64_t> clock_skew_uncertainty_ms{0};  ///< ... within this
  std::atomic<uint64_t> clock_skew_checks{0}; ///< readings of the database clock
  std::atomic<int64_t> expiry_held{0};        ///< 1 while the skew holds expiry
  std::atomic<uint64_t> expiry_held_sweeps{0};  ///< sweeps skipped for the skew
  log2_histogram forward_latency_us;          ///< forwarded requests, round trip
  log2_histogram batch_sizes;                 ///< opens per write
  log2_histogram store_latency_us;            ///< every store call

  /// Answers per request kind and result (errc::none = success).
  std::array<std::array<std::atomic<uint64_t>, 32>,
             static_cast<size_t>(request_kind::count_)>
    answers{};

  void record_batch(uint64_t size) {
    open_batches.fetch_add(1, std::memory_order_relaxed);
    opens_committed.fetch_add(size, std::memory_order_relaxed);
    batch_sizes.record(size);
    auto prev = open_batch_max.load(std::memory_order_relaxed);
    while (size > prev
           && !open_batch_max.compare_exchange_weak(prev, size,
                                                    std::memory_order_relaxed))
      ;
  }

  void record_answer(request_kind kind, errc result) {
    auto code = static_cast<size_t>(result);
    if (code < 32)
      answers[static_cast<size_t>(kind)][code].fetch_add(
        1, std::memory_order_relaxed);
  }

  /// Every counter as (name, value), sorted by name.
  std::vector<std::pair<std::string, int64_t>> snapshot() const;
};

} // namespace hb
