#include "client/commands.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <optional>
#include <random>
#include <string>
#include <map>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "client/client.hpp"
#include "domain/cluster_summary.hpp"
#include "domain/envelope.hpp"
#include "domain/envelope_id.hpp"
#include "domain/ledger.hpp"
#include "domain/money.hpp"

namespace hb::client::cli {

namespace {

// Ordered, so that "ok" comes first and fields read in a sensible order.
using json = nlohmann::ordered_json;

/// The response timeout of `reconcile` unless --timeout-ms is given: it
/// walks the whole ledger and takes far longer than one request.
constexpr int reconcile_timeout_ms = 300 * 1000;

// -- Formatting ----------------------------------------------------------------

/// "12.34 yuan (1234 fen)"
std::string amount_text(int64_t fen) {
  return to_yuan_string(fen) + " yuan (" + std::to_string(fen) + " fen)";
}

/// "1 share", "3 shares"
std::string shares_text(int64_t n) {
  return std::to_string(n) + (n == 1 ? " share" : " shares");
}

/// Terminal columns of UTF-8 text, counting CJK and other wide characters
/// (from U+1100 on, roughly) as two, so that tables of Chinese names line up.
size_t display_width(const std::string& text) {
  size_t width = 0;
  for (size_t i = 0; i < text.size();) {
    auto c = static_cast<unsigned char>(text[i]);
    size_t len = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
    uint32_t cp = len == 1 ? c : c & (0xff >> (len + 1));
    for (size_t k = 1; k < len && i + k < text.size(); ++k)
      cp = (cp << 6) | (static_cast<unsigned char>(text[i + k]) & 0x3f);
    width += cp >= 0x1100 ? 2 : 1;
    i += len;
  }
  return width;
}

std::string pad_right(const std::string& text, size_t width) {
  size_t w = display_width(text);
  return w >= width ? text : text + std::string(width - w, ' ');
}

/// "2026-11-26 08:15:00 UTC", or "-" for 0 (not yet).
std::string time_text(int64_t unix_ms) {
  if (unix_ms <= 0)
    return "-";
  std::time_t secs = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

/// "1 discrepancy", "3 discrepancies"
std::string discrepancies_text(size_t n) {
  return std::to_string(n) + (n == 1 ? " discrepancy" : " discrepancies");
}

// -- Parsing --since -------------------------------------------------------------

/// Days from 1970-01-01 to the proleptic Gregorian date y-m-d (Howard
/// Hinnant's days_from_civil): no timegm, no time zone database.
int64_t days_from_civil(int64_t y, int64_t m, int64_t d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

int days_in_month(int y, int m) {
  static constexpr int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return m == 2 && leap ? 29 : days[m - 1];
}

/// Reads exactly `n` digits at `pos` into `out`; advances `pos`.
bool digits(const std::string& text, size_t& pos, size_t n, int& out) {
  if (pos + n > text.size())
    return false;
  out = 0;
  for (size_t i = 0; i < n; ++i) {
    char c = text[pos + i];
    if (c < '0' || c > '9')
      return false;
    out = out * 10 + (c - '0');
  }
  pos += n;
  return true;
}

/// Parses "2026-11-26", "2026-11-26T10:00", "2026-11-26T10:00:00",
/// "2026-11-26T10:00:00.250" with an optional "Z" or "+08:00"/"-0500"
/// offset (none: UTC) into Unix milliseconds.
bool parse_iso_time(const std::string& text, int64_t& out) {
  size_t pos = 0;
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0, ms = 0;
  if (!digits(text, pos, 4, y) || pos >= text.size() || text[pos++] != '-'
      || !digits(text, pos, 2, mo) || pos >= text.size()
      || text[pos++] != '-' || !digits(text, pos, 2, d))
    return false;
  if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo))
    return false;
  int64_t offset_min = 0;
  if (pos < text.size()) {
    if (text[pos] != 'T' && text[pos] != 't' && text[pos] != ' ')
      return false;
    ++pos;
    if (!digits(text, pos, 2, h) || pos >= text.size() || text[pos++] != ':'
        || !digits(text, pos, 2, mi))
      return false;
    if (pos < text.size() && text[pos] == ':') {
      ++pos;
      if (!digits(text, pos, 2, sec))
        return false;
      if (pos < text.size() && text[pos] == '.') {
        ++pos;
        size_t start = pos;
        while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9')
          ++pos;
        size_t n = pos - start;
        if (n == 0 || n > 9)
          return false;
        // Milliseconds: the first three digits, padded.
        std::string frac = text.substr(start, std::min<size_t>(n, 3));
        frac.resize(3, '0');
        ms = std::stoi(frac);
      }
    }
    if (h > 23 || mi > 59 || sec > 59)
      return false;
    if (pos < text.size()) {
      char c = text[pos];
      if ((c == 'Z' || c == 'z') && pos + 1 == text.size()) {
        ++pos;
      } else if (c == '+' || c == '-') {
        ++pos;
        int oh = 0, om = 0;
        if (!digits(text, pos, 2, oh))
          return false;
        if (pos < text.size() && text[pos] == ':')
          ++pos;
        if (!digits(text, pos, 2, om) || oh > 23 || om > 59)
          return false;
        offset_min = (c == '+' ? 1 : -1) * (oh * 60 + om);
      } else {
        return false;
      }
    }
    if (pos != text.size())
      return false;
  }
  int64_t secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec
                 - offset_min * 60;
  out = secs * 1000 + ms;
  return true;
}

/// Parses --since into Unix milliseconds: Unix ms ("1764115200000"), an ISO
/// date or datetime (UTC unless it names an offset: "2026-11-26",
/// "2026-11-26T10:00:00Z", "2026-11-26T18:00:00+08:00"), or an age counted
/// back from `now_ms` ("90s", "30m", "24h", "7d"). Returns nullopt and sets
/// `why` when `text` is none of these.
std::optional<int64_t> parse_since(const std::string& text, int64_t now_ms,
                                   std::string& why) {
  why = "--since must be Unix milliseconds, a date like 2026-11-26, a "
        "datetime like 2026-11-26T10:00:00Z, or an age like 30m, 24h or 7d; "
        "got '" + text + "'";
  if (text.empty())
    return std::nullopt;
  auto all_digits = [](const std::string& x) {
    return !x.empty() && x.find_first_not_of("0123456789") == std::string::npos;
  };
  if (all_digits(text)) {
    if (text.size() > 18)  // beyond year 33 000 000: a typo
      return std::nullopt;
    return std::stoll(text);
  }
  char unit = text.back();
  auto number = text.substr(0, text.size() - 1);
  if ((unit == 's' || unit == 'm' || unit == 'h' || unit == 'd')
      && all_digits(number)) {
    if (number.size() > 9)
      return std::nullopt;
    int64_t n = std::stoll(number);
    int64_t unit_ms = unit == 's'   ? 1000
                      : unit == 'm' ? 60 * 1000
                      : unit == 'h' ? 3600 * 1000
                                    : 86400 * 1000;
    int64_t result = now_ms - n * unit_ms;
    if (result < 0) {
      why = "--since " + text + " reaches back before 1970";
      return std::nullopt;
    }
    return result;
  }
  int64_t ms = 0;
  if (parse_iso_time(text, ms)) {
    if (ms < 0) {
      why = "--since " + text + " is before 1970";
      return std::nullopt;
    }
    return ms;
  }
  return std::nullopt;
}

int64_t unix_now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch())
    .count();
}

