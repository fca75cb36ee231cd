#include "store/activation_batcher.hpp"

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <vector>

#include "caf/all.hpp"

#include "store/batch_queue.hpp"
#include "runtime/errors.hpp"
#include "runtime/log.hpp"

namespace hb {

namespace {

using snapshot_promise = caf::typed_response_promise<envelope_snapshot>;

struct pending_activation {
  int64_t id;
  snapshot_promise promise;
};

struct batcher_state {
  envelope_store store;
  /// How long a store call may take to answer (reply_timeout_ms, below the
  /// envelope actor's own wait): an answer that does not come by then frees
  /// the slot and fails the activations (retryable).
  std::chrono::milliseconds timeout{30000};
  batch_queue<pending_activation> waiting;
  static inline const char* name = "hb.activation_batcher";
};

using batcher_pointer = activation_sink::stateful_pointer<batcher_state>;

/// One activation on its own; its answer, value or error, is the caller's.
/// `then` runs once the store answered (or the request timed out).
template <class Then>
void activate_alone(batcher_pointer self, pending_activation p, Then then) {
  auto waiting = std::make_shared<pending_activation>(std::move(p));
  self->request(self->state.store, self->state.timeout,
                db_activate_atom::value, waiting->id)
    .then(
      [=](envelope_snapshot& snap) {
        waiting->promise.deliver(snap);
        then();
      },
      [=](caf::error& err) {
        waiting->promise.deliver(err);
        then();
      });
}

void activate_alone(batcher_pointer self, pending_activation p) {
  activate_alone(self, std::move(p), [] {});
}

/// The next batch: distinct ids in arrival order; a repeated id stays
/// queued, in its place, for a later batch.
std::vector<pending_activation> take_batch(batcher_state& st) {
  return st.waiting.take([](const pending_activation& p) { return p.id; },
                         [](const pending_activation&) { return false; });
}

/// A batch as one transaction; what it did not bump, and all of it when it
/// failed, is activated alone.
void activate_many(batcher_pointer self, std::vector<pending_activation> batch,
                   std::function<void()> done) {
  auto sent = std::make_shared<std::vector<pending_activation>>(
    std::move(batch));
  std::vector<int64_t> ids;
  for (auto& p : *sent)
    ids.push_back(p.id);
  self->request(self->state.store, self->state.timeout,
                db_activate_many_atom::value, std::move(ids))
    .then(
      [=](std::vector<envelope_snapshot>& snaps) {
        std::map<int64_t, envelope_snapshot*> by_id;
        for (auto& s : snaps)
          by_id[s.env.id] = &s;
        auto alone = settle(
          *sent,
          [&](pending_activation& p) { return by_id.count(p.id) > 0; },
          [&](pending_activation& p) { p.promise.deliver(*by_id[p.id]); },
          [=](pending_activation& p) { activate_alone(self, std::move(p)); });
        actors_log().debug("activation_batch envelopes={} bumped={}"
                           " alone={}",
                           sent->size(), snaps.size(), alone);
        done();
      },
      [=](caf::error& err) {
        // The batch may or may not have committed: an activation alone
        // bumps again and reads afresh, which is right either way.
        actors_log().info("activation_batch_failed envelopes={} error={}",
                          sent->size(), to_failure(err).message);
        for (auto& p : *sent)
          activate_alone(self, std::move(p));
        done();
      });
}

void flush(batcher_pointer self) {
  self->state.waiting.send(
    [=] { return take_batch(self->state); },
    [=](pending_activation item, std::function<void()> done) {
      activate_alone(self, std::move(item), std::move(done));
    },
    [=](std::vector<pending_activation> batch, std::function<void()> done) {
      activate_many(self, std::move(batch), std::move(done));
    });
}

activation_sink::behavior_type batcher_impl(batcher_pointer self,
                                            envelope_store store,
                                            activation_batcher_settings cfg) {
  self->state.timeout = std::chrono::milliseconds(cfg.reply_timeout_ms);
  self->state.waiting.inflight_max = std::max<uint32_t>(1, cfg.inflight_max);
  self->state.waiting.batch_max = std::max<uint32_t>(1, cfg.batch_max);
  self->state.store = std::move(store);
  return {
    [=](db_activate_atom, int64_t id) -> caf::result<envelope_snapshot> {
      auto rp = self->make_response_promise<envelope_snapshot>();
      self->state.waiting.queue.push_back(pending_activation{id, rp});
      flush(self);
      return rp;
    },
  };
}

} // namespace

activation_sink spawn_activation_batcher(caf::actor_system& sys,
                                         envelope_store store,
                                         const activation_batcher_settings& cfg) {
  return sys.spawn(batcher_impl, std::move(store), cfg);
}

} // namespace hb
