#include "domain/envelope.hpp"

#include <cstdio>
#include <string_view>
#include <unordered_set>

#include "domain/money.hpp"
#include "domain/requests.hpp"

namespace hb {

std::string to_yuan_string(int64_t fen) {
  char buf[32];
  const char* sign = fen < 0 ? "-" : "";
  uint64_t abs = fen < 0 ? -static_cast<uint64_t>(fen) : fen;
  std::snprintf(buf, sizeof(buf), "%s%llu.%02llu", sign,
                static_cast<unsigned long long>(abs / 100),
                static_cast<unsigned long long>(abs % 100));
  return buf;
}

const char* to_string(envelope_kind x) {
  switch (x) {
    case envelope_kind::random: return "random";
    case envelope_kind::equal: return "equal";
  }
  return "unknown";
}

const char* to_string(envelope_status x) {
  switch (x) {
    case envelope_status::created: return "created";
    case envelope_status::paid: return "paid";
    case envelope_status::exhausted: return "exhausted";
    case envelope_status::expired: return "expired";
    case envelope_status::refunded: return "refunded";
  }
  return "unknown";
}

const char* to_string(grab_outcome x) {
  switch (x) {
    case grab_outcome::can_open: return "can_open";
    case grab_outcome::already_opened: return "already_opened";
    case grab_outcome::exhausted: return "exhausted";
    case grab_outcome::expired: return "expired";
    case grab_outcome::not_paid: return "not_paid";
  }
  return "unknown";
}

bool parse_kind(const std::string& text, envelope_kind& out) {
  if (text == "random") {
    out = envelope_kind::random;
    return true;
  }
  if (text == "equal") {
    out = envelope_kind::equal;
    return true;
  }
  return false;
}

bool transition_allowed(envelope_status from, envelope_status to) {
  using s = envelope_status;
  switch (from) {
    case s::created: return to == s::paid;
    case s::paid: return to == s::exhausted || to == s::expired;
    case s::expired: return to == s::refunded;
    case s::exhausted:
    case s::refunded: return false;
  }
  return false;
}

std::string check_invariants(const envelope& env,
                             const std::vector<open_record>& opens) {
  if (env.remaining_fen < 0 || env.remaining_count < 0)
    return "negative remaining amount or count";
  if (static_cast<int64_t>(opens.size()) > env.count)
    return "more shares than count";
  if (env.count - static_cast<int32_t>(opens.size()) != env.remaining_count)
    return "remaining_count does not match the number of opens";
  int64_t sum = 0;
  std::unordered_set<std::string> users;
  for (auto& o : opens) {
    if (o.amount_fen < 1)
      return "share below 1 fen for user " + o.user;
    if (!users.insert(o.user).second)
      return "user opened twice: " + o.user;
    sum += o.amount_fen;
  }
  if (env.refunded_fen < 0)
    return "negative refund";
  if (sum + env.refunded_fen + env.remaining_fen != env.total_fen)
    return "opened " + std::to_string(sum) + " + refunded "
           + std::to_string(env.refunded_fen) + " + remaining "
           + std::to_string(env.remaining_fen) + " != total "
           + std::to_string(env.total_fen);
  if (env.status == envelope_status::refunded) {
    // The remainder went back to the sender; nothing stays in escrow.
    if (env.remaining_fen != 0 || env.refunded_fen < 1)
      return "refunded envelope still holds money or refunded nothing";
    return {};
  }
  if (env.refunded_fen != 0)
    return "refund recorded on an envelope that is not refunded";
  if (env.remaining_count == 0 && env.remaining_fen != 0)
    return "no shares left but money remains";
  if (env.remaining_count > 0 && env.remaining_fen < env.remaining_count)
    return "remaining money cannot give every remaining share 1 fen";
  return {};
}

std::string batch_problem(const open_batch& b) {
  if (b.status != envelope_status::paid
      && b.status != envelope_status::exhausted)
    return "a batch must leave the envelope paid or exhausted";
  std::unordered_set<std::string_view> users;
  users.reserve(b.opens.size());
  for (size_t i = 0; i < b.opens.size(); ++i) {
    auto& o = b.opens[i];
    if (!users.insert(o.user).second)
      return "user appears twice in one batch";
    if (o.seq != b.opens[0].seq + static_cast<int32_t>(i))
      return "seq " + std::to_string(o.seq) + " at position "
             + std::to_string(i) + " of a batch from seq "
             + std::to_string(b.opens[0].seq)
             + ": a batch's seqs must be consecutive and ascending";
  }
  return {};
}

const open_record* best_luck(const std::vector<open_record>& opens) {
  const open_record* best = nullptr;
  for (auto& o : opens)
    if (best == nullptr || o.amount_fen > best->amount_fen
        || (o.amount_fen == best->amount_fen && o.seq < best->seq))
      best = &o;
  return best;
}

} // namespace hb