/// A random RFC 4122 version-4 UUID: unique enough as an idempotency key.
std::string random_uuid() {
  std::random_device rd;
  std::mt19937_64 gen((static_cast<uint64_t>(rd()) << 32) ^ rd());
  uint64_t hi = gen();
  uint64_t lo = gen();
  hi = (hi & ~0xf000ULL) | 0x4000ULL;              // version 4
  lo = (lo & ~(0xc0ULL << 56)) | (0x80ULL << 56);  // variant 10
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%08llx-%04llx-%04llx-%04llx-%012llx",
                static_cast<unsigned long long>(hi >> 32),
                static_cast<unsigned long long>((hi >> 16) & 0xffff),
                static_cast<unsigned long long>(hi & 0xffff),
                static_cast<unsigned long long>(lo >> 48),
                static_cast<unsigned long long>(lo & 0xffffffffffffULL));
  return buf;
}

json envelope_json(const envelope& env) {
  return json{
    {"envelope_id", env.id},
    {"status", to_string(env.status)},
    {"kind", to_string(env.kind)},
    {"sender", env.sender},
    {"group", env.group},
    {"greeting", env.greeting},
    {"total_fen", env.total_fen},
    {"count", env.count},
    {"remaining_fen", env.remaining_fen},
    {"remaining_count", env.remaining_count},
    {"refunded_fen", env.refunded_fen},
    {"payment_txn", env.payment_txn},
    {"idempotency_key", env.idempotency_key},
    {"created_at_ms", env.created_at_ms},
    {"paid_at_ms", env.paid_at_ms},
    {"expires_at_ms", env.expires_at_ms},
  };
}

// -- Output --------------------------------------------------------------------

/// Prints results and failures in the chosen form and returns the exit
/// status, so that every command ends with `return out.something(...)`.
class reporter {
public:
  explicit reporter(bool json) : json_(json) {}

  bool json_mode() const { return json_; }

  /// Fields that belong in the output whatever happens (the idempotency key
  /// of a create: the user needs it to retry safely after a failure).
  json extra = json::object();
  std::string extra_hint;

  int success(json fields, const std::string& text) {
    if (json_) {
      json out{{"ok", true}};
      out.update(extra);
      out.update(fields);
      std::cout << out.dump() << std::endl;
    } else {
      std::cout << text << std::flush;
    }
    return exit_ok;
  }

  /// A failure: the node's Error reply (exit 1), a usage error (exit 2) or a
  /// transport failure (exit 3). `owner_hint`: where the owner of a
  /// NOT_OWNER's segment is, when the node said so.
  int failure(errc code, const std::string& message, int exit_code,
              const std::string& owner_hint = {}) {
    if (json_) {
      json out{{"ok", false}};
      out.update(extra);
      out["error"] = json{{"code", to_string(code)},
                          {"message", message},
                          {"retryable", retryable(code)}};
      if (!owner_hint.empty())
        out["error"]["owner_hint"] = owner_hint;
      std::cout << out.dump() << std::endl;
    } else {
      std::cerr << "hongbao: " << message;
      if (exit_code == exit_service_error)
        std::cerr << " [" << to_string(code) << "]";
      if (exit_code == exit_service_error && retryable(code))
        std::cerr << " (temporary: try again)";
      if (!owner_hint.empty())
        std::cerr << " (owner: " << owner_hint << ")";
      std::cerr << "\n";
      bool may_retry = exit_code == exit_transport
                       || (exit_code == exit_service_error && retryable(code));
      if (may_retry && !extra_hint.empty())
        std::cerr << extra_hint << "\n";
    }
    return exit_code;
  }

