#include "store/commit_batcher.hpp"

#include <chrono>
#include <deque>

#include "caf/all.hpp"

#include "runtime/errors.hpp"
#include "runtime/log.hpp"

namespace hb {

namespace {

struct pending_commit {
  open_batch batch;
  caf::typed_response_promise<caf::ok_atom> promise;
};

struct batcher_state {
  commit_batcher_settings cfg;
  envelope_store store;
  std::deque<pending_commit> queue;
  uint32_t inflight = 0;
  static inline const char* name = "hb.commit_batcher";
};

using batcher_pointer = commit_sink::stateful_pointer<batcher_state>;

void flush(batcher_pointer self);

void answer(std::vector<pending_commit>& sent, const std::vector<int32_t>& codes) {
  for (size_t i = 0; i < sent.size(); ++i) {
    auto code = i < codes.size() ? static_cast<errc>(codes[i]) : errc::internal;
    if (code == errc::none)
      sent[i].promise.deliver(caf::ok_atom::value);
    else
      sent[i].promise.deliver(
        make_error(code, std::string{"commit refused: "} + to_string(code)));
  }
}

void flush(batcher_pointer self) {
  auto& st = self->state;
  while (st.inflight < st.cfg.inflight_max && !st.queue.empty()) {
    auto sent = std::make_shared<std::vector<pending_commit>>();
    std::vector<open_batch> batches;
    while (!st.queue.empty() && batches.size() < st.cfg.batch_max) {
      // The batch goes to the store; only its promise waits for the answer.
      batches.push_back(std::move(st.queue.front().batch));
      sent->push_back(std::move(st.queue.front()));
      st.queue.pop_front();
    }
    ++st.inflight;
    // The store answers within its call deadline; this bound is for a
    // reply that never comes. Either way the envelopes of the batch fail
    // their waiters at once (retryable) and reload from the database.
    self->request(st.store, std::chrono::milliseconds(st.cfg.reply_timeout_ms),
                  db_commit_many_atom::value,
                  std::move(batches))
      .then(
        [=](std::vector<int32_t>& codes) {
          answer(*sent, codes);
          --self->state.inflight;
          flush(self);
        },
        [=](caf::error& err) {
          for (auto& p : *sent)
            p.promise.deliver(err);
          --self->state.inflight;
          flush(self);
        });
  }
}

commit_sink::behavior_type batcher_impl(batcher_pointer self, envelope_store store,
                                        commit_batcher_settings cfg) {
  self->state.cfg = std::move(cfg);
  self->state.store = std::move(store);
  return {
    [=](db_commit_atom, open_batch& batch) -> caf::result<caf::ok_atom> {
      auto& st = self->state;
      if (st.queue.size() >= st.cfg.queue_max)
        return make_error(errc::busy, "the database is backed up; retry");
      auto rp = self->make_response_promise<caf::ok_atom>();
      st.queue.push_back(pending_commit{std::move(batch), rp});
      flush(self);
      return rp;
    },
  };
}

} // namespace

commit_sink spawn_commit_batcher(caf::actor_system& sys, envelope_store store,
                                 const commit_batcher_settings& cfg) {
  return sys.spawn(batcher_impl, std::move(store), cfg);
}

} // namespace hb
