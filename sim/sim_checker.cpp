#include "sim/sim_checker.hpp"

#include <map>
#include <set>

#include "domain/envelope_id.hpp"

namespace hb::sim {

namespace {

std::string env_name(const envelope& env) {
  return "envelope " + std::to_string(env.id) + " ("
         + to_string(env.status) + ")";
}

} // namespace

void checker::cheap() {
  auto& db = w_.db;
  if (!db.stale_accepted.empty()) {
    auto& a = db.stale_accepted.front();
    w_.violate(std::string("stale write accepted: ") + a.what + " of envelope "
               + std::to_string(a.envelope_id) + " carried epoch "
               + std::to_string(a.carried_epoch) + ", stored epoch "
               + std::to_string(a.current_epoch) + ", sent by actor "
               + std::to_string(a.sender) + " while actor "
               + std::to_string(a.owner)
               + " owned the envelope (two owners committed)");
    return;
  }
  if (!db.early_refunds.empty()) {
    w_.violate("envelope " + std::to_string(db.early_refunds.front())
               + " refunded before it expired");
    return;
  }
  if (!db.id_collisions.empty()) {
    w_.violate("envelope id " + std::to_string(db.id_collisions.front())
               + " handed out twice");
    return;
  }
  for (auto& kv : db.envelopes) {
    check_envelope(kv.second);
    if (w_.failed())
      return;
  }
  check_ledger();
}

void checker::check_envelope(const envelope& env) {
  auto fail = [&](const std::string& what) {
    w_.violate(env_name(env) + ": " + what);
  };
  auto it = w_.db.opens.find(env.id);
  int64_t opened = 0;
  int32_t n = 0;
  std::set<std::string> users;
  std::set<int32_t> seqs;
  if (it != w_.db.opens.end())
    for (auto& o : it->second) {
      if (o.rec.amount_fen < 1)
        return fail("share of " + std::to_string(o.rec.amount_fen)
                    + " fen for " + o.rec.user);
      if (!users.insert(o.rec.user).second)
        return fail("user " + o.rec.user + " has two shares");
      if (!seqs.insert(o.rec.seq).second || o.rec.seq < 1
          || o.rec.seq > env.count)
        return fail("share number " + std::to_string(o.rec.seq)
                    + " twice or out of range");
      opened += o.rec.amount_fen;
      ++n;
    }
  if (n > env.count)
    return fail(std::to_string(n) + " shares of " + std::to_string(env.count));
  if (env.remaining_fen < 0 || env.remaining_count < 0)
    return fail("negative remaining amount or count");
  if (opened + env.refunded_fen + env.remaining_fen != env.total_fen)
    return fail("money not conserved: opened " + std::to_string(opened)
                + " + refunded " + std::to_string(env.refunded_fen)
                + " + remaining " + std::to_string(env.remaining_fen)
                + " != total " + std::to_string(env.total_fen));
  if (n + env.remaining_count != env.count)
    return fail(std::to_string(n) + " shares + "
                + std::to_string(env.remaining_count) + " remaining != count "
                + std::to_string(env.count));
  switch (env.status) {
    case envelope_status::created:
      if (n > 0 || env.refunded_fen != 0)
        return fail("unpaid envelope with shares or a refund");
      break;
    case envelope_status::paid:
      if (env.remaining_count < 1 || env.remaining_fen < env.remaining_count)
        return fail("paid envelope cannot give every remaining share 1 fen");
      if (env.refunded_fen != 0)
        return fail("refund recorded on a paid envelope");
      break;
    case envelope_status::exhausted:
      if (env.remaining_count != 0 || env.remaining_fen != 0
          || env.refunded_fen != 0)
        return fail("exhausted envelope still holds money or shares");
      break;
    case envelope_status::expired:
      break;
    case envelope_status::refunded:
      if (env.remaining_fen != 0 || env.refunded_fen < 1)
        return fail("refunded envelope still holds money or refunded "
                    "nothing");
      break;
  }
  // The production check must agree.
  auto problem = check_invariants(env, w_.db.open_records(env.id));
  if (!problem.empty())
    return fail("check_invariants: " + problem);
}

void checker::check_ledger() {
  auto& db = w_.db;
  std::map<std::string, int64_t> sums;
  std::map<std::pair<int64_t, std::string>, int> credits;
  std::map<int64_t, int> pays;
  std::map<int64_t, int> refunds;
  std::map<std::string, int64_t> escrow_expected;
  for (auto& e : db.ledger) {
    sums[e.debit] -= e.amount_fen;
    sums[e.credit] += e.amount_fen;
    if (e.amount_fen < 1)
      return w_.violate("ledger entry " + e.key + " moves "
                        + std::to_string(e.amount_fen) + " fen");
    auto env = db.envelopes.find(e.envelope_id);
    if (e.kind == "credit") {
      auto o = db.find_open(e.envelope_id, e.user);
      if (o == nullptr)
        return w_.violate("credit " + e.key + " without an open");
      if (o->rec.amount_fen != e.amount_fen)
        return w_.violate("credit " + e.key + " of "
                          + std::to_string(e.amount_fen)
                          + " fen for an open of "
                          + std::to_string(o->rec.amount_fen) + " fen");
      if (++credits[{e.envelope_id, e.user}] > 1)
        return w_.violate("open of " + e.user + " on envelope "
                          + std::to_string(e.envelope_id)
                          + " credited twice");
      escrow_expected[escrow_of(e.envelope_id)] -= e.amount_fen;
    } else if (e.kind == "pay") {
      if (env == db.envelopes.end() || env->second.total_fen != e.amount_fen
          || ++pays[e.envelope_id] > 1)
        return w_.violate("pay entry " + e.key + " wrong or twice");
    } else if (e.kind == "refund") {
      if (env == db.envelopes.end()
          || env->second.status != envelope_status::refunded
          || env->second.refunded_fen != e.amount_fen
          || ++refunds[e.envelope_id] > 1)
        return w_.violate("refund entry " + e.key + " wrong or twice");
    }
  }
  int64_t total = 0;
  std::set<std::string> ids;
  for (auto& kv : db.accounts)
    ids.insert(kv.first);
  for (auto& kv : sums)
    ids.insert(kv.first);
  for (auto& id : ids) {
    auto have = db.balance_of(id);
    auto want = sums.count(id) > 0 ? sums[id] : 0;
    total += have;
    if (have != want)
      return w_.violate("account " + id + " holds " + std::to_string(have)
                        + " fen but its entries sum to "
                        + std::to_string(want));
    if (id.rfind("user:", 0) == 0 && have < 0)
      return w_.violate("wallet " + id + " below zero");
  }
  if (total != 0)
    return w_.violate("all accounts sum to " + std::to_string(total)
                      + " fen, not 0");
  // The relay's queue: an open is committed (the relay owes its credit) or
  // transferred, and only in the transaction that credits it.
  for (auto& kv : db.opens)
    for (auto& o : kv.second) {
      if (o.status != 1 && o.status != 2)
        return w_.violate("open of " + o.rec.user + " on envelope "
                          + std::to_string(kv.first) + " has relay status "
                          + std::to_string(o.status));
      if (o.status == 2 && credits.count({kv.first, o.rec.user}) == 0)
        return w_.violate("open of " + o.rec.user + " on envelope "
                          + std::to_string(kv.first)
                          + " marked transferred without a credit");
    }
  // Opens are their own outbox: only a repair of an archived open writes an
  // 'open' row, and the simulation archives nothing.
  for (auto& row : db.outbox)
    if (row.kind != "paid")
      return w_.violate("outbox row " + row.key + " of kind " + row.kind
                        + ": an open needs no outbox row");
  for (auto& kv : db.envelopes) {
    auto& env = kv.second;
    bool paid = env.status != envelope_status::created;
    if (paid != (pays.count(env.id) > 0))
      return w_.violate(env_name(env) + ": pay entry missing or unexpected");
    bool refunded = env.status == envelope_status::refunded;
    if (refunded != (refunds.count(env.id) > 0))
      return w_.violate(env_name(env)
                        + ": refund entry missing or unexpected");
    if (paid)
      escrow_expected[escrow_of(env.id)] += env.total_fen - env.refunded_fen;
  }
  for (auto& kv : escrow_expected) {
    if (db.balance_of(kv.first) != kv.second)
      return w_.violate(kv.first + " holds "
                        + std::to_string(db.balance_of(kv.first))
                        + " fen; its envelopes say "
                        + std::to_string(kv.second) + " fen");
  }
  // Wallets plus escrow hold exactly what was paid in from outside.
  int64_t wallets = 0;
  int64_t escrow = 0;
  for (auto& kv : db.accounts) {
    if (kv.first.rfind("user:", 0) == 0)
      wallets += kv.second;
    else if (kv.first.rfind("escrow:", 0) == 0)
      escrow += kv.second;
  }
  if (wallets + escrow != -db.balance_of(external_account))
    w_.violate("wallets " + std::to_string(wallets) + " + escrow "
               + std::to_string(escrow) + " != paid in "
               + std::to_string(-db.balance_of(external_account)));
}

void checker::final_checks() {
  cheap();
  if (w_.failed())
    return;
  auto& db = w_.db;
  for (auto& row : db.outbox)
    if (!row.delivered)
      return w_.violate("outbox row " + row.key + " never delivered");
  if (auto n = db.relay_backlog(); n > 0)
    return w_.violate(std::to_string(n) + " items still wait for the relay");
  for (auto& kv : db.opens)
    for (auto& o : kv.second) {
      auto credits = db.entries("credit", kv.first, o.rec.user);
      if (credits.size() != 1)
        return w_.violate("open of " + o.rec.user + " on envelope "
                          + std::to_string(kv.first) + " credited "
                          + std::to_string(credits.size()) + " times");
      if (o.status != 2)
        return w_.violate("open of " + o.rec.user + " on envelope "
                          + std::to_string(kv.first)
                          + " credited but not marked transferred");
    }
  auto now = w_.now_ms();
  for (auto& kv : db.envelopes) {
    auto& env = kv.second;
    if (env.status == envelope_status::paid && env.expires_at_ms > 0
        && env.expires_at_ms <= now)
      return w_.violate(env_name(env) + " expired "
                        + std::to_string((now - env.expires_at_ms) / 1000)
                        + " s ago and was never refunded");
    if (env.status == envelope_status::refunded
        && db.entries("refund", env.id).size() != 1)
      return w_.violate(env_name(env) + " not refunded exactly once");
  }
  for (auto& kv : db.accounts)
    if (kv.first.rfind("escrow:", 0) == 0 && kv.second != 0)
      return w_.violate(kv.first + " still holds " + std::to_string(kv.second)
                        + " fen after every envelope was settled");
}

} // namespace hb::sim