  int failure(const hb::failure& f, int exit_code) {
    return failure(f.code, f.message, exit_code);
  }

private:
  bool json_;
};

// -- Talking to the node -------------------------------------------------------

/// What one request to the node came to: its body, or a failure with the
/// exit status it means (usage, transport or service error) and the owner
/// hint of a NOT_OWNER.
struct call_outcome {
  std::optional<response_body> body;
  errc code = errc::none;
  std::string message;
  int exit_code = exit_ok;
  std::string owner_hint;
};

/// Connects, authenticates and sends one request; prints nothing.
call_outcome call_node(const global_options& opts, request_body body,
                       int call_timeout_ms) {
  call_outcome out;
  auto fail = [&](errc code, std::string message, int exit_code) {
    out.code = code;
    out.message = std::move(message);
    out.exit_code = exit_code;
    return out;
  };
  auto where = client::parse_host_port(opts.server);
  if (!where)
    return fail(where.error().code, where.error().message, exit_usage);
  auto conn = client::connection::connect(where->host, where->port,
                                          opts.timeout_ms);
  if (!conn)
    return fail(conn.error().code, conn.error().message, exit_transport);
  auto authed = conn->authenticate(opts.token, opts.timeout_ms);
  if (!authed) {
    bool service = authed.error().code != errc::unavailable
                   && authed.error().code != errc::malformed;
    auto message = authed.error().message;
    if (authed.error().code == errc::unauthenticated)
      message = "authentication failed: " + message
                + " — check --token or HONGBAO_TOKEN";
    return fail(authed.error().code, message,
                service ? exit_service_error : exit_transport);
  }
  // The node learns the wait too: a request still queued there when this
  // client gives up is dropped instead of run for nobody.
  int wait_ms = call_timeout_ms > 0 ? call_timeout_ms : opts.timeout_ms;
  auto resp = conn->call(std::move(body), wait_ms,
                         static_cast<uint32_t>(wait_ms));
  if (!resp)
    return fail(resp.error().code, resp.error().message, exit_transport);
  if (auto* err = std::get_if<error_reply>(&resp->body)) {
    out.owner_hint = err->owner_hint;
    return fail(err->code, err->message, exit_service_error);
  }
  out.body = std::move(resp->body);
  return out;
}

/// Connects, authenticates and sends one request. Returns the response body,
/// or prints the failure and stores the exit status in `exit_code`.
std::optional<response_body> exchange(const global_options& opts,
                                      request_body body, reporter& out,
                                      int& exit_code,
                                      int call_timeout_ms = 0) {
  auto r = call_node(opts, std::move(body), call_timeout_ms);
  if (!r.body)
    exit_code = out.failure(r.code, r.message, r.exit_code, r.owner_hint);
  return std::move(r.body);
}

/// Returns the `T` in `body`, or prints a protocol error.
template <class T>
const T* expect(const response_body& body, reporter& out, int& exit_code) {
  if (auto* x = std::get_if<T>(&body))
    return x;
  exit_code = out.failure(errc::malformed,
                          "the node sent an unexpected kind of response",
                          exit_transport);
  return nullptr;
}

} // namespace

// -- Commands ------------------------------------------------------------------

int cmd_create(const global_options& opts, create_request req,
               const std::string& kind_text) {
  reporter out{opts.json};
  if (!parse_kind(kind_text, req.kind))
    return out.failure(errc::invalid_argument,
                       "--kind must be random or equal", exit_usage);
  if (req.idempotency_key.empty())
    req.idempotency_key = random_uuid();
  auto key = req.idempotency_key;
  out.extra["idempotency_key"] = key;
  out.extra_hint = "idempotency key: " + key
                   + " — repeat with --idempotency-key " + key
                   + " to retry without creating a second envelope";
  int rc = exit_ok;
  auto body = exchange(opts, std::move(req), out, rc);
  if (!body)
    return rc;
  auto* env = expect<envelope>(*body, out, rc);
  if (!env)
    return rc;
  std::string text
    = "created envelope " + std::to_string(env->id) + " (status "
      + to_string(env->status) + ")\n" + "  " + amount_text(env->total_fen)
      + " in " + shares_text(env->count) + " (" + to_string(env->kind)
      + ") from " + env->sender + " to group " + env->group + "\n"
      + "  idempotency key: " + key + " (repeat with --idempotency-key "
      + key + " to retry safely)\n";
  if (env->status == envelope_status::created)
    text += "next: hongbao pay " + std::to_string(env->id)
            + " --payment-txn TXN\n";
  return out.success(envelope_json(*env), text);
}

int cmd_pay(const global_options& opts, pay_request req) {
  reporter out{opts.json};
  bool from_wallet = req.from_wallet;
  out.extra["from_wallet"] = from_wallet;
  int rc = exit_ok;
  auto body = exchange(opts, std::move(req), out, rc);
  if (!body)
    return rc;
  auto* env = expect<envelope>(*body, out, rc);
  if (!env)
    return rc;
  std::string text = "envelope " + std::to_string(env->id) + " is "
                     + to_string(env->status) + " ("
                     + (from_wallet ? "paid from the wallet, " : "")
                     + "payment txn " + env->payment_txn
                     + "): " + amount_text(env->total_fen) + " in "
                     + shares_text(env->count) + ", expires "
                     + time_text(env->expires_at_ms) + "\n";
  return out.success(envelope_json(*env), text);
}

