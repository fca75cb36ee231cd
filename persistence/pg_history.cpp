// pg_store: a user's history of sent and received envelopes, paged newest
// first behind an opaque cursor, over hot and cold storage.
#include "persistence/pg_store.hpp"

#include <cerrno>
#include <cstdlib>
#include <string>
#include <vector>

#include "persistence/pg_detail.hpp"

namespace hb::persistence {

using namespace detail;

namespace {

// -- History cursors -------------------------------------------------------------

bool parse_i64(const std::string& text, int64_t& out) {
  // Digits with an optional minus only: strtoll alone would also take
  // leading blanks and a plus sign.
  size_t first = !text.empty() && text[0] == '-' ? 1 : 0;
  if (text.size() == first || text.size() > 20
      || text.find_first_not_of("0123456789", first) != std::string::npos)
    return false;
  errno = 0;
  auto value = std::strtoll(text.c_str(), nullptr, 10);
  if (errno != 0)
    return false;
  out = value;
  return true;
}

/// "<at_ms>:<envelope_id>" of the last item of the previous page.
bool parse_cursor(const std::string& cursor, int64_t& at_ms,
                  int64_t& envelope_id) {
  auto colon = cursor.find(':');
  return colon != std::string::npos
         && parse_i64(cursor.substr(0, colon), at_ms)
         && parse_i64(cursor.substr(colon + 1), envelope_id);
}

std::string make_cursor(const history_item& last) {
  return std::to_string(last.at_ms) + ":" + std::to_string(last.envelope_id);
}

} // namespace

// -- History ---------------------------------------------------------------------

outcome<history_page> pg_store::history(const history_query& q) {
  constexpr int32_t limit_max = 1000;
  if (q.limit < 1 || q.limit > limit_max)
    return failure{errc::invalid_argument,
                   "history: limit must be 1.." + std::to_string(limit_max)};
  if (q.kind != history_kind::sent && q.kind != history_kind::received)
    return failure{errc::invalid_argument, "history: unknown kind"};
  int64_t at_ms = 0;
  int64_t envelope_id = 0;
  if (!q.cursor.empty() && !parse_cursor(q.cursor, at_ms, envelope_id))
    return failure{errc::invalid_argument, "history: malformed cursor"};
  if (!ensure_connected())
    return unreachable(conn_);
  // One more than asked tells whether another page follows.
  static constexpr const char* first_page =
    "SELECT envelope_id, amount_fen, at_ms, group_id, counterpart"
    " FROM user_records_all WHERE user_id = $1 AND kind = $2"
    " ORDER BY at_ms DESC, envelope_id DESC LIMIT $3";
  static constexpr const char* next_page =
    "SELECT envelope_id, amount_fen, at_ms, group_id, counterpart"
    " FROM user_records_all WHERE user_id = $1 AND kind = $2"
    " AND (at_ms, envelope_id) < ($4::bigint, $5::bigint)"
    " ORDER BY at_ms DESC, envelope_id DESC LIMIT $3";
  params p;
  p.add(q.user).add(int64_t{static_cast<int>(q.kind)}).add(q.limit + 1);
  if (!q.cursor.empty())
    p.add(at_ms).add(envelope_id);
  auto r = run(conn_, "history", q.cursor.empty() ? first_page : next_page, p);
  if (!r.ok())
    return r.error;
  history_page page;
  for (int row = 0; row < r.rows() && row < q.limit; ++row)
    page.items.push_back(history_item{r.i64(row, 0), r.i64(row, 1),
                                      r.i64(row, 2), r.text(row, 3),
                                      r.text(row, 4)});
  if (r.rows() > q.limit)
    page.next_cursor = make_cursor(page.items.back());
  return page;
}

} // namespace hb::persistence
