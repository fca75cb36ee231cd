#include "store/worker_pool.hpp"

#include <chrono>
#include <limits>
#include <mutex>
#include <unordered_map>

#include "caf/actor_pool.hpp"
#include "caf/all.hpp"

namespace hb {

namespace {

// The gauges by worker: the pool's worker list can shrink (a worker that
// dies is dropped), so positions are not stable, ids are.
struct pool_gauges {
  std::mutex mtx;
  std::unordered_map<caf::actor_id, std::shared_ptr<worker_gauge>> by_id;
  std::atomic<size_t> cursor{0};
  int64_t stuck_after_ms = 0;

  std::shared_ptr<worker_gauge> of(const caf::actor& a) {
    std::lock_guard<std::mutex> guard{mtx};
    auto it = by_id.find(a->id());
    return it == by_id.end() ? nullptr : it->second;
  }
};

worker_view view_of(const worker_gauge* g, int64_t now) {
  worker_view v;
  if (g == nullptr)
    return v;
  v.queued = g->queued.load(std::memory_order_relaxed);
  auto started = g->call_started_ms.load(std::memory_order_relaxed);
  v.busy_ms = started == 0 ? 0 : std::max<int64_t>(1, now - started);
  auto retry_at = g->retry_at_ms.load(std::memory_order_relaxed);
  v.connected = retry_at == 0;
  v.retry_due = retry_at != 0 && now >= retry_at;
  return v;
}

} // namespace

int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
           std::chrono::steady_clock::now().time_since_epoch())
    .count();
}

size_t choose_worker(const std::vector<worker_view>& ws, size_t start,
                     int64_t stuck_after_ms) {
  auto n = ws.size();
  auto idle = [](const worker_view& w) { return w.queued == 0 && w.busy_ms == 0; };
  auto stuck = [&](const worker_view& w) { return w.busy_ms >= stuck_after_ms; };
  // The first worker from `start` that `ok` accepts with the fewest queued.
  auto least = [&](auto ok) {
    size_t best = n;
    for (size_t k = 0; k < n; ++k) {
      auto i = (start + k) % n;
      if (ok(ws[i]) && (best == n || ws[i].queued < ws[best].queued))
        best = i;
    }
    return best;
  };
  auto i = least([&](const worker_view& w) { return w.connected && idle(w); });
  if (i == n)
    i = least([&](const worker_view& w) { return w.retry_due && idle(w); });
  if (i == n)
    i = least([&](const worker_view& w) { return w.connected && !stuck(w); });
  if (i == n)
    i = least([](const worker_view&) { return true; });
  return i;
}

caf::actor make_worker_pool(
  caf::actor_system& sys, size_t n,
  std::function<caf::actor(std::shared_ptr<worker_gauge>)> spawn,
  int64_t stuck_after_ms) {
  auto gauges = std::make_shared<pool_gauges>();
  gauges->stuck_after_ms = stuck_after_ms;
  auto factory = [gauges, spawn] {
    auto g = std::make_shared<worker_gauge>();
    auto a = spawn(g);
    std::lock_guard<std::mutex> guard{gauges->mtx};
    gauges->by_id.emplace(a->id(), std::move(g));
    return a;
  };
  auto policy = [gauges](caf::actor_system&, caf::actor_pool::uplock& guard,
                         const caf::actor_pool::actor_vec& workers,
                         caf::mailbox_element_ptr& ptr,
                         caf::execution_unit* host) {
    auto now = steady_ms();
    std::vector<worker_view> views;
    std::vector<std::shared_ptr<worker_gauge>> gs;
    views.reserve(workers.size());
    gs.reserve(workers.size());
    for (auto& w : workers) {
      gs.push_back(gauges->of(w));
      views.push_back(view_of(gs.back().get(), now));
    }
    auto start = gauges->cursor.fetch_add(1, std::memory_order_relaxed);
    auto i = choose_worker(views, start % workers.size(),
                           gauges->stuck_after_ms);
    if (gs[i])
      gs[i]->queued.fetch_add(1, std::memory_order_relaxed);
    auto selected = workers[i];
    guard.unlock();
    selected->enqueue(std::move(ptr), host);
  };
  return caf::actor_pool::make(sys.dummy_execution_unit(), n, factory, policy);
}

} // namespace hb