int cmd_grab(const global_options& opts, grab_request req) {
  reporter out{opts.json};
  auto id = req.envelope_id;
  auto user = req.user;
  int rc = exit_ok;
  auto body = exchange(opts, std::move(req), out, rc);
  if (!body)
    return rc;
  auto* res = expect<grab_result>(*body, out, rc);
  if (!res)
    return rc;
  std::string text;
  switch (res->outcome) {
    case grab_outcome::can_open:
      text = "can open: " + shares_text(res->remaining_count)
             + " left — next: hongbao open " + std::to_string(id)
             + " --user " + user + "\n";
      break;
    case grab_outcome::already_opened:
      text = "already opened by " + user + ": " + amount_text(res->amount_fen)
             + "\n";
      break;
    case grab_outcome::exhausted:
      text = "手慢了 too late: every share is taken\n";
      break;
    case grab_outcome::expired:
      text = "expired: this envelope can no longer be opened\n";
      break;
    case grab_outcome::not_paid:
      text = "not paid yet: the sender has not paid for this envelope\n";
      break;
  }
  return out.success(json{{"envelope_id", id},
                          {"user", user},
                          {"outcome", to_string(res->outcome)},
                          {"amount_fen", res->amount_fen},
                          {"remaining_count", res->remaining_count}},
                     text);
}

int cmd_open(const global_options& opts, open_request req) {
  reporter out{opts.json};
  auto id = req.envelope_id;
  auto user = req.user;
  int rc = exit_ok;
  auto body = exchange(opts, std::move(req), out, rc);
  if (!body)
    return rc;
  auto* res = expect<open_result>(*body, out, rc);
  if (!res)
    return rc;
  std::string text = (res->first_time ? "opened " : "already opened: ")
                     + amount_text(res->amount_fen) + ", share "
                     + std::to_string(res->seq) + " of "
                     + std::to_string(res->count)
                     + (res->first_time ? "" : " (the same share as before)")
                     + "\n";
  return out.success(json{{"envelope_id", id},
                          {"user", user},
                          {"amount_fen", res->amount_fen},
                          {"seq", res->seq},
                          {"count", res->count},
                          {"first_time", res->first_time}},
                     text);
}

namespace {

std::string detail_text(const envelope_detail& d) {
  const auto& env = d.env;
  std::string text = "envelope " + std::to_string(env.id) + "  "
                     + to_string(env.status) + ", " + to_string(env.kind)
                     + "\n";
  text += "  from " + env.sender + " to group " + env.group;
  if (!env.greeting.empty())
    text += ": \"" + env.greeting + "\"";
  text += "\n  total     " + amount_text(env.total_fen) + " in "
          + shares_text(env.count) + "\n";
  text += "  remaining " + amount_text(env.remaining_fen) + " in "
          + shares_text(env.remaining_count) + "\n";
  if (env.refunded_fen != 0)
    text += "  refunded  " + amount_text(env.refunded_fen)
            + " to the sender\n";
  text += "  created " + time_text(env.created_at_ms) + ", paid "
          + time_text(env.paid_at_ms) + ", expires "
          + time_text(env.expires_at_ms) + "\n";
  if (!env.payment_txn.empty())
    text += "  payment txn " + env.payment_txn + "\n";
  if (d.opens.empty())
    return text + "  no shares opened yet\n";
  size_t user_width = 4;
  for (auto& rec : d.opens)
    user_width = std::max(user_width, display_width(rec.user));
  char line[128];
  std::snprintf(line, sizeof(line), "  %4s  ", "seq");
  text += "\n" + std::string(line) + pad_right("user", user_width);
  std::snprintf(line, sizeof(line), "  %12s  %10s  %s\n", "yuan", "fen",
                "opened at");
  text += line;
  for (auto& rec : d.opens) {
    std::snprintf(line, sizeof(line), "  %4d  ", rec.seq);
    text += line + pad_right(rec.user, user_width);
    std::snprintf(line, sizeof(line), "  %12s  %10lld  %s\n",
                  to_yuan_string(rec.amount_fen).c_str(),
                  static_cast<long long>(rec.amount_fen),
                  time_text(rec.opened_at_ms).c_str());
    text += line;
  }
  if (auto* best = best_luck(d.opens))
    text += "  手气最佳 best luck: " + best->user + ", "
            + amount_text(best->amount_fen) + " (share "
            + std::to_string(best->seq) + ")\n";
  return text;
}

} // namespace

int cmd_show(const global_options& opts, get_request req) {
  reporter out{opts.json};
  int rc = exit_ok;
  auto body = exchange(opts, req, out, rc);
  if (!body)
    return rc;
  auto* detail = expect<envelope_detail>(*body, out, rc);
  if (!detail)
    return rc;
  auto fields = envelope_json(detail->env);
  auto opens = json::array();
  for (auto& rec : detail->opens)
    opens.push_back(json{{"seq", rec.seq},
                         {"user", rec.user},
                         {"amount_fen", rec.amount_fen},
                         {"opened_at_ms", rec.opened_at_ms}});
  fields["opens"] = std::move(opens);
  if (auto* best = best_luck(detail->opens))
    fields["best_luck"] = json{{"user", best->user},
                               {"amount_fen", best->amount_fen},
                               {"seq", best->seq}};
  else
    fields["best_luck"] = nullptr;
  return out.success(std::move(fields), detail_text(*detail));
}

