#include "sim/sim_workload.hpp"

#include <algorithm>
#include <chrono>

#include "caf/all.hpp"

#include "runtime/errors.hpp"

namespace hb::sim {

namespace {

constexpr int64_t wallet_seed_fen = 15000;

std::string describe(const sim_op& op) {
  std::string out = "op #" + std::to_string(op.id) + " " + to_string(op.kind);
  if (op.envelope_id != 0)
    out += " envelope " + std::to_string(op.envelope_id);
  if (!op.user.empty())
    out += " user " + op.user;
  return out;
}

} // namespace

const char* to_string(op_kind x) {
  switch (x) {
    case op_kind::create: return "create";
    case op_kind::pay: return "pay";
    case op_kind::grab: return "grab";
    case op_kind::open: return "open";
    case op_kind::get: return "get";
    case op_kind::refund: return "refund";
    case op_kind::balance: return "balance";
    case op_kind::history: return "history";
    case op_kind::reconcile: return "reconcile";
  }
  return "?";
}

workload::workload(world& w, sim_node& node) : w_(w), node_(node) {
}

void workload::setup() {
  auto users = std::max<int32_t>(3, static_cast<int32_t>(w_.opt.users
                                                         * w_.opt.scale));
  auto envelopes = std::max<int32_t>(1, static_cast<int32_t>(
                                          w_.opt.envelopes * w_.opt.scale));
  users_.clear();
  for (int32_t i = 0; i < users; ++i) {
    auto name = std::string(i < 10 ? "u0" : "u") + std::to_string(i);
    users_.push_back(name);
    // Some money in every wallet, so that paying from the wallet can work.
    w_.db.deposit(name, wallet_seed_fen, "seed-" + name);
  }
  auto lim = node_.limits();
  for (int32_t i = 0; i < envelopes; ++i) {
    planned_envelope p;
    p.sender = pick_user();
    p.key = "key-" + std::to_string(i);
    p.group = "group-" + std::to_string(i % 3);
    // Mostly small envelopes, some big ones that stay hot for a while.
    p.count = static_cast<int32_t>(
      w_.coin(0.3) ? w_.between(10, lim.count_max) : w_.between(1, 6));
    p.total_fen = w_.between(p.count, p.count * 800);
    p.kind = w_.coin(0.5) ? envelope_kind::random : envelope_kind::equal;
    p.txn = "txn-" + std::to_string(i);
    envs_.push_back(std::move(p));
  }
}

std::string workload::pick_user() {
  return users_[static_cast<size_t>(
    w_.between(0, static_cast<int64_t>(users_.size()) - 1))];
}

int workload::pick_envelope(bool want_paid) {
  std::vector<int> known;
  std::vector<int> paid;
  for (size_t i = 0; i < envs_.size(); ++i) {
    if (envs_[i].id == 0)
      continue;
    known.push_back(static_cast<int>(i));
    auto it = w_.db.envelopes.find(envs_[i].id);
    if (it != w_.db.envelopes.end()
        && it->second.status != envelope_status::created)
      paid.push_back(static_cast<int>(i));
  }
  auto& from = want_paid && !paid.empty() && w_.coin(0.85) ? paid : known;
  if (from.empty())
    return -1;
  return from[static_cast<size_t>(
    w_.between(0, static_cast<int64_t>(from.size()) - 1))];
}

// Half the grabs and opens go to one hot envelope (the oldest paid one
// with shares left), so that opens queue up, batch and contend.
void workload::pick_hot(sim_op& op) {
  if (w_.coin(0.5))
    force_hot(op);
}

void workload::force_hot(sim_op& op) {
  for (size_t i = 0; i < envs_.size(); ++i) {
    if (envs_[i].id == 0)
      continue;
    auto it = w_.db.envelopes.find(envs_[i].id);
    if (it != w_.db.envelopes.end()
        && it->second.status == envelope_status::paid) {
      op.env = static_cast<int>(i);
      op.envelope_id = envs_[i].id;
      return;
    }
  }
}

uint64_t workload::new_op() {
  sim_op op;
  op.id = ops_.size();
  op.created_sim_ms = w_.sim_ms();
  int target = pick_envelope(true);
  if (target < 0) {
    // Nothing created yet: ask again for one already requested (a client
    // retrying a create whose answer it never saw).
    op.kind = op_kind::create;
    op.env = static_cast<int>(
      w_.between(0, static_cast<int64_t>(envs_.size()) - 1));
  } else {
    op.env = target;
    op.envelope_id = envs_[target].id;
    auto r = w_.uniform();
    if (r < 0.04) {
      op.kind = op_kind::create;  // the same key again: the same envelope
    } else if (r < 0.18) {
      op.kind = op_kind::pay;
      op.env = pick_envelope(false);
      op.envelope_id = envs_[op.env].id;
      op.txn = w_.coin(0.9) ? envs_[op.env].txn
                            : "txn-other-" + std::to_string(op.id);
      op.from_wallet = w_.coin(0.25);
    } else if (r < 0.36) {
      op.kind = op_kind::grab;
      op.user = pick_user();
      pick_hot(op);
    } else if (r < 0.78) {
      op.kind = op_kind::open;
      op.user = pick_user();
      pick_hot(op);
    } else if (r < 0.86) {
      op.kind = op_kind::get;
    } else if (r < 0.89) {
      op.kind = op_kind::refund;
    } else if (r < 0.95) {
      op.kind = op_kind::balance;
      op.user = pick_user();
    } else {
      op.kind = op_kind::history;
      op.user = pick_user();
      op.history = w_.coin(0.5) ? history_kind::sent : history_kind::received;
    }
  }
  if (op.kind == op_kind::create)
    op.envelope_id = envs_[op.env].id;
  ops_.push_back(std::move(op));
  return ops_.back().id;
}

uint64_t workload::new_create_op() {
  int unrequested = -1;
  for (size_t i = 0; i < envs_.size() && unrequested < 0; ++i)
    if (!envs_[i].requested)
      unrequested = static_cast<int>(i);
  if (unrequested < 0)
    return new_op();
  sim_op op;
  op.id = ops_.size();
  op.created_sim_ms = w_.sim_ms();
  op.kind = op_kind::create;
  op.env = unrequested;
  envs_[unrequested].requested = true;
  ops_.push_back(std::move(op));
  return ops_.back().id;
}

uint64_t workload::new_storm_op() {
  sim_op op;
  op.id = ops_.size();
  op.created_sim_ms = w_.sim_ms();
  op.kind = op_kind::open;
  op.user = pick_user();
  auto target = pick_envelope(true);
  if (target < 0)
    return new_op();
  op.env = target;
  op.envelope_id = envs_[target].id;
  ops_.push_back(std::move(op));
  auto& added = ops_.back();
  force_hot(added);
  return added.id;
}

uint64_t workload::new_reconcile_op() {
  sim_op op;
  op.id = ops_.size();
  op.kind = op_kind::reconcile;
  op.created_sim_ms = w_.sim_ms();
  ops_.push_back(std::move(op));
  return ops_.back().id;
}

void workload::issue(caf::event_based_actor* self, uint64_t id) {
  auto& op = ops_[id];
  if (op.final)
    return;
  send(self, op);
  if (op.kind != op_kind::reconcile && w_.maybe(fault::duplicate_request))
    send(self, op);
}

void workload::send(caf::event_based_actor* self, sim_op& op) {
  ++op.attempts;
  ++op.inflight;
  auto id = op.id;
  auto router = node_.router();
  auto timeout = std::chrono::milliseconds(client_timeout_ms);
  auto err = [this, self, id](caf::error& e) { on_error(self, id, e); };
  auto ok = [this, id]() -> sim_op& {
    auto& op = ops_[id];
    --op.inflight;
    ++answers_ok;
    return op;
  };
  switch (op.kind) {
    case op_kind::create: {
      auto& p = envs_[op.env];
      create_request req;
      req.sender = p.sender;
      req.group = p.group;
      req.total_fen = p.total_fen;
      req.count = p.count;
      req.kind = p.kind;
      req.greeting = "恭喜发财";
      req.idempotency_key = p.key;
      self->request(router, timeout, create_atom::value, std::move(req))
        .then(
          [=](envelope& e) {
            auto& op = ok();
            check_create(op, e);
            finish(op, "created " + std::to_string(e.id));
          },
          err);
      break;
    }
    case op_kind::pay:
      self->request(router, timeout, pay_atom::value, op.envelope_id, op.txn,
                    op.from_wallet)
        .then(
          [=](envelope& e) {
            auto& op = ok();
            check_pay(op, e);
            finish(op, "paid");
          },
          err);
      break;
    case op_kind::grab:
      self->request(router, timeout, grab_atom::value, op.envelope_id, op.user)
        .then(
          [=](grab_result& r) {
            auto& op = ok();
            check_grab(op, r);
            finish(op, std::string("grab ") + to_string(r.outcome));
          },
          err);
      break;
    case op_kind::open:
      self->request(router, timeout, open_atom::value, op.envelope_id, op.user,
                    int64_t{0})
        .then(
          [=](open_result& r) {
            auto& op = ok();
            ++opens_ok;
            check_open(op, r);
            finish(op, "got " + std::to_string(r.amount_fen));
          },
          err);
      break;
    case op_kind::get:
      self->request(router, timeout, get_atom::value, op.envelope_id)
        .then(
          [=](envelope_detail& d) {
            auto& op = ok();
            check_get(op, d);
            finish(op, "detail");
          },
          err);
      break;
    case op_kind::refund:
      self->request(router, timeout, refund_atom::value, op.envelope_id)
        .then(
          [=](int64_t amount) {
            auto& op = ok();
            check_refund(op, amount);
            finish(op, "refunded " + std::to_string(amount));
          },
          err);
      break;
    case op_kind::balance:
      self->request(router, timeout, balance_atom::value, op.user)
        .then(
          [=](balance_info& b) {
            auto& op = ok();
            if (b.user != op.user || b.balance_fen < 0)
              w_.violate(describe(op) + ": balance answer "
                         + std::to_string(b.balance_fen) + " for " + b.user);
            finish(op, "balance");
          },
          err);
      break;
    case op_kind::history: {
      history_query q;
      q.user = op.user;
      q.kind = op.history;
      q.limit = 5;
      self->request(router, timeout, history_atom::value, std::move(q))
        .then(
          [=](history_page& page) {
            auto& op = ok();
            if (page.items.size() > 5)
              w_.violate(describe(op) + ": history page over its limit");
            finish(op, "history");
          },
          err);
      break;
    }
    case op_kind::reconcile:
      self->request(router, timeout * 6, reconcile_atom::value, int64_t{0})
        .then(
          [=](reconcile_report& r) {
            auto& op = ok();
            for (auto& d : r.discrepancies) {
              w_.violate("final reconciliation: " + d.kind + " envelope "
                         + std::to_string(d.envelope_id) + " " + d.user + ": "
                         + d.detail);
              break;
            }
            if (r.relay_pending != 0)
              w_.violate("final reconciliation: "
                         + std::to_string(r.relay_pending)
                         + " opens still wait for the relay");
            finish(op, "reconciled");
          },
          err);
      break;
  }
}

void workload::on_error(caf::event_based_actor* self, uint64_t id,
                        const caf::error& err) {
  auto& op = ops_[id];
  --op.inflight;
  ++answers_error;
  auto f = to_failure(err);
  auto answer = std::string(to_string(f.code)) + ": " + f.message;
  if (f.code == errc::shares_pending)
    ++pending_answers;
  if (!retryable(f.code)) {
    check_error(op, f.code, f.message);
    finish(op, answer);
    return;
  }
  if (!op.final)
    op.last = answer;
  // One retry at a time: a duplicate still in flight retries on its own.
  if (op.final || op.inflight > 0)
    return;
  bool again = w_.faults_on ? w_.maybe(fault::client_retry) : true;
  if (!again)
    return;  // the client gave up for now; healing asks again
  auto shift = std::min<uint32_t>(op.attempts, 5);
  auto backoff = std::min<int64_t>(5000, int64_t{100} << shift)
                 + w_.between(0, 100);
  self->delayed_send(self, std::chrono::milliseconds(backoff),
                     sim_go_atom::value, id);
}

void workload::finish(sim_op& op, std::string answer) {
  if (op.final)
    return;
  op.final = true;
  op.last = std::move(answer);
}

void workload::heal(const std::vector<caf::actor>& clients) {
  size_t next = 0;
  for (auto& op : ops_)
    if (!op.final && op.inflight == 0)
      caf::anon_send(clients[next++ % clients.size()], sim_go_atom::value,
                     op.id);
}

bool workload::all_final() const {
  return first_open_op() == nullptr;
}

const sim_op* workload::first_open_op() const {
  for (auto& op : ops_)
    if (!op.final)
      return &op;
  return nullptr;
}

// -- checks of the answers ------------------------------------------------------

void workload::check_create(sim_op& op, const envelope& e) {
  auto& p = envs_[op.env];
  if (p.id == 0)
    p.id = e.id;
  else if (p.id != e.id)
    w_.violate(describe(op) + ": key " + p.key + " answered envelope "
               + std::to_string(e.id) + " after "
               + std::to_string(p.id));
  auto it = w_.db.envelopes.find(e.id);
  if (it == w_.db.envelopes.end()) {
    w_.violate(describe(op) + ": created envelope " + std::to_string(e.id)
               + " is not in the database");
    return;
  }
  auto& stored = it->second;
  if (stored.sender != p.sender || stored.idempotency_key != p.key
      || stored.total_fen != p.total_fen || stored.count != p.count)
    w_.violate(describe(op) + ": the stored envelope differs from the request");
}

void workload::check_pay(sim_op& op, const envelope& e) {
  auto it = w_.db.envelopes.find(op.envelope_id);
  if (it == w_.db.envelopes.end()
      || it->second.status == envelope_status::created
      || it->second.payment_txn != op.txn || e.payment_txn != op.txn)
    w_.violate(describe(op) + ": answered paid with " + op.txn
               + " but the database does not say so");
}

void workload::check_open(sim_op& op, const open_result& r) {
  if (r.amount_fen < 1)
    w_.violate(describe(op) + ": share below 1 fen");
  auto stored = w_.db.find_open(op.envelope_id, op.user);
  if (stored == nullptr || stored->rec.amount_fen != r.amount_fen
      || stored->rec.seq != r.seq) {
    w_.violate(describe(op) + ": answered \"you got "
               + std::to_string(r.amount_fen) + " fen (share "
               + std::to_string(r.seq) + ")\" but the database "
               + (stored == nullptr
                    ? std::string("has no such open")
                    : "has " + std::to_string(stored->rec.amount_fen)
                        + " fen (share " + std::to_string(stored->rec.seq)
                        + ")"));
    return;
  }
  auto key = std::make_pair(op.envelope_id, op.user);
  auto prev = got_.find(key);
  if (prev == got_.end())
    got_.emplace(key, std::make_pair(r.amount_fen, r.seq));
  else if (prev->second != std::make_pair(r.amount_fen, r.seq))
    w_.violate(describe(op) + ": two different shares answered");
  auto env = w_.db.envelopes.find(op.envelope_id);
  if (env != w_.db.envelopes.end() && env->second.count != r.count)
    w_.violate(describe(op) + ": open answer with the wrong count");
}

// 手慢了 is final: the user is turned away for good. It is true only when
// the database holds every share already; while the last shares are only
// reserved by a write in flight (or queued for the next), that write may
// fail and they go back to the sender or to other users (SHARES_PENDING,
// retryable, is the answer then).
void workload::check_exhausted(sim_op& op, const char* how) {
  auto it = w_.db.envelopes.find(op.envelope_id);
  if (it == w_.db.envelopes.end() || it->second.remaining_count <= 0)
    return;
  auto& e = it->second;
  w_.violate(describe(op) + ": told 手慢了 (" + how + ") while the database "
             "still holds " + std::to_string(e.remaining_count) + " of "
             + std::to_string(e.count) + " shares (status "
             + to_string(e.status) + "): they were only reserved by a write "
             "that may still fail");
}

void workload::check_grab(sim_op& op, const grab_result& r) {
  if (r.outcome == grab_outcome::exhausted)
    check_exhausted(op, "grab");
  if (r.outcome != grab_outcome::already_opened)
    return;
  auto stored = w_.db.find_open(op.envelope_id, op.user);
  if (stored == nullptr || stored->rec.amount_fen != r.amount_fen)
    w_.violate(describe(op) + ": grab says already opened with "
               + std::to_string(r.amount_fen)
               + " fen, which the database does not hold");
}

void workload::check_get(sim_op& op, const envelope_detail& d) {
  auto it = w_.db.envelopes.find(op.envelope_id);
  if (d.env.id != op.envelope_id || it == w_.db.envelopes.end()) {
    w_.violate(describe(op) + ": detail of another or a missing envelope");
    return;
  }
  if (d.env.total_fen != it->second.total_fen)
    w_.violate(describe(op) + ": detail with the wrong total");
  for (auto& o : d.opens) {
    auto stored = w_.db.find_open(op.envelope_id, o.user);
    if (stored == nullptr || stored->rec.amount_fen != o.amount_fen
        || stored->rec.seq != o.seq)
      w_.violate(describe(op) + ": detail shows a share of "
                 + std::to_string(o.amount_fen) + " fen for " + o.user
                 + " that the database does not hold");
  }
}

void workload::check_refund(sim_op& op, int64_t amount) {
  if (amount == 0)
    return;
  auto it = w_.db.envelopes.find(op.envelope_id);
  if (it == w_.db.envelopes.end()
      || it->second.status != envelope_status::refunded
      || it->second.refunded_fen != amount)
    w_.violate(describe(op) + ": answered refunded "
               + std::to_string(amount)
               + " fen, which the database does not say");
}

void workload::check_error(sim_op& op, errc code, const std::string& message) {
  auto what = describe(op) + ": " + to_string(code) + " (" + message + ")";
  if (code == errc::exhausted && op.kind == op_kind::open) {
    exhausted_answers_[op.envelope_id].insert(op.user);
    check_exhausted(op, "open");
  }
  switch (code) {
    case errc::internal:
      w_.violate(what + ": an internal error reached a client");
      break;
    case errc::invalid_argument:
    case errc::limit_exceeded:
    case errc::conflict:
      w_.violate(what + ": a valid request was refused");
      break;
    case errc::not_found:
      if (op.envelope_id != 0 && w_.db.envelopes.count(op.envelope_id) > 0)
        w_.violate(what + ": the envelope exists");
      break;
    case errc::payment_mismatch: {
      auto it = w_.db.envelopes.find(op.envelope_id);
      bool other = it != w_.db.envelopes.end()
                   && it->second.status != envelope_status::created
                   && it->second.payment_txn != op.txn;
      if (!other)
        w_.violate(what + ": but no other txn paid the envelope");
      break;
    }
    default:
      break;
  }
}

uint64_t workload::false_exhausted() {
  uint64_t n = 0;
  for (auto& kv : exhausted_answers_) {
    auto it = w_.db.envelopes.find(kv.first);
    if (it == w_.db.envelopes.end()
        || it->second.status != envelope_status::refunded)
      continue;
    auto opened = w_.db.open_records(kv.first).size();
    if (static_cast<int32_t>(opened) >= it->second.count)
      continue;
    // Told 手慢了, yet shares went back to the sender unopened.
    for (auto& user : kv.second)
      if (w_.db.find_open(kv.first, user) == nullptr) {
        if (n == 0)
          w_.note("told " + user + " 手慢了 on envelope "
                  + std::to_string(kv.first) + ", refunded later with "
                  + std::to_string(it->second.count - opened)
                  + " shares unopened");
        ++n;
      }
  }
  return n;
}

void workload::recheck_promises() {
  for (auto& kv : got_) {
    auto stored = w_.db.find_open(kv.first.first, kv.first.second);
    if (stored == nullptr || stored->rec.amount_fen != kv.second.first)
      w_.violate("the answer \"you got " + std::to_string(kv.second.first)
                 + " fen\" to " + kv.first.second + " on envelope "
                 + std::to_string(kv.first.first) + " is no longer durable");
  }
}

caf::actor spawn_client(caf::actor_system& sys, workload& load) {
  return sys.spawn([&load](caf::event_based_actor* self) -> caf::behavior {
    return {
      [=, &load](sim_go_atom, uint64_t id) { load.issue(self, id); },
    };
  });
}

} // namespace hb::sim
