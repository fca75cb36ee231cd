#include "load/pg_util.hpp"

namespace hb::bench::pg {

namespace {

std::string one_line(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' '))
    text.pop_back();
  for (auto& ch : text)
    if (ch == '\n')
      ch = ' ';
  return text;
}

} // namespace

outcome<conn_ptr> connect(const std::string& url) {
  conn_ptr c{PQconnectdb(url.c_str())};
  if (!c || PQstatus(c.get()) != CONNECTION_OK)
    return failure{errc::unavailable,
                   "cannot connect to PostgreSQL (" + url + "): "
                     + one_line(c ? PQerrorMessage(c.get()) : "out of memory")};
  // NOTICEs ("relation exists, skipping") are not for the bench's reader.
  PQsetNoticeProcessor(c.get(), [](void*, const char*) {}, nullptr);
  return c;
}

std::string message_of(PGconn* c, const PGresult* r) {
  const char* msg = r != nullptr ? PQresultErrorMessage(r) : nullptr;
  if (msg == nullptr || *msg == '\0')
    msg = PQerrorMessage(c);
  return one_line(msg);
}

outcome<result_ptr> exec(PGconn* c, const std::string& sql,
                         const std::vector<std::string>& params) {
  std::vector<const char*> values;
  values.reserve(params.size());
  for (auto& p : params)
    values.push_back(p.c_str());
  result_ptr r{PQexecParams(c, sql.c_str(), static_cast<int>(values.size()),
                            nullptr, values.data(), nullptr, nullptr, 0)};
  auto status = r ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK)
    return failure{PQstatus(c) == CONNECTION_OK ? errc::internal
                                                : errc::unavailable,
                   message_of(c, r.get())};
  return r;
}

outcome<done> exec_script(PGconn* c, const std::string& sql) {
  result_ptr r{PQexec(c, sql.c_str())};
  auto status = r ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK)
    return failure{errc::internal, message_of(c, r.get())};
  // PQexec returns the last result only; earlier failures abort the script.
  return done{};
}

std::string int_array(const std::vector<int64_t>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0)
      out += ',';
    out += std::to_string(values[i]);
  }
  out += '}';
  return out;
}

} // namespace hb::bench::pg