namespace {

std::string history_text(const std::string& user, history_kind kind,
                         const history_page& page) {
  std::string what = to_string(kind);
  std::string text;
  if (page.items.empty()) {
    text = "no " + what + " envelopes for " + user
           + (page.next_cursor.empty() ? "" : " on this page") + "\n";
  } else {
    // The node sends newest first; sorting again (stably) costs nothing and
    // keeps the table right whatever the node does.
    auto items = page.items;
    std::stable_sort(items.begin(), items.end(),
                     [](const history_item& x, const history_item& y) {
                       return x.at_ms > y.at_ms;
                     });
    std::string who = kind == history_kind::received ? "from" : "counterpart";
    size_t group_width = 5;
    for (auto& item : items)
      group_width = std::max(group_width, display_width(item.group));
    text = what + " by " + user + ", newest first:\n";
    char line[160];
    std::snprintf(line, sizeof(line), "  %-23s  %-19s  %12s  %10s  ",
                  kind == history_kind::received ? "opened at" : "paid at",
                  "envelope id", "yuan", "fen");
    text += line + pad_right("group", group_width) + "  " + who + "\n";
    for (auto& item : items) {
      std::snprintf(line, sizeof(line), "  %-23s  %-19lld  %12s  %10lld  ",
                    time_text(item.at_ms).c_str(),
                    static_cast<long long>(item.envelope_id),
                    to_yuan_string(item.amount_fen).c_str(),
                    static_cast<long long>(item.amount_fen));
      text += line
              + pad_right(item.group.empty() ? "-" : item.group, group_width)
              + "  " + (item.counterpart.empty() ? "-" : item.counterpart)
              + "\n";
    }
  }
  if (!page.next_cursor.empty())
    text += "more: --cursor " + page.next_cursor + "\n";
  return text;
}

} // namespace

int cmd_history(const global_options& opts, history_query req) {
  reporter out{opts.json};
  auto user = req.user;
  auto kind = req.kind;
  int rc = exit_ok;
  auto body = exchange(opts, std::move(req), out, rc);
  if (!body)
    return rc;
  auto* page = expect<history_page>(*body, out, rc);
  if (!page)
    return rc;
  auto items = json::array();
  for (auto& item : page->items)
    items.push_back(json{{"envelope_id", item.envelope_id},
                         {"amount_fen", item.amount_fen},
                         {"at_ms", item.at_ms},
                         {"group", item.group},
                         {"counterpart", item.counterpart}});
  return out.success(json{{"user", user},
                          {"kind", to_string(kind)},
                          {"items", std::move(items)},
                          {"next_cursor", page->next_cursor}},
                     history_text(user, kind, *page));
}

int cmd_balance(const global_options& opts, balance_request req) {
  reporter out{opts.json};
  int rc = exit_ok;
  auto body = exchange(opts, std::move(req), out, rc);
  if (!body)
    return rc;
  auto* info = expect<balance_info>(*body, out, rc);
  if (!info)
    return rc;
  return out.success(json{{"user", info->user},
                          {"balance_fen", info->balance_fen}},
                     "wallet (零钱) of " + info->user + ": "
                       + amount_text(info->balance_fen) + "\n");
}

namespace {

std::string reconcile_text(const reconcile_report& r) {
  std::string text = "reconciliation (对账) of envelopes created ";
  text += r.since_ms > 0 ? "since " + time_text(r.since_ms) : "at any time";
  text += "\n  checked   " + std::to_string(r.envelopes_checked)
          + " envelopes, " + std::to_string(r.opens_checked) + " opens, "
          + std::to_string(r.accounts_checked) + " accounts\n";
  text += "  wallets   " + amount_text(r.wallets_fen) + "\n";
  text += "  escrow    " + amount_text(r.escrow_fen) + "\n";
  text += "  external  " + amount_text(r.external_fen) + "\n";
  text += "  relay pending: " + std::to_string(r.relay_pending)
          + (r.relay_pending == 1 ? " open" : " opens")
          + " not yet credited (not an error)\n";
  for (auto& d : r.discrepancies) {
    text += "  " + d.kind + "  envelope "
            + (d.envelope_id != 0 ? std::to_string(d.envelope_id) : "-")
            + "  user " + (d.user.empty() ? "-" : d.user);
    if (!d.detail.empty())
      text += ": " + d.detail;
    if (d.repaired)
      text += " (repaired)";
    text += "\n";
  }
  if (r.discrepancies.empty())
    text += "reconciliation: OK (0 discrepancies)\n";
  else
    text += "reconciliation: " + discrepancies_text(r.discrepancies.size())
            + "\n";
  return text;
}

} // namespace

