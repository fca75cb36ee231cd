#include "sim/sim_db.hpp"

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <set>

#include "domain/envelope_id.hpp"
#include "runtime/bugs.hpp"

namespace hb::sim {

namespace {

failure fail(errc code, std::string message) {
  return failure{code, std::move(message)};
}

std::string not_found_message(int64_t id) {
  return "no envelope with id " + std::to_string(id);
}

bool same_content(const envelope& a, const envelope& b) {
  return a.total_fen == b.total_fen && a.count == b.count && a.kind == b.kind
         && a.group == b.group;
}


// The CHECK constraints of the envelopes and opens tables.
std::string check_violation(const envelope& env, const open_batch& b) {
  if (b.remaining_fen < 0 || b.remaining_fen > env.total_fen)
    return "envelopes_remaining_in_range";
  if (b.remaining_count < 0)
    return "envelopes_remaining_count_in_range";
  if (b.status == envelope_status::exhausted
      && (b.remaining_count != 0 || b.remaining_fen != 0))
    return "envelopes_exhausted_empty";
  if (b.status == envelope_status::paid && b.remaining_count == 0)
    return "envelopes_paid_has_shares";
  for (auto& o : b.opens) {
    if (o.amount_fen < 1)
      return "opens_amount_positive";
    if (o.seq < 1)
      return "opens_seq_positive";
  }
  return {};
}

int account_kind(const std::string& id) {
  if (id.rfind("user:", 0) == 0)
    return 1;
  if (id.rfind("escrow:", 0) == 0)
    return 2;
  return 3;
}

bool parse_i64(const std::string& text, int64_t& out) {
  size_t first = !text.empty() && text[0] == '-' ? 1 : 0;
  if (text.size() == first || text.size() > 20
      || text.find_first_not_of("0123456789", first) != std::string::npos)
    return false;
  out = std::strtoll(text.c_str(), nullptr, 10);
  return true;
}

} // namespace

std::string escrow_of(int64_t envelope_id) {
  return escrow_account(segment_of(envelope_id));
}

// -- helpers --------------------------------------------------------------------

bool sim_db::post(const std::string& key, const std::string& kind,
                  const std::string& debit, const std::string& credit,
                  int64_t amount_fen, int64_t envelope_id,
                  const std::string& user) {
  if (ledger_keys.count(key) > 0)
    return false;
  ledger_keys.emplace(key, ledger.size());
  ledger.push_back(ledger_entry{next_ledger_id_++, key, kind, debit, credit,
                                amount_fen, envelope_id, user});
  accounts[debit] -= amount_fen;
  accounts[credit] += amount_fen;
  return true;
}

void sim_db::add_outbox(const std::string& kind, int64_t envelope_id,
                        const std::string& user, int64_t amount_fen,
                        const std::string& key) {
  outbox_keys.emplace(key, outbox.size());
  outbox.push_back(outbox_row{next_outbox_id_++, kind, envelope_id, user,
                              amount_fen, key, false, now_ms()});
}

void sim_db::record_attempt(const char* what, int64_t envelope_id,
                            int64_t carried, int64_t current, const caller& who,
                            bool accepted) {
  ++guarded_writes;
  write_attempt a;
  a.what = what;
  a.envelope_id = envelope_id;
  a.carried_epoch = carried;
  a.current_epoch = current;
  a.sender = who.actor_id;
  auto it = epoch_owner.find({envelope_id, current});
  a.owner = it != epoch_owner.end() ? it->second : 0;
  a.accepted = accepted;
  a.at_ms = now_ms();
  if (!accepted) {
    if (carried != current)
      ++stale_refused;
    return;
  }
  // Accepted: it must carry the current epoch and come from the actor that
  // holds it, the one that activated the envelope last (two owners must
  // never both commit).
  if (carried != current || (a.owner != 0 && a.sender != a.owner))
    stale_accepted.push_back(a);
}

envelope_snapshot sim_db::snapshot(int64_t id) const {
  envelope_snapshot snap;
  snap.env = envelopes.at(id);
  snap.opens = open_records(id);
  return snap;
}

const db_open* sim_db::find_open(int64_t envelope_id,
                                 const std::string& user) const {
  auto it = opens.find(envelope_id);
  if (it == opens.end())
    return nullptr;
  for (auto& o : it->second)
    if (o.rec.user == user)
      return &o;
  return nullptr;
}

std::vector<open_record> sim_db::open_records(int64_t envelope_id) const {
  std::vector<open_record> out;
  auto it = opens.find(envelope_id);
  if (it != opens.end())
    for (auto& o : it->second)
      out.push_back(o.rec);
  return out;
}

int64_t sim_db::balance_of(const std::string& account) const {
  auto it = accounts.find(account);
  return it != accounts.end() ? it->second : 0;
}

std::vector<const ledger_entry*>
sim_db::entries(const std::string& kind, int64_t envelope_id,
                const std::string& user) const {
  std::vector<const ledger_entry*> out;
  for (auto& e : ledger)
    if (e.kind == kind && e.envelope_id == envelope_id
        && (user.empty() || e.user == user))
      out.push_back(&e);
  return out;
}

int64_t sim_db::relay_backlog() const {
  int64_t n = 0;
  for_each_owed([&](int64_t) { ++n; });
  return n;
}

// -- envelope lifecycle ---------------------------------------------------------

outcome<create_outcome> sim_db::create_envelope(const envelope& env) {
  if (env.id <= 0)
    return fail(errc::internal, "create_envelope: envelope id must be > 0");
  auto k = std::make_pair(env.sender, env.idempotency_key);
  auto known = keys.find(k);
  if (known != keys.end()) {
    auto& stored = envelopes.at(known->second);
    if (!same_content(stored, env))
      return fail(errc::conflict,
                  "idempotency key already used for envelope "
                    + std::to_string(stored.id)
                    + " with a different total, count, kind or group");
    return create_outcome{stored, false};
  }
  if (envelopes.count(env.id) > 0) {
    id_collisions.push_back(env.id);
    return fail(errc::internal, "duplicate key value violates unique "
                                "constraint \"envelopes_pkey\"");
  }
  envelope e;
  e.id = env.id;
  e.sender = env.sender;
  e.group = env.group;
  e.greeting = env.greeting;
  e.idempotency_key = env.idempotency_key;
  e.kind = env.kind;
  e.status = envelope_status::created;
  e.total_fen = env.total_fen;
  e.count = env.count;
  e.remaining_fen = env.total_fen;
  e.remaining_count = env.count;
  e.created_at_ms = env.created_at_ms != 0 ? env.created_at_ms : now_ms();
  e.epoch = 0;
  keys.emplace(k, e.id);
  envelopes.emplace(e.id, e);
  return create_outcome{e, true};
}

outcome<std::vector<envelope>>
sim_db::create_envelopes(const std::vector<envelope>& envs) {
  std::vector<const envelope*> take;
  std::set<std::pair<std::string, std::string>> seen;
  std::set<int64_t> ids;
  for (auto& env : envs) {
    auto k = std::make_pair(env.sender, env.idempotency_key);
    if (env.id <= 0 || keys.count(k) > 0 || !seen.insert(k).second)
      continue;
    if (envelopes.count(env.id) > 0 || !ids.insert(env.id).second) {
      id_collisions.push_back(env.id);
      return fail(errc::internal, "duplicate key value violates unique "
                                  "constraint \"envelopes_pkey\"");
    }
    take.push_back(&env);
  }
  std::vector<envelope> out;
  for (auto* env : take) {
    auto res = create_envelope(*env);
    if (!res)
      return fail(errc::internal, "create_envelopes: " + res.error().message);
    out.push_back(res->env);
  }
  return out;
}

outcome<envelope_snapshot> sim_db::activate(int64_t id, const caller& who) {
  auto it = envelopes.find(id);
  if (it == envelopes.end())
    return fail(errc::not_found, not_found_message(id));
  ++it->second.epoch;
  if (who.envelope_actor)
    claim(id, it->second.epoch, who.actor_id);
  return snapshot(id);
}

void sim_db::claim(int64_t envelope_id, int64_t epoch, uint64_t actor) {
  owner[envelope_id] = actor;
  epoch_owner[{envelope_id, epoch}] = actor;
}

outcome<envelope_snapshot> sim_db::load(int64_t id, const caller& who) {
  auto it = envelopes.find(id);
  if (it == envelopes.end())
    return fail(errc::not_found, not_found_message(id));
  // An envelope actor that loads (rather than activates) claims the
  // envelope all the same: the oracle follows the actors, not the epochs.
  if (who.envelope_actor)
    claim(id, it->second.epoch, who.actor_id);
  return snapshot(id);
}

outcome<done> sim_db::confirm_payment(const payment& p, const caller& who) {
  if (p.payment_txn.empty())
    return fail(errc::invalid_argument, "payment txn must not be empty");
  auto it = envelopes.find(p.envelope_id);
  if (it == envelopes.end())
    return fail(errc::not_found, not_found_message(p.envelope_id));
  auto& env = it->second;
  bool epoch_ok = env.epoch == p.epoch || bugs::on(bug::store_stale_epoch);
  if (epoch_ok && env.status == envelope_status::created) {
    if (payments.count(p.payment_txn) > 0)
      return fail(errc::payment_mismatch,
                  "payment txn already used for another envelope");
    auto wallet = wallet_account(env.sender);
    if (p.from_wallet && balance_of(wallet) < env.total_fen)
      return fail(errc::insufficient_funds,
                  "wallet of " + env.sender + " holds "
                    + std::to_string(balance_of(wallet)) + " fen, needs "
                    + std::to_string(env.total_fen));
    auto pay_key = "pay:" + std::to_string(env.id);
    if (ledger_keys.count(pay_key) > 0)
      return fail(errc::internal, "ledger entry " + pay_key + " exists already");
    record_attempt("pay", env.id, p.epoch, env.epoch, who, true);
    env.status = envelope_status::paid;
    env.payment_txn = p.payment_txn;
    env.paid_at_ms = p.paid_at_ms != 0 ? p.paid_at_ms : now_ms();
    env.expires_at_ms = p.expires_at_ms;
    payments[p.payment_txn] = {env.id, p.from_wallet ? "wallet" : "external"};
    post(pay_key, "pay", p.from_wallet ? wallet : external_account,
         escrow_of(env.id), env.total_fen, env.id, env.sender);
    user_records[{env.id, env.sender, 1}]
      = user_record{env.sender, 1, env.id, env.total_fen, env.paid_at_ms,
                    env.group, ""};
    add_outbox("paid", env.id, "", 0, "paid:" + std::to_string(env.id));
    return done{};
  }
  // Nothing changed; find out why, as explain_unpaid does.
  if (env.epoch != p.epoch) {
    record_attempt("pay", env.id, p.epoch, env.epoch, who, false);
    return fail(errc::stale_epoch, "epoch " + std::to_string(p.epoch)
                                     + " is stale (current "
                                     + std::to_string(env.epoch) + ")");
  }
  if (env.status == envelope_status::created)
    return fail(errc::internal, "confirm_payment: envelope changed "
                                "concurrently under a current epoch");
  if (env.payment_txn != p.payment_txn)
    return fail(errc::payment_mismatch,
                "envelope already paid with a different payment txn");
  return done{};
}

outcome<std::vector<int64_t>>
sim_db::confirm_payments(const std::vector<payment>& ps,
                         const std::vector<caller>& who) {
  std::vector<size_t> take;
  std::set<int64_t> ids;
  std::set<std::string> txns;
  for (size_t i = 0; i < ps.size(); ++i) {
    auto& p = ps[i];
    auto it = envelopes.find(p.envelope_id);
    if (p.from_wallet || p.payment_txn.empty() || it == envelopes.end()
        || !ids.insert(p.envelope_id).second)
      continue;
    bool epoch_ok = it->second.epoch == p.epoch || bugs::on(bug::store_stale_epoch);
    if (!epoch_ok || it->second.status != envelope_status::created)
      continue;
    if (payments.count(p.payment_txn) > 0 || !txns.insert(p.payment_txn).second)
      return fail(errc::internal, "payments_pkey: payment txn "
                                    + p.payment_txn + " is used already");
    if (ledger_keys.count("pay:" + std::to_string(p.envelope_id)) > 0)
      return fail(errc::internal, "ledger entry pay:"
                                    + std::to_string(p.envelope_id)
                                    + " exists already");
    take.push_back(i);
  }
  std::vector<int64_t> out;
  for (auto i : take) {
    auto res = confirm_payment(ps[i], who[i]);
    if (!res)
      return fail(errc::internal, "confirm_payments: " + res.error().message);
    out.push_back(ps[i].envelope_id);
  }
  std::sort(out.begin(), out.end());
  return out;
}

outcome<done> sim_db::commit_opens(const open_batch& b, const caller& who) {
  auto problem = batch_problem(b);
  if (!problem.empty())
    return fail(errc::internal, "commit_opens: " + problem);
  auto it = envelopes.find(b.envelope_id);
  if (it == envelopes.end())
    return fail(errc::not_found, not_found_message(b.envelope_id));
  auto& env = it->second;
  int64_t batch_sum = 0;
  for (auto& o : b.opens)
    batch_sum += o.amount_fen;
  auto n = static_cast<int32_t>(b.opens.size());
  bool epoch_ok = env.epoch == b.epoch || bugs::on(bug::store_stale_epoch);
  // The database's clock decides expiry (no expiry: never expires).
  bool expired = env.expires_at_ms > 0 && now_ms() >= env.expires_at_ms;
  bool applies = epoch_ok && env.status == envelope_status::paid && !expired
                 && env.remaining_fen == b.remaining_fen + batch_sum
                 && env.remaining_count == b.remaining_count + n;
  if (applies) {
    // The unique key and CHECK constraints: a violation fails the
    // statement and nothing is written.
    auto& stored = opens[env.id];
    for (auto& o : b.opens)
      for (auto& s : stored)
        if (s.rec.user == o.user)
          return fail(errc::internal,
                      "duplicate key value violates unique constraint "
                      "\"opens_pkey\"");
    auto check = check_violation(env, b);
    if (!check.empty())
      return fail(errc::internal, "new row violates check constraint \""
                                    + check + "\"");
    record_attempt("commit", env.id, b.epoch, env.epoch, who, true);
    ++commits;
    // The statement computes each seq from the guarded row and the open's
    // position (run_commit); the node's seqs are not stored.
    auto base = env.count - env.remaining_count;
    env.remaining_fen = b.remaining_fen;
    env.remaining_count = b.remaining_count;
    env.status = b.status;
    // Committed opens are the relay's queue: no outbox row.
    for (size_t i = 0; i < b.opens.size(); ++i) {
      auto rec = b.opens[i];
      rec.seq = base + 1 + static_cast<int32_t>(i);
      stored.push_back(db_open{std::move(rec), 1});
    }
    std::sort(stored.begin(), stored.end(),
              [](const db_open& x, const db_open& y) {
                return x.rec.seq < y.rec.seq;
              });
    return done{};
  }
  // Nothing changed; explain it like explain_refused does.
  if (env.epoch != b.epoch) {
    record_attempt("commit", env.id, b.epoch, env.epoch, who, false);
    return fail(errc::stale_epoch, "epoch " + std::to_string(b.epoch)
                                     + " is stale (current "
                                     + std::to_string(env.epoch) + ")");
  }
  bool state_matches = env.status == b.status
                       && env.remaining_fen == b.remaining_fen
                       && env.remaining_count == b.remaining_count;
  if (state_matches && !b.opens.empty()) {
    size_t found = 0;
    for (auto& o : b.opens) {
      auto s = find_open(env.id, o.user);
      if (s != nullptr && s->rec.amount_fen == o.amount_fen
          && s->rec.seq == o.seq)
        ++found;
    }
    if (found == b.opens.size())
      return done{};  // a replay of a batch that committed
  }
  if (env.status != envelope_status::paid)
    return fail(errc::stale_epoch,
                std::string("envelope is no longer paid (status ")
                  + to_string(env.status) + ")");
  if (expired) {
    ++commits_refused_expired;
    return fail(errc::expired, "envelope " + std::to_string(env.id)
                                 + " expired by the database's clock; the "
                                   "opens were refused");
  }
  return fail(errc::internal,
              "commit_opens: batch does not continue the stored remaining "
              "amount and count of envelope "
                + std::to_string(b.envelope_id));
}

outcome<int64_t> sim_db::lease_sequence(int32_t segment, int32_t day,
                                        int64_t block) {
  if (block < 1)
    return fail(errc::internal, "lease_sequence: block must be >= 1");
  auto& next = leases[{segment, day}];
  if (next == 0)
    next = 1;
  auto first = next;
  next += block;
  return first;
}

// -- the money after the open ------------------------------------------------------

outcome<int64_t> sim_db::refund(int64_t id, int64_t epoch, const caller& who) {
  auto it = envelopes.find(id);
  if (it == envelopes.end())
    return fail(errc::not_found, not_found_message(id));
  auto& env = it->second;
  bool epoch_ok = env.epoch == epoch || bugs::on(bug::store_stale_epoch);
  // Only once expired by the database's clock (no expiry: never).
  bool due = env.expires_at_ms > 0 && now_ms() >= env.expires_at_ms;
  if (epoch_ok && env.status == envelope_status::paid && due) {
    auto key = "refund:" + std::to_string(id);
    if (ledger_keys.count(key) > 0)
      return fail(errc::internal, "ledger entry " + key + " exists already");
    record_attempt("refund", id, epoch, env.epoch, who, true);
    if (env.expires_at_ms <= 0 || now_ms() < env.expires_at_ms)
      early_refunds.push_back(id);
    env.status = envelope_status::refunded;
    env.refunded_fen = env.remaining_fen;
    env.remaining_fen = 0;
    post(key, "refund", escrow_of(id), wallet_account(env.sender),
         env.refunded_fen, id, env.sender);
    return env.refunded_fen;
  }
  if (env.epoch != epoch) {
    record_attempt("refund", id, epoch, env.epoch, who, false);
    return fail(errc::stale_epoch, "epoch " + std::to_string(epoch)
                                     + " is stale (current "
                                     + std::to_string(env.epoch) + ")");
  }
  if (env.status == envelope_status::refunded)
    return env.refunded_fen;
  if (env.status == envelope_status::paid && !due) {
    ++refunds_refused_early;
    return fail(errc::not_expired,
                "envelope " + std::to_string(id)
                  + " has not expired by the database's clock; nothing was "
                    "refunded");
  }
  return fail(errc::stale_epoch, std::string("envelope is not paid (status ")
                                   + to_string(env.status) + ")");
}

sim_db::relay_take sim_db::take_relay(int32_t limit) const {
  relay_take t;
  for (size_t i = 0; i < outbox.size(); ++i) {
    if (static_cast<int32_t>(t.rows.size()) >= limit)
      return t;
    if (!outbox[i].delivered)
      t.rows.push_back(i);
  }
  // Then, up to `limit` in all, the oldest committed opens; ties by
  // envelope and user (the contract allows any fixed order).
  std::vector<std::tuple<int64_t, int64_t, std::string>> pending;
  for (auto& kv : opens)
    for (auto& o : kv.second)
      if (o.status == 1)
        pending.emplace_back(o.rec.opened_at_ms, kv.first, o.rec.user);
  std::sort(pending.begin(), pending.end());
  auto room = static_cast<size_t>(limit) - t.rows.size();
  for (size_t i = 0; i < pending.size() && i < room; ++i)
    t.opens.emplace_back(std::get<1>(pending[i]), std::get<2>(pending[i]));
  return t;
}

void sim_db::mark_taken(const relay_take& t) {
  auto transfer = [this](int64_t envelope_id, const std::string& user) {
    for (auto& s : opens[envelope_id])
      if (s.rec.user == user && s.status == 1)
        s.status = 2;
  };
  for (auto i : t.rows) {
    auto& row = outbox[i];
    row.delivered = true;
    if (row.kind == "open" && find_open(row.envelope_id, row.user) != nullptr)
      transfer(row.envelope_id, row.user);
  }
  for (auto& o : t.opens)
    transfer(o.first, o.second);
}

outcome<relay_batch_result> sim_db::relay_batch(int32_t limit) {
  if (limit < 1)
    return fail(errc::invalid_argument, "relay_batch: limit must be >= 1");
  auto t = take_relay(limit);
  relay_batch_result out;
  out.rows = static_cast<int32_t>(t.rows.size() + t.opens.size());
  struct item {
    int64_t envelope_id;
    std::string user;
    int64_t amount_fen;
  };
  std::vector<item> items;
  // An outbox 'open' row credits its open ('paid' rows need nothing else);
  // one without an open credits nothing.
  for (auto i : t.rows) {
    auto& row = outbox[i];
    if (row.kind == "open" && find_open(row.envelope_id, row.user) != nullptr)
      items.push_back(item{row.envelope_id, row.user, row.amount_fen});
  }
  for (auto& o : t.opens)
    items.push_back(item{o.first, o.second,
                         find_open(o.first, o.second)->rec.amount_fen});
  std::sort(items.begin(), items.end(), [](const item& x, const item& y) {
    return std::tie(x.envelope_id, x.user) < std::tie(y.envelope_id, y.user);
  });
  for (auto& x : items) {
    auto key = "credit:" + std::to_string(x.envelope_id) + ":" + x.user;
    if (bugs::on(bug::relay_credit_before_mark))
      key += "#" + std::to_string(next_ledger_id_);  // no idempotency
    if (post(key, "credit", escrow_of(x.envelope_id), wallet_account(x.user),
             x.amount_fen, x.envelope_id, x.user)) {
      ++out.credited;
      out.credited_fen += x.amount_fen;
    } else {
      ++out.duplicates;
    }
    auto& env = envelopes.at(x.envelope_id);
    auto o = find_open(x.envelope_id, x.user);
    user_records.emplace(std::make_tuple(x.envelope_id, x.user, 2),
                         user_record{x.user, 2, x.envelope_id, x.amount_fen,
                                     o->rec.opened_at_ms, env.group,
                                     env.sender});
  }
  // The bug relay_credit_before_mark marks in a second step (mark_relayed), which a fault
  // can lose: the opens stay committed and are credited again.
  if (!bugs::on(bug::relay_credit_before_mark))
    mark_taken(t);
  return out;
}

void sim_db::mark_relayed(int32_t limit) {
  mark_taken(take_relay(limit));
}

outcome<lag_info> sim_db::outbox_lag() {
  lag_info out;
  int64_t oldest = 0;
  for_each_owed([&](int64_t at_ms) {
    if (out.pending == 0 || at_ms < oldest)
      oldest = at_ms;
    ++out.pending;
  });
  if (out.pending > 0)
    out.oldest_age_ms = now_ms() - oldest;
  return out;
}

outcome<std::vector<int64_t>> sim_db::expired_envelopes(int64_t now,
                                                        int32_t limit,
                                                        int64_t after_id) {
  if (limit < 1)
    return fail(errc::invalid_argument,
                "expired_envelopes: limit must be >= 1");
  std::vector<std::pair<int64_t, int64_t>> due;  // (expires_at, id)
  for (auto& kv : envelopes) {
    auto& e = kv.second;
    if (e.status == envelope_status::paid && e.expires_at_ms > 0
        && e.expires_at_ms <= now)
      due.emplace_back(e.expires_at_ms, e.id);
  }
  std::sort(due.begin(), due.end());
  // The page starts after the cursor envelope, if it exists.
  std::pair<int64_t, int64_t> cursor{std::numeric_limits<int64_t>::min(), 0};
  if (auto c = envelopes.find(after_id); c != envelopes.end())
    cursor = {c->second.expires_at_ms, c->second.id};
  std::vector<int64_t> out;
  for (auto& d : due) {
    if (static_cast<int32_t>(out.size()) >= limit)
      break;
    if (d > cursor)
      out.push_back(d.second);
  }
  return out;
}

outcome<history_page> sim_db::history(const history_query& q) {
  if (q.limit < 1 || q.limit > 1000)
    return fail(errc::invalid_argument, "history: limit must be 1..1000");
  if (q.kind != history_kind::sent && q.kind != history_kind::received)
    return fail(errc::invalid_argument, "history: unknown kind");
  int64_t c_at = 0;
  int64_t c_id = 0;
  bool paged = !q.cursor.empty();
  if (paged) {
    auto colon = q.cursor.find(':');
    if (colon == std::string::npos || !parse_i64(q.cursor.substr(0, colon), c_at)
        || !parse_i64(q.cursor.substr(colon + 1), c_id))
      return fail(errc::invalid_argument, "history: malformed cursor");
  }
  std::vector<const user_record*> rows;
  for (auto& kv : user_records) {
    auto& r = kv.second;
    if (r.user != q.user || r.kind != static_cast<int>(q.kind))
      continue;
    if (paged && std::make_pair(r.at_ms, r.envelope_id)
                   >= std::make_pair(c_at, c_id))
      continue;
    rows.push_back(&r);
  }
  std::sort(rows.begin(), rows.end(),
            [](const user_record* x, const user_record* y) {
              return std::make_pair(x->at_ms, x->envelope_id)
                     > std::make_pair(y->at_ms, y->envelope_id);
            });
  history_page page;
  for (size_t i = 0; i < rows.size() && static_cast<int32_t>(i) < q.limit; ++i)
    page.items.push_back(history_item{rows[i]->envelope_id,
                                      rows[i]->amount_fen, rows[i]->at_ms,
                                      rows[i]->group, rows[i]->counterpart});
  if (static_cast<int32_t>(rows.size()) > q.limit) {
    auto& last = page.items.back();
    page.next_cursor = std::to_string(last.at_ms) + ":"
                       + std::to_string(last.envelope_id);
  }
  return page;
}

outcome<balance_info> sim_db::balance(const std::string& user) {
  return balance_info{user, balance_of(wallet_account(user))};
}

outcome<done> sim_db::deposit(const std::string& user, int64_t amount_fen,
                              const std::string& key) {
  if (user.empty() || key.empty())
    return fail(errc::invalid_argument,
                "deposit: user and key must not be empty");
  if (amount_fen < 1)
    return fail(errc::invalid_argument, "deposit: amount must be >= 1 fen");
  if (post("deposit:" + key, "deposit", external_account,
           wallet_account(user), amount_fen, 0, user))
    return done{};
  auto& e = ledger[ledger_keys.at("deposit:" + key)];
  if (e.kind == "deposit" && e.credit == wallet_account(user)
      && e.amount_fen == amount_fen)
    return done{};
  return fail(errc::conflict,
              "deposit key already used with another user or amount");
}

outcome<std::vector<segment_state>> sim_db::blocked_segments() {
  std::vector<segment_state> out;
  for (auto& kv : segment_states)
    if (kv.second.blocked)
      out.push_back(kv.second);
  return out;
}

outcome<done> sim_db::set_segment_state(const segment_state& s) {
  if (s.segment < 0 || s.segment >= segment_count)
    return fail(errc::internal, "segment out of range");
  auto& stored = segment_states[s.segment];
  if (s.blocked && !stored.blocked)
    ++segment_blocks;
  stored = s;
  return done{};
}

// -- reconciliation ------------------------------------------------------------------

outcome<reconcile_report> sim_db::reconcile(int64_t since_ms, int64_t now,
                                            bool repair) {
  reconcile_report r;
  r.since_ms = since_ms;
  auto in_scope = [&](int64_t id) {
    auto it = envelopes.find(id);
    return it != envelopes.end() && it->second.created_at_ms >= since_ms;
  };
  auto add = [&](std::string kind, int64_t env, std::string user,
                 std::string detail) {
    r.discrepancies.push_back(discrepancy{std::move(kind), env,
                                          std::move(user), std::move(detail),
                                          false});
  };
  auto has_credit = [&](int64_t env, const std::string& user) {
    return !entries("credit", env, user).empty();
  };
  // Totals.
  int64_t sum = 0;
  for (auto& kv : accounts) {
    sum += kv.second;
    switch (account_kind(kv.first)) {
      case 1: r.wallets_fen += kv.second; break;
      case 2: r.escrow_fen += kv.second; break;
      default: r.external_fen += kv.second; break;
    }
  }
  r.accounts_checked = static_cast<int64_t>(accounts.size());
  if (sum != 0)
    add("ledger_unbalanced", 0, "",
        "all accounts sum to " + std::to_string(sum) + " fen, not 0");
  for (auto& kv : envelopes) {
    auto& e = kv.second;
    if (!in_scope(e.id))
      continue;
    ++r.envelopes_checked;
    int64_t opened = 0;
    int32_t n = 0;
    for (auto& o : opens[e.id]) {
      ++r.opens_checked;
      if (o.status == 1)
        ++r.relay_pending;
      opened += o.rec.amount_fen;
      ++n;
      // An open the relay is done with (transferred) but that no credit
      // paid. A committed open is still in the relay's queue. (An archived
      // open without an undelivered outbox row would be missing too; the
      // simulation archives nothing.)
      if (o.status == 2 && !has_credit(e.id, o.rec.user))
        add("missing_credit", e.id, o.rec.user,
            "open of " + std::to_string(o.rec.amount_fen)
              + " fen has no credit; the open is marked transferred");
    }
    if (opened + e.refunded_fen + e.remaining_fen != e.total_fen
        || n + e.remaining_count != e.count)
      add("sum_mismatch", e.id, "",
          std::string(to_string(e.status)) + ": opened "
            + std::to_string(opened) + " + refunded "
            + std::to_string(e.refunded_fen) + " + remaining "
            + std::to_string(e.remaining_fen) + " != total "
            + std::to_string(e.total_fen));
    // Refund entries.
    auto refunds = entries("refund", e.id);
    int64_t refunded = 0;
    for (auto x : refunds)
      refunded += x->amount_fen;
    bool bad_refund = e.status == envelope_status::refunded
                        ? refunds.size() != 1 || refunded != e.refunded_fen
                        : !refunds.empty();
    if (bad_refund)
      add(e.status == envelope_status::refunded && refunds.empty()
            ? "refund_missing"
            : refunds.size() > 1 ? "refund_double" : "refund_amount_mismatch",
          e.id, "",
          std::to_string(refunds.size()) + " refund entries totalling "
            + std::to_string(refunded) + " fen");
    // Payment entries.
    auto pays = entries("pay", e.id);
    int64_t paid = 0;
    for (auto x : pays)
      paid += x->amount_fen;
    bool has_payment_row = false;
    for (auto& p : payments)
      if (p.second.first == e.id)
        has_payment_row = true;
    bool is_paid = e.status != envelope_status::created;
    bool bad_pay = is_paid ? pays.size() != 1 || paid != e.total_fen
                               || !has_payment_row
                           : !pays.empty() || has_payment_row;
    if (bad_pay)
      add(is_paid && pays.empty() ? "payment_missing" : "payment_mismatch",
          e.id, "",
          std::to_string(pays.size()) + " pay entries totalling "
            + std::to_string(paid) + " fen");
    if (e.status == envelope_status::paid && e.expires_at_ms > 0
        && e.expires_at_ms < now - 60000)
      add("refund_overdue", e.id, "",
          "paid envelope expired "
            + std::to_string((now - e.expires_at_ms) / 1000)
            + " s ago and still holds " + std::to_string(e.remaining_fen)
            + " fen");
  }
  // Credits: doubles, amounts, credits without an open.
  std::map<std::pair<int64_t, std::string>, std::vector<const ledger_entry*>>
    credits;
  for (auto& e : ledger)
    if (e.kind == "credit")
      credits[{e.envelope_id, e.user}].push_back(&e);
  for (auto& kv : credits) {
    auto env = kv.first.first;
    auto& user = kv.first.second;
    auto o = find_open(env, user);
    bool scoped = in_scope(env);
    if (o == nullptr) {
      if (scoped || envelopes.count(env) == 0)
        for (auto x : kv.second)
          add("credit_without_open", env, user,
              "credit " + x->key + " of " + std::to_string(x->amount_fen)
                + " fen matches no open");
      continue;
    }
    if (!scoped)
      continue;
    if (kv.second.size() > 1)
      add("double_credit", env, user,
          std::to_string(kv.second.size()) + " credits");
    for (auto x : kv.second)
      if (x->amount_fen != o->rec.amount_fen)
        add("credit_amount_mismatch", env, user,
            "credit " + x->key + " of " + std::to_string(x->amount_fen)
              + " fen for an open of " + std::to_string(o->rec.amount_fen)
              + " fen");
  }
  // Global: each balance is the sum of its entries.
  std::map<std::string, int64_t> sums;
  for (auto& e : ledger) {
    sums[e.debit] -= e.amount_fen;
    sums[e.credit] += e.amount_fen;
  }
  std::set<std::string> ids;
  for (auto& kv : accounts)
    ids.insert(kv.first);
  for (auto& kv : sums)
    ids.insert(kv.first);
  for (auto& id : ids) {
    auto a = accounts.find(id);
    auto s = sums.count(id) > 0 ? sums[id] : 0;
    if (a == accounts.end() || a->second != s)
      add("balance_mismatch", 0, id,
          "balance " + (a == accounts.end() ? std::string("(no account)")
                                            : std::to_string(a->second))
            + " fen, entries sum to " + std::to_string(s) + " fen");
  }
  // Global, per segment: escrow = paid in - credited - refunded.
  std::map<std::string, int64_t> expected;
  for (auto& kv : envelopes)
    if (kv.second.status != envelope_status::created)
      expected[escrow_of(kv.first)]
        += kv.second.total_fen - kv.second.refunded_fen;
  for (auto& e : ledger)
    if (e.kind == "credit" && e.envelope_id != 0)
      expected[escrow_of(e.envelope_id)] -= e.amount_fen;
  std::set<std::string> escrows;
  for (auto& kv : accounts)
    if (account_kind(kv.first) == 2)
      escrows.insert(kv.first);
  for (auto& kv : expected)
    escrows.insert(kv.first);
  for (auto& id : escrows) {
    auto have = balance_of(id);
    auto want = expected.count(id) > 0 ? expected[id] : 0;
    if (have != want)
      add("escrow_mismatch", 0, id,
          "escrow holds " + std::to_string(have) + " fen; its envelopes say "
            + std::to_string(want) + " fen");
  }
  if (!repair)
    return r;
  // Repair: re-enqueue lost credits, only while the accounts involved match
  // their entries.
  std::set<std::string> suspect;
  for (auto& d : r.discrepancies)
    if (d.kind == "balance_mismatch" || d.kind == "escrow_mismatch")
      suspect.insert(d.user);
  for (auto& d : r.discrepancies) {
    if (d.kind != "missing_credit")
      continue;
    auto wallet = wallet_account(d.user);
    auto escrow = escrow_of(d.envelope_id);
    if (suspect.count(wallet) > 0 || suspect.count(escrow) > 0) {
      d.detail += "; not repaired: "
                  + (suspect.count(wallet) > 0 ? wallet : escrow)
                  + " does not match its entries";
      continue;
    }
    // A hot open goes back into the relay's queue: committed again, no
    // outbox row (an archived one would get its outbox row back).
    if (find_open(d.envelope_id, d.user) == nullptr
        || has_credit(d.envelope_id, d.user))
      continue;
    for (auto& s : opens[d.envelope_id])
      if (s.rec.user == d.user)
        s.status = 1;
    d.repaired = true;
  }
  return r;
}

} // namespace hb::sim
