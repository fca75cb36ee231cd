#include "store/create_batcher.hpp"

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "caf/all.hpp"

#include "store/batch_queue.hpp"
#include "runtime/errors.hpp"
#include "runtime/log.hpp"

namespace hb {

namespace {

// As the router's own wait for the create.

using create_promise = caf::typed_response_promise<envelope, bool>;

struct pending_create {
  envelope env;
  create_promise promise;
};

struct batcher_state {
  envelope_store store;
  /// How long a store call may take to answer (reply_timeout_ms).
  std::chrono::milliseconds timeout{30000};
  batch_queue<pending_create> waiting;
  static inline const char* name = "hb.create_batcher";
};

using batcher_pointer = create_sink::stateful_pointer<batcher_state>;

/// One create on its own; its answer, value or error, is the caller's.
/// `then` runs once the store answered (or the request timed out).
template <class Then>
void create_alone(batcher_pointer self, pending_create item, Then then) {
  auto waiting = std::make_shared<pending_create>(std::move(item));
  self->request(self->state.store, self->state.timeout, db_create_atom::value,
                waiting->env)
    .then(
      [=](envelope& stored, bool created) {
        waiting->promise.deliver(std::move(stored), created);
        then();
      },
      [=](caf::error& err) {
        waiting->promise.deliver(err);
        then();
      });
}

void create_alone(batcher_pointer self, pending_create item) {
  create_alone(self, std::move(item), [] {});
}

/// The next batch: creates of distinct (sender, key) in arrival order.
std::vector<pending_create> take_batch(batcher_state& st) {
  return st.waiting.take(
    [](const pending_create& x) {
      return std::make_pair(x.env.sender, x.env.idempotency_key);
    },
    [](const pending_create&) { return false; });
}

/// A batch as one statement; what it did not store, and all of it when it
/// failed, is created alone.
void create_many(batcher_pointer self, std::vector<pending_create> batch,
                 std::function<void()> done) {
  auto sent = std::make_shared<std::vector<pending_create>>(std::move(batch));
  std::vector<envelope> envs;
  for (auto& item : *sent)
    envs.push_back(item.env);
  self->request(self->state.store, self->state.timeout, db_create_many_atom::value,
                std::move(envs))
    .then(
      [=](std::vector<envelope>& stored) {
        std::map<int64_t, envelope*> by_id;
        for (auto& e : stored)
          by_id[e.id] = &e;
        auto alone = settle(
          *sent,
          [&](pending_create& x) { return by_id.count(x.env.id) > 0; },
          [&](pending_create& x) {
            x.promise.deliver(std::move(*by_id[x.env.id]), true);
          },
          [=](pending_create& x) { create_alone(self, std::move(x)); });
        actors_log().debug("create_batch envelopes={} created={} alone={}",
                           sent->size(), stored.size(), alone);
        done();
      },
      [=](caf::error& err) {
        // Nothing of a failed statement is stored: alone, each create is
        // tried afresh and answered (and reported) on its own.
        actors_log().info("create_batch_failed envelopes={} error={}",
                          sent->size(), to_failure(err).message);
        for (auto& item : *sent)
          create_alone(self, std::move(item));
        done();
      });
}

void flush(batcher_pointer self) {
  self->state.waiting.send(
    [=] { return take_batch(self->state); },
    [=](pending_create item, std::function<void()> done) {
      create_alone(self, std::move(item), std::move(done));
    },
    [=](std::vector<pending_create> batch, std::function<void()> done) {
      create_many(self, std::move(batch), std::move(done));
    });
}

create_sink::behavior_type batcher_impl(batcher_pointer self,
                                        envelope_store store,
                                        create_batcher_settings cfg) {
  self->state.timeout = std::chrono::milliseconds(cfg.reply_timeout_ms);
  self->state.waiting.inflight_max = std::max<uint32_t>(1, cfg.inflight_max);
  self->state.waiting.batch_max = std::max<uint32_t>(1, cfg.batch_max);
  self->state.store = std::move(store);
  return {
    [=](db_create_atom, envelope& env) -> caf::result<envelope, bool> {
      auto rp = self->make_response_promise<envelope, bool>();
      self->state.waiting.queue.push_back(pending_create{std::move(env), rp});
      flush(self);
      return rp;
    },
  };
}

} // namespace

create_sink spawn_create_batcher(caf::actor_system& sys, envelope_store store,
                                 const create_batcher_settings& cfg) {
  return sys.spawn(batcher_impl, std::move(store), cfg);
}

} // namespace hb