int cmd_reconcile(const global_options& opts, const std::string& since_text) {
  reporter out{opts.json};
  reconcile_request req;
  if (!since_text.empty()) {
    std::string why;
    auto since = parse_since(since_text, unix_now_ms(), why);
    if (!since)
      return out.failure(errc::invalid_argument, why, exit_usage);
    req.since_ms = *since;
  }
  int rc = exit_ok;
  auto timeout = opts.timeout_given ? opts.timeout_ms : reconcile_timeout_ms;
  auto body = exchange(opts, req, out, rc, timeout);
  if (!body)
    return rc;
  auto* r = expect<reconcile_report>(*body, out, rc);
  if (!r)
    return rc;
  auto found = json::array();
  for (auto& d : r->discrepancies)
    found.push_back(json{{"kind", d.kind},
                         {"envelope_id", d.envelope_id},
                         {"user", d.user},
                         {"detail", d.detail},
                         {"repaired", d.repaired}});
  out.success(json{{"consistent", r->discrepancies.empty()},
                   {"since_ms", r->since_ms},
                   {"envelopes_checked", r->envelopes_checked},
                   {"opens_checked", r->opens_checked},
                   {"accounts_checked", r->accounts_checked},
                   {"wallets_fen", r->wallets_fen},
                   {"escrow_fen", r->escrow_fen},
                   {"external_fen", r->external_fen},
                   {"relay_pending", r->relay_pending},
                   {"discrepancies", std::move(found)}},
              reconcile_text(*r));
  // Scripts and cron jobs see a failed reconciliation in the exit status.
  return r->discrepancies.empty() ? exit_ok : exit_service_error;
}

