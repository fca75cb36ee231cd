#pragma once

// Small blocking libpq helpers for set-up and audits (the hot path of the
// PostgreSQL baselines is in target_pg.cpp and never blocks).

#include <memory>
#include <string>
#include <vector>

#include <libpq-fe.h>

#include "domain/errc.hpp"

namespace hb::bench::pg {

struct conn_closer {
  void operator()(PGconn* c) const { PQfinish(c); }
};
struct result_clearer {
  void operator()(PGresult* r) const { PQclear(r); }
};
using conn_ptr = std::unique_ptr<PGconn, conn_closer>;
using result_ptr = std::unique_ptr<PGresult, result_clearer>;

/// Connects (blocking); errors are errc::unavailable with libpq's message.
outcome<conn_ptr> connect(const std::string& url);

/// Runs one statement with text parameters; any status but COMMAND_OK and
/// TUPLES_OK is errc::internal with the server's message.
outcome<result_ptr> exec(PGconn* c, const std::string& sql,
                         const std::vector<std::string>& params = {});

/// Runs a script of several statements (simple query protocol).
outcome<done> exec_script(PGconn* c, const std::string& sql);

/// "{1,2,3}": a bigint[] parameter.
std::string int_array(const std::vector<int64_t>& values);

/// The server's message of a failed result, one line.
std::string message_of(PGconn* c, const PGresult* r);

} // namespace hb::bench::pg
