#include "actors/router_actor.hpp"

#include <chrono>

#include "caf/all.hpp"

#include <spdlog/spdlog.h>

#include "actors/log.hpp"

#include "actors/errors.hpp"
#include "domain/envelope_id.hpp"

namespace hb {

namespace {

constexpr auto create_timeout = std::chrono::seconds(10);

struct router_state {
  router_settings cfg;
  registry_actor registry;
  id_allocator_actor ids;
  store_actor store;
  reconciler_actor reconciler;
  uint32_t creates_inflight = 0;
  static inline const char* name = "hb.router";
};

using router_pointer = router_actor::stateful_pointer<router_state>;

envelope new_envelope(const create_request& req, int64_t id, int64_t now_ms) {
  envelope env;
  env.id = id;
  env.sender = req.sender;
  env.group = req.group;
  env.greeting = req.greeting;
  env.idempotency_key = req.idempotency_key;
  env.kind = req.kind;
  env.status = envelope_status::created;
  env.total_fen = req.total_fen;
  env.count = req.count;
  env.remaining_fen = req.total_fen;
  env.remaining_count = req.count;
  env.created_at_ms = now_ms;
  return env;
}

caf::result<envelope> handle_create(router_pointer self, create_request& req) {
  auto& st = self->state;
  auto problem = validate(req, st.cfg.limits);
  if (problem.code != errc::none)
    return make_error(problem);
  if (st.creates_inflight >= st.cfg.creates_inflight_max)
    return make_error(errc::busy, "too many creates in flight; retry");
  ++st.creates_inflight;
  auto rp = self->make_response_promise<envelope>();
  auto finish = [=](auto&& value) mutable {
    --self->state.creates_inflight;
    rp.deliver(std::forward<decltype(value)>(value));
  };
  self->request(st.ids, create_timeout, next_id_atom::value)
    .then(
      [=](int64_t id) mutable {
        auto env = new_envelope(req, id, self->state.cfg.now_ms());
        self->request(self->state.store, create_timeout, db_create_atom::value,
                      std::move(env))
          .then(
            [=](envelope& stored, bool created) mutable {
              if (created)
                actors_log().info("envelope_created envelope={} sender={} "
                             "total_fen={} count={} kind={}",
                             stored.id, stored.sender, stored.total_fen,
                             stored.count, to_string(stored.kind));
              finish(std::move(stored));
            },
            [=](caf::error& err) mutable { finish(std::move(err)); });
      },
      [=](caf::error& err) mutable { finish(std::move(err)); });
  return rp;
}

// Bad input is refused here, before it costs an actor or a query.
caf::error check_text(router_pointer self, const std::string& text,
                      const char* what) {
  auto problem = validate_text_id(text, what,
                                  self->state.cfg.limits.text_size_max);
  if (problem.code != errc::none)
    return make_error(problem);
  return {};
}

router_actor::behavior_type router_impl(router_pointer self,
                                        registry_actor registry,
                                        id_allocator_actor ids,
                                        store_actor store,
                                        reconciler_actor reconciler,
                                        router_settings cfg) {
  auto& st = self->state;
  if (!cfg.now_ms)
    cfg.now_ms = system_now_ms;
  st.cfg = std::move(cfg);
  st.registry = std::move(registry);
  st.ids = std::move(ids);
  st.store = std::move(store);
  st.reconciler = std::move(reconciler);
  return {
    [=](create_atom, create_request& req) { return handle_create(self, req); },
    [=](grab_atom a, int64_t id,
        std::string& user) -> caf::result<grab_result> {
      if (auto err = check_text(self, user, "user"))
        return err;
      return self->delegate(self->state.registry, a, id, std::move(user));
    },
    [=](open_atom a, int64_t id,
        std::string& user) -> caf::result<open_result> {
      if (auto err = check_text(self, user, "user"))
        return err;
      return self->delegate(self->state.registry, a, id, std::move(user));
    },
    [=](pay_atom a, int64_t id, std::string& txn,
        bool from_wallet) -> caf::result<envelope> {
      if (auto err = check_text(self, txn, "payment_txn"))
        return err;
      return self->delegate(self->state.registry, a, id, std::move(txn),
                            from_wallet);
    },
    [=](get_atom a, int64_t id) {
      return self->delegate(self->state.registry, a, id);
    },
    [=](refund_atom a, int64_t id) {
      return self->delegate(self->state.registry, a, id);
    },
    [=](history_atom, history_query& q) -> caf::result<history_page> {
      if (auto err = check_text(self, q.user, "user"))
        return err;
      if (q.limit < 1 || q.limit > 100)
        return make_error(errc::invalid_argument,
                          "limit must be between 1 and 100");
      return self->delegate(self->state.store, db_history_atom::value,
                            std::move(q));
    },
    [=](balance_atom, std::string& user) -> caf::result<balance_info> {
      if (auto err = check_text(self, user, "user"))
        return err;
      return self->delegate(self->state.store, db_balance_atom::value,
                            std::move(user));
    },
    [=](reconcile_atom a, int64_t since_ms) {
      return self->delegate(self->state.reconciler, a, since_ms);
    },
  };
}

} // namespace

router_actor spawn_router(caf::actor_system& sys, registry_actor registry,
                          id_allocator_actor ids, store_actor store,
                          reconciler_actor reconciler,
                          const router_settings& cfg) {
  return sys.spawn(router_impl, std::move(registry), std::move(ids),
                   std::move(store), std::move(reconciler), cfg);
}

} // namespace hb