namespace {

/// The group of a dotted metric name: "opens" for "opens.committed", the
/// whole name when it has no dot.
std::string metric_group(const std::string& name) {
  return name.substr(0, name.find('.'));
}

/// "manual" or "automatic".
const char* block_mode(const segment_state& seg) {
  return seg.manual ? "manual" : "automatic";
}

json segment_json(const segment_state& seg) {
  return json{{"segment", seg.segment},
              {"blocked", seg.blocked},
              {"manual", seg.manual},
              {"reason", seg.reason}};
}

// -- The cluster view ------------------------------------------------------------

/// Columns of text, padded by display width; `right` columns (numbers) are
/// aligned right. Every row has as many cells as the header.
std::string table_text(const std::vector<std::string>& header,
                       const std::vector<std::vector<std::string>>& rows,
                       const std::vector<bool>& right) {
  std::vector<size_t> width(header.size());
  for (size_t c = 0; c < header.size(); ++c) {
    width[c] = display_width(header[c]);
    for (auto& row : rows)
      width[c] = std::max(width[c], display_width(row[c]));
  }
  auto line = [&](const std::vector<std::string>& cells) {
    std::string out = " ";
    for (size_t c = 0; c < cells.size(); ++c) {
      auto pad = std::string(width[c] - display_width(cells[c]), ' ');
      bool last = c + 1 == cells.size();
      out += " ";
      out += right[c] ? pad + cells[c] : cells[c] + (last ? "" : pad);
      if (!last)
        out += " ";
    }
    return out + "\n";
  };
  std::string text = line(header);
  for (auto& row : rows)
    text += line(row);
  return text;
}

std::string address(const std::string& host, int32_t port) {
  if (host.empty() && port == 0)
    return "-";
  return host + ":" + std::to_string(port);
}

/// "alive", "lease expired", "old incarnation" (the node restarted since it
/// took the segments) or "not joined" for the owner of a group; "-" for the
/// unowned segments.
std::string owner_cell(const set_view& view, const owner_group& g) {
  return g.owner.empty() ? "-" : hb::owner_state(view, g);
}

/// "2500 ms", or "expired 1200 ms ago".
std::string lease_left_text(int64_t left_ms) {
  if (left_ms > 0)
    return std::to_string(left_ms) + " ms";
  return "expired " + std::to_string(-left_ms) + " ms ago";
}

/// Ranges shown in a table cell at most this wide: the placement spreads a
/// zone's segments by segment % 3, so an owner's ranges are often every
/// third segment, hundreds of them (--json lists them all).
constexpr size_t ranges_width_max = 48;

/// "0-1,3-4,6-7", or its start and how many ranges there are in all.
std::string ranges_cell(const std::vector<int32_t>& segments) {
  auto ranges = compact_ranges(segments);
  auto text = ranges_text(ranges);
  if (text.size() <= ranges_width_max)
    return text;
  auto cut = text.rfind(',', ranges_width_max);
  return text.substr(0, cut) + ",... (" + std::to_string(ranges.size())
         + " ranges)";
}

std::string cluster_nodes_text(const cluster_info& c) {
  std::vector<std::vector<std::string>> rows;
  for (auto& view : c.sets)
    for (auto& n : view.nodes)
      rows.push_back({n.node, n.zone, view.set, std::to_string(n.incarnation),
                      !lease_alive(view, n) ? "dead"
                      : n.draining          ? "draining"
                                            : "alive",
                      lease_left_text(n.expires_at_ms - view.db_now_ms),
                      address(n.peer_host, n.peer_port),
                      address(n.gateway_host, n.gateway_port)});
  if (rows.empty())
    return "\nno node has joined yet\n";
  return "\nnodes (" + std::to_string(rows.size()) + "):\n"
         + table_text({"node", "zone", "SET", "incarnation", "state",
                       "lease left", "peer", "gateway"},
                      rows,
                      {false, false, false, true, false, true, false, false});
}

std::string cluster_set_text(const set_view& view) {
  auto groups = owner_groups(view);
  size_t unowned = 0;
  for (auto& g : groups)
    if (g.owner.empty())
      unowned += g.segments.size();
  std::string text = "\nSET " + view.set + ": "
                     + std::to_string(view.owners.size()) + " segments";
  if (unowned > 0)
    text += ", " + std::to_string(unowned) + " not taken yet";
  if (!view.blocked.empty())
    text += ", " + std::to_string(view.blocked.size()) + " blocked";
  text += "\n";
  if (!groups.empty()) {
    std::vector<std::vector<std::string>> rows;
    for (auto& g : groups)
      rows.push_back({g.owner.empty() ? "(none)" : g.owner,
                      g.owner.empty() ? "-" : std::to_string(g.owner_incarnation),
                      owner_cell(view, g), std::to_string(g.segments.size()),
                      g.owner.empty() ? "-" : std::to_string(g.owner_epoch_max),
                      ranges_cell(g.segments)});
    text += table_text({"owner", "incarnation", "state", "segments",
                        "owner epoch", "ranges"},
                       rows, {false, true, false, true, true, false});
  }
  for (auto& seg : view.blocked)
    text += "  blocked: segment " + std::to_string(seg.segment) + " ("
            + block_mode(seg) + (seg.reason.empty() ? "" : ": " + seg.reason)
            + ")\n";
  return text;
}

json cluster_json(const cluster_info& c) {
  if (!c.enabled)
    return json{{"enabled", false}};
  auto sets = json::array();
  for (auto& view : c.sets) {
    auto nodes = json::array();
    for (auto& n : view.nodes)
      nodes.push_back(json{{"name", n.node},
                           {"zone", n.zone},
                           {"incarnation", n.incarnation},
                           {"alive", lease_alive(view, n)},
                           {"draining", n.draining},
                           {"lease_left_ms", n.expires_at_ms - view.db_now_ms},
                           {"peer", address(n.peer_host, n.peer_port)},
                           {"gateway", address(n.gateway_host, n.gateway_port)}});
    auto owners = json::array();
    for (auto& g : owner_groups(view))
      owners.push_back(json{{"owner", g.owner},
                            {"owner_incarnation", g.owner_incarnation},
                            {"state", owner_cell(view, g)},
                            {"segment_count", g.segments.size()},
                            {"segments", segments_text(g.segments)},
                            {"owner_epoch_max", g.owner_epoch_max}});
    auto blocked = json::array();
    for (auto& seg : view.blocked)
      blocked.push_back(segment_json(seg));
    sets.push_back(json{{"name", view.set},
                        {"db_now_ms", view.db_now_ms},
                        {"nodes", std::move(nodes)},
                        {"owners", std::move(owners)},
                        {"blocked", std::move(blocked)}});
  }
  return json{{"enabled", true},
              {"set", c.set},
              {"zone", c.zone},
              {"incarnation", c.incarnation},
              {"fenced", c.fenced},
              {"draining", c.draining},
              {"warnings", c.warnings},
              {"zones", c.zones},
              {"sets", std::move(sets)}};
}

std::string cluster_text(const cluster_info& c) {
  if (!c.enabled)
    return {};
  std::string zones;
  for (auto& z : c.zones)
    zones += (zones.empty() ? "" : ", ") + z;
  std::string text = "\ncluster: SET " + c.set + ", zone " + c.zone
                     + ", incarnation " + std::to_string(c.incarnation)
                     + (c.incarnation == 0 ? " (not joined yet)" : "")
                     + "; zones " + zones + "\n";
  if (c.fenced)
    text += "  FENCED: the node could not renew its lease in time; it serves "
            "nothing (answers UNAVAILABLE) until it has joined again\n";
  if (c.draining)
    text += "  DRAINING: the node hands its segments over and takes none\n";
  for (auto& w : c.warnings)
    text += "  WARNING: " + w + "\n";
  text += cluster_nodes_text(c);
  for (auto& view : c.sets)
    text += cluster_set_text(view);
  return text;
}

json stats_json_of(const node_stats& st) {
  auto metrics = json::object();
  for (auto& m : st.metrics)
    metrics[m.name] = m.value;
  auto segments = json::array();
  for (auto& seg : st.segments)
    segments.push_back(segment_json(seg));
  return json{{"node", st.node_name},
              {"metrics", std::move(metrics)},
              {"segments", std::move(segments)},
              {"cluster", cluster_json(st.cluster)}};
}

// The node's metrics and blocked segments, then its cluster.
std::string local_stats_text(const node_stats& st) {
  std::string text = "node " + st.node_name + "\n";
  if (st.metrics.empty()) {
    text += "\n  no metrics\n";
  } else {
    // The node sends them sorted by name; group them by prefix all the same
    // (stably, keeping the node's order within a group).
    auto metrics = st.metrics;
    std::stable_sort(metrics.begin(), metrics.end(),
                     [](const metric& x, const metric& y) {
                       return metric_group(x.name) < metric_group(y.name);
                     });
    size_t name_width = 0;
    size_t value_width = 0;
    for (auto& m : metrics) {
      name_width = std::max(name_width, display_width(m.name));
      value_width = std::max(value_width, std::to_string(m.value).size());
    }
    std::string group;
    for (size_t i = 0; i < metrics.size(); ++i) {
      auto& m = metrics[i];
      auto g = metric_group(m.name);
      if (i == 0 || g != group)
        text += "\n";
      group = g;
      auto value = std::to_string(m.value);
      text += "  " + pad_right(m.name, name_width) + "  "
              + std::string(value_width - value.size(), ' ') + value + "\n";
    }
  }
  std::vector<segment_state> blocked;
  for (auto& seg : st.segments)
    if (seg.blocked)
      blocked.push_back(seg);
  if (blocked.empty())
    return text + "\nno segment blocked\n";
  std::sort(blocked.begin(), blocked.end(),
            [](const segment_state& x, const segment_state& y) {
              return x.segment < y.segment;
            });
  text += "\nblocked segments (" + std::to_string(blocked.size()) + "):\n";
  char line[64];
  std::snprintf(line, sizeof(line), "  %7s  %-9s  %s\n", "segment", "mode",
                "reason");
  text += line;
  for (auto& seg : blocked) {
    std::snprintf(line, sizeof(line), "  %7d  %-9s  ", seg.segment,
                  block_mode(seg));
    text += line + (seg.reason.empty() ? "-" : seg.reason) + "\n";
  }
  return text;
}

} // namespace

