#include "store/pay_batcher.hpp"

#include <algorithm>
#include <chrono>
#include <memory>
#include <set>
#include <vector>

#include "caf/all.hpp"

#include "store/batch_queue.hpp"
#include "runtime/errors.hpp"
#include "runtime/log.hpp"

namespace hb {

namespace {

// As the envelope actor's own wait for its payment: an answer that does not
// come by then frees the slot, and the envelope actor has given up.

using ok_promise = caf::typed_response_promise<caf::ok_atom>;

struct pending_payment {
  payment p;
  ok_promise promise;
};

struct batcher_state {
  envelope_store store;
  /// How long a store call may take to answer (reply_timeout_ms).
  std::chrono::milliseconds timeout{30000};
  batch_queue<pending_payment> waiting;
  static inline const char* name = "hb.pay_batcher";
};

using batcher_pointer = payment_sink::stateful_pointer<batcher_state>;

/// One payment on its own; its answer, value or error, is the caller's.
/// `then` runs once the store answered (or the request timed out).
template <class Then>
void pay_alone(batcher_pointer self, pending_payment item, Then then) {
  auto waiting = std::make_shared<pending_payment>(std::move(item));
  self->request(self->state.store, self->state.timeout, db_pay_atom::value, waiting->p)
    .then(
      [=](caf::ok_atom ok) {
        waiting->promise.deliver(ok);
        then();
      },
      [=](caf::error& err) {
        waiting->promise.deliver(err);
        then();
      });
}

void pay_alone(batcher_pointer self, pending_payment item) {
  pay_alone(self, std::move(item), [] {});
}

/// The next batch: a payment from a wallet alone; else external payments
/// of distinct envelopes in arrival order.
std::vector<pending_payment> take_batch(batcher_state& st) {
  return st.waiting.take(
    [](const pending_payment& x) { return x.p.envelope_id; },
    [](const pending_payment& x) { return x.p.from_wallet; });
}

/// A batch as one statement; what it did not confirm, and all of it when
/// it failed, goes alone.
void pay_many(batcher_pointer self, std::vector<pending_payment> batch,
              std::function<void()> done) {
  auto sent = std::make_shared<std::vector<pending_payment>>(std::move(batch));
  std::vector<payment> ps;
  for (auto& item : *sent)
    ps.push_back(item.p);
  self->request(self->state.store, self->state.timeout, db_pay_many_atom::value,
                std::move(ps))
    .then(
      [=](std::vector<int64_t>& paid) {
        std::set<int64_t> ok(paid.begin(), paid.end());
        auto alone = settle(
          *sent,
          [&](pending_payment& x) { return ok.count(x.p.envelope_id) > 0; },
          [](pending_payment& x) { x.promise.deliver(caf::ok_atom::value); },
          [=](pending_payment& x) { pay_alone(self, std::move(x)); });
        actors_log().debug("pay_batch payments={} paid={} alone={}",
                           sent->size(), paid.size(), alone);
        done();
      },
      [=](caf::error& err) {
        // Nothing of a failed batch changed (one statement): alone, each
        // payment is confirmed afresh or gets its own refusal.
        actors_log().info("pay_batch_failed payments={} error={}",
                          sent->size(), to_failure(err).message);
        for (auto& item : *sent)
          pay_alone(self, std::move(item));
        done();
      });
}

void flush(batcher_pointer self) {
  self->state.waiting.send(
    [=] { return take_batch(self->state); },
    [=](pending_payment item, std::function<void()> done) {
      pay_alone(self, std::move(item), std::move(done));
    },
    [=](std::vector<pending_payment> batch, std::function<void()> done) {
      pay_many(self, std::move(batch), std::move(done));
    });
}

payment_sink::behavior_type batcher_impl(batcher_pointer self,
                                         envelope_store store,
                                         pay_batcher_settings cfg) {
  self->state.timeout = std::chrono::milliseconds(cfg.reply_timeout_ms);
  self->state.waiting.inflight_max = std::max<uint32_t>(1, cfg.inflight_max);
  self->state.waiting.batch_max = std::max<uint32_t>(1, cfg.batch_max);
  self->state.store = std::move(store);
  return {
    [=](db_pay_atom, payment& p) -> caf::result<caf::ok_atom> {
      auto rp = self->make_response_promise<caf::ok_atom>();
      self->state.waiting.queue.push_back(pending_payment{std::move(p), rp});
      flush(self);
      return rp;
    },
  };
}

} // namespace

payment_sink spawn_pay_batcher(caf::actor_system& sys, envelope_store store,
                               const pay_batcher_settings& cfg) {
  return sys.spawn(batcher_impl, std::move(store), cfg);
}

} // namespace hb