std::string stats_text(const node_stats& st) {
  return local_stats_text(st) + cluster_text(st.cluster);
}

std::string stats_json(const node_stats& st) {
  return stats_json_of(st).dump();
}

int cmd_stats(const global_options& opts) {
  reporter out{opts.json};
  int rc = exit_ok;
  auto body = exchange(opts, stats_request{}, out, rc);
  if (!body)
    return rc;
  auto* st = expect<node_stats>(*body, out, rc);
  if (!st)
    return rc;
  return out.success(stats_json_of(*st), stats_text(*st));
}

namespace {

std::string segment_text(const segment_state& seg) {
  auto n = std::to_string(seg.segment);
  if (!seg.blocked)
    return "segment " + n + ": not blocked\n";
  std::string text = "segment " + n + ": blocked (" + block_mode(seg) + ")";
  if (!seg.reason.empty())
    text += ": " + seg.reason;
  text += "\n  requests for its envelopes fail with segment_unavailable; "
          "creates go to other segments\n";
  text += seg.manual ? "  lifted only by: hongbao segment unblock " + n + "\n"
                     : "  lifted by the node's probe once the segment "
                       "answers again\n";
  return text;
}

} // namespace

int cmd_segment(const global_options& opts, segment_request req) {
  reporter out{opts.json};
  int rc = exit_ok;
  auto body = exchange(opts, std::move(req), out, rc);
  if (!body)
    return rc;
  auto* seg = expect<segment_state>(*body, out, rc);
  if (!seg)
    return rc;
  return out.success(segment_json(*seg), segment_text(*seg));
}

namespace {

json control_json(const control_result& r) {
  auto moves = json::array();
  for (auto& m : r.moves)
    moves.push_back(json{{"segment", m.segment}, {"from", m.from}, {"to", m.to}});
  return json{{"node", r.node},       {"draining", r.draining},
              {"owned", r.owned},     {"moves", std::move(moves)},
              {"message", r.message}};
}

std::string control_text(const control_request& req, const control_result& r) {
  std::string text = r.message + "\n";
  if (req.action != control_action::rebalance)
    return text;
  // The moves grouped by (from, to), each with its segments as ranges.
  std::map<std::pair<std::string, std::string>, std::vector<int32_t>> groups;
  for (auto& m : r.moves)
    groups[{m.from, m.to}].push_back(m.segment);
  for (auto& kv : groups)
    text += "  " + kv.first.first + " -> " + kv.first.second + ": "
            + std::to_string(kv.second.size()) + " segments ("
            + segments_text(kv.second) + ")\n";
  return text;
}

// How many segments `node` owns in the cluster view of a node's stats; -1
// if the view does not list it.
int owned_in_view(const node_stats& st, const std::string& node) {
  for (auto& view : st.cluster.sets) {
    if (auto* lease = find_lease(view, node))
      return static_cast<int>(
        owned_segments(view, node, lease->incarnation).size());
  }
  return -1;
}

} // namespace

int cmd_cluster(const global_options& opts, control_request req, int wait_ms) {
  reporter out{opts.json};
  int rc = exit_ok;
  auto started = std::chrono::steady_clock::now();
  auto body = exchange(opts, req, out, rc);
  if (!body)
    return rc;
  auto* r = expect<control_result>(*body, out, rc);
  if (!r)
    return rc;
  auto result = *r;
  if (req.action != control_action::drain || wait_ms <= 0)
    return out.success(control_json(result), control_text(req, result));
  // Follow the drain: the view of the node this client talks to (its own
  // SET's from the database, another SET's pulled every sync_ms).
  if (!out.json_mode())
    std::cout << result.message << "\n" << std::flush;
  auto deadline = started + std::chrono::milliseconds(wait_ms);
  int last = result.owned;
  while (true) {
    auto sb = call_node(opts, stats_request{}, 0);
    int left = -1;
    if (sb.body)
      if (auto* st = std::get_if<node_stats>(&*sb.body))
        left = owned_in_view(*st, req.node);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                std::chrono::steady_clock::now() - started)
                .count();
    if (left >= 0 && left != last && !out.json_mode())
      std::cout << "  " << req.node << ": " << left << " segments left after "
                << ms << " ms\n"
                << std::flush;
    if (left >= 0)
      last = left;
    if (left == 0) {
      result.owned = 0;
      result.message = "node " + req.node + " drained in "
                       + std::to_string(ms) + " ms";
      json fields = control_json(result);
      fields["drain_ms"] = ms;
      return out.success(fields, result.message + "\n");
    }
    if (std::chrono::steady_clock::now() >= deadline)
      return out.failure(errc::deadline_exceeded,
                         "node " + req.node + " still owns "
                           + std::to_string(last) + " segments after "
                           + std::to_string(ms)
                           + " ms (is another node of its SET serving?)",
                         exit_service_error);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

int usage_error(const std::string& message) {
  return reporter{true}.failure(errc::invalid_argument, message, exit_usage);
}

} // namespace hb::client::cli
