// The PostgreSQL baselines, the two ways a relational red-envelope service
// is usually written:
//
//   pg-lock    BEGIN; SELECT ... FOR UPDATE on the envelope row; the client
//              computes the share; INSERT the open; UPDATE the envelope;
//              COMMIT. The row lock is held for two round trips and the
//              commit.
//   pg-update  one statement: a conditional UPDATE ... WHERE remaining_count
//              > 0 that computes the share in SQL, and the INSERT of the open
//              in the same statement (bench/baseline/statements.sql).
//
// Each connection carries one request at a time (a transaction owns its
// connection), so concurrency comes from many connections, as with any
// connection pool. libpq's pipeline mode sends the statements of one step
// together (BEGIN + SELECT FOR UPDATE + the user's open; then INSERT +
// UPDATE + COMMIT), the fastest honest way to drive a row-lock transaction.

#include <cstring>
#include <map>
#include <unordered_map>

#include "bench/embedded.hpp"
#include "load/pg_util.hpp"
#include "bench/targets.hpp"

namespace hb::bench {

namespace {

enum class pg_mode { lock, update };

/// Splits statements.sql into its "-- name: X" blocks.
std::map<std::string, std::string> parse_statements(const std::string& text) {
  std::map<std::string, std::string> out;
  std::string name;
  std::string body;
  size_t pos = 0;
  auto finish = [&] {
    while (!body.empty() && (body.back() == '\n' || body.back() == ' '))
      body.pop_back();
    if (!name.empty())
      out[name] = body;
    body.clear();
  };
  while (pos < text.size()) {
    auto end = text.find('\n', pos);
    if (end == std::string::npos)
      end = text.size();
    std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    if (line.rfind("-- name: ", 0) == 0) {
      finish();
      name = line.substr(9);
    } else if (line.rfind("--", 0) != 0 && !name.empty()) {
      body += line + "\n";
    }
  }
  finish();
  return out;
}

errc errc_of_sqlstate(const char* state) {
  if (state == nullptr)
    return errc::unavailable;
  // A unique violation (two opens of one user at once), a serialization
  // failure or a deadlock: the same request succeeds when sent again.
  if (std::strcmp(state, "23505") == 0 || std::strcmp(state, "40001") == 0
      || std::strcmp(state, "40P01") == 0)
    return errc::busy;
  return errc::internal;
}

class pg_session final : public session {
public:
  pg_session(pg::conn_ptr conn, const run_book& book, pg_mode mode)
    : conn_(std::move(conn)), book_(book), mode_(mode) {}

  int fd() const override { return PQsocket(conn_.get()); }
  size_t window() const override { return 1; }
  size_t in_flight() const override { return busy_ ? 1 : 0; }

  void submit(uint64_t tag, const request& req) override {
    busy_ = true;
    tag_ = tag;
    req_ = req;
    step_ = 0;
    error_ = reply{};
    const auto& env = book_.envelopes[req.env];
    auto id = std::to_string(env.id);
    const auto& user = book_.users[req.user];
    switch (req.kind) {
      case op_kind::create: {
        const auto& c = env.create;
        send({{"create",
               {c.sender, c.group, c.greeting, c.idempotency_key,
                std::to_string(static_cast<int>(c.kind)),
                std::to_string(c.total_fen), std::to_string(c.count)}}});
        break;
      }
      case op_kind::pay:
        send({{"pay", {id, env.payment_txn}}});
        break;
      case op_kind::grab:
        send({{"grab", {id, user}}});
        break;
      case op_kind::open:
        if (mode_ == pg_mode::update)
          send({{"open_update", {id, user}}});
        else
          send({{"begin", {}}, {"lock", {id}}, {"mine", {id, user}}});
        break;
    }
  }

  bool wants_write() const override { return wants_write_; }

  bool flush(std::string& why) override {
    int rc = PQflush(conn_.get());
    if (rc < 0) {
      why = pg::message_of(conn_.get(), nullptr);
      return false;
    }
    wants_write_ = rc == 1;
    return true;
  }

  bool read(std::vector<completion>& out, std::string& why) override {
    if (PQconsumeInput(conn_.get()) == 0) {
      why = pg::message_of(conn_.get(), nullptr);
      return false;
    }
    while (busy_ && PQisBusy(conn_.get()) == 0) {
      PGresult* r = PQgetResult(conn_.get());
      if (r == nullptr) {
        // The end of one statement's results; two in a row: nothing more yet.
        if (!after_result_)
          break;
        after_result_ = false;
        continue;
      }
      if (PQresultStatus(r) == PGRES_PIPELINE_SYNC) {
        PQclear(r);
        after_result_ = false;
        if (!on_step_done(out, why))
          return false;
        continue;
      }
      after_result_ = true;
      results_.emplace_back(r);
    }
    if (PQstatus(conn_.get()) != CONNECTION_OK) {
      why = pg::message_of(conn_.get(), nullptr);
      return false;
    }
    return true;
  }

  std::vector<uint64_t> abandon() override {
    std::vector<uint64_t> tags;
    if (busy_)
      tags.push_back(tag_);
    busy_ = false;
    return tags;
  }

private:
  using statement = std::pair<const char*, std::vector<std::string>>;

  /// Sends one step: the statements and a sync, in one write.
  void send(const std::vector<statement>& stmts) {
    results_.clear();
    expected_ = stmts.size();
    for (auto& [name, params] : stmts) {
      std::vector<const char*> values;
      for (auto& p : params)
        values.push_back(p.c_str());
      PQsendQueryPrepared(conn_.get(), name, static_cast<int>(values.size()),
                          values.data(), nullptr, nullptr, 0);
    }
    PQpipelineSync(conn_.get());
    wants_write_ = true;
  }

  /// The first failed result of the step, if any.
  const PGresult* failed() const {
    for (auto& r : results_) {
      auto st = PQresultStatus(r.get());
      if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        return r.get();
    }
    return nullptr;
  }

  bool on_step_done(std::vector<completion>& out, std::string& why) {
    if (results_.size() != expected_) {
      why = "expected " + std::to_string(expected_) + " results, got "
            + std::to_string(results_.size());
      return false;
    }
    if (step_ == rollback_step) {
      finish(out, error_);
      return true;
    }
    if (auto* bad = failed()) {
      reply err;
      err.code = errc_of_sqlstate(PQresultErrorField(bad, PG_DIAG_SQLSTATE));
      err.message = pg::message_of(conn_.get(), bad);
      if (PQtransactionStatus(conn_.get()) != PQTRANS_IDLE) {
        error_ = std::move(err);
        step_ = rollback_step;
        send({{"rollback", {}}});
        return true;
      }
      finish(out, err);
      return true;
    }
    reply rep;
    switch (req_.kind) {
      case op_kind::create:
        rep = on_create();
        break;
      case op_kind::pay:
        rep = on_pay();
        break;
      case op_kind::grab:
        rep = on_grab();
        break;
      case op_kind::open:
        if (mode_ == pg_mode::update) {
          rep = on_open_update();
        } else if (step_ == 0) {
          on_locked();
          return true;
        } else {
          rep = result_;
        }
        break;
    }
    finish(out, rep);
    return true;
  }

  void finish(std::vector<completion>& out, reply rep) {
    busy_ = false;
    out.push_back(completion{tag_, std::move(rep)});
  }

  static reply error(errc code, std::string message) {
    reply r;
    r.code = code;
    r.message = std::move(message);
    return r;
  }

  const PGresult* result(size_t i) const { return results_[i].get(); }

  static int64_t get_i64(const PGresult* r, int col) {
    return std::stoll(PQgetvalue(r, 0, col));
  }

  reply on_create() {
    auto* r = result(0);
    if (PQntuples(r) != 1)
      return error(errc::internal, "create returned no id");
    reply rep;
    rep.envelope_id = get_i64(r, 0);
    return rep;
  }

  reply on_pay() {
    auto* r = result(0);
    if (PQntuples(r) == 0)
      return error(errc::not_found, "no such envelope");
    if (get_i64(r, 0) == 2)
      return error(errc::payment_mismatch, "paid with another payment txn");
    return reply{};
  }

  reply on_grab() {
    auto* r = result(0);
    if (PQntuples(r) == 0)
      return error(errc::not_found, "no such envelope");
    reply rep;
    auto status = get_i64(r, 0);
    auto left = get_i64(r, 1);
    if (!PQgetisnull(r, 0, 2)) {
      rep.outcome = grab_outcome::already_opened;
      rep.amount_fen = get_i64(r, 2);
    } else if (status == 1) {
      rep.outcome = grab_outcome::not_paid;
    } else if (left == 0) {
      rep.outcome = grab_outcome::exhausted;
    }
    return rep;
  }

  reply on_open_update() {
    auto* r = result(0);
    if (PQntuples(r) == 0)
      return error(errc::not_found, "no such envelope");
    auto kind = get_i64(r, 0);
    reply rep;
    if (kind == 1 || kind == 2) {
      rep.amount_fen = get_i64(r, 1);
      rep.seq = static_cast<int32_t>(get_i64(r, 2));
      rep.first_time = kind == 1;
      return rep;
    }
    // A waiting UPDATE that found the last share gone: exhausted.
    if (get_i64(r, 1) == 1)
      return error(errc::not_paid, "the envelope is not paid yet");
    return error(errc::exhausted, "手慢了: no shares left");
  }

  /// pg-lock: the envelope row is locked; decide, then write and commit.
  void on_locked() {
    step_ = 1;
    auto* env = result(1);
    auto* mine = result(2);
    if (PQntuples(env) == 0) {
      result_ = error(errc::not_found, "no such envelope");
      send({{"commit", {}}});
      return;
    }
    if (PQntuples(mine) == 1) {
      result_ = reply{};
      result_.amount_fen = get_i64(mine, 0);
      result_.seq = static_cast<int32_t>(get_i64(mine, 1));
      result_.first_time = false;
      send({{"commit", {}}});
      return;
    }
    auto kind = static_cast<envelope_kind>(get_i64(env, 0));
    auto status = get_i64(env, 1);
    auto total = get_i64(env, 2);
    auto count = static_cast<int32_t>(get_i64(env, 3));
    auto remaining = get_i64(env, 4);
    auto left = static_cast<int32_t>(get_i64(env, 5));
    if (status != 2 || left == 0) {
      result_ = status == 1 ? error(errc::not_paid, "the envelope is not paid yet")
                            : error(errc::exhausted, "手慢了: no shares left");
      send({{"commit", {}}});
      return;
    }
    auto share = split_share(kind, total, count, remaining, left, req_.random);
    auto seq = count - left + 1;
    result_ = reply{};
    result_.amount_fen = share;
    result_.seq = seq;
    auto id = std::to_string(book_.envelopes[req_.env].id);
    send({{"insert_open",
           {id, book_.users[req_.user], std::to_string(share),
            std::to_string(seq)}},
          {"update_envelope",
           {id, std::to_string(remaining - share), std::to_string(left - 1),
            left == 1 ? "3" : "2"}},
          {"commit", {}}});
  }

  static constexpr int rollback_step = 99;

  pg::conn_ptr conn_;
  const run_book& book_;
  pg_mode mode_;
  bool busy_ = false;
  bool wants_write_ = false;
  bool after_result_ = false;
  uint64_t tag_ = 0;
  request req_;
  int step_ = 0;
  size_t expected_ = 0;
  std::vector<pg::result_ptr> results_;
  reply result_;  ///< pg-lock: the answer once COMMIT succeeds
  reply error_;   ///< the answer once ROLLBACK is done
};

class pg_target final : public target {
public:
  pg_target(target_options opts, pg_mode mode)
    : opts_(std::move(opts)), mode_(mode),
      statements_(parse_statements(embedded::statements_sql)) {}

  std::string describe() const override {
    return opts_.name + " on PostgreSQL (" + opts_.db_url + ")";
  }
  uint32_t connections_default() const override { return 64; }
  uint32_t window_default() const override { return 1; }

  outcome<done> prepare() override {
    if (opts_.db_url.empty())
      return failure{errc::invalid_argument,
                     "the " + opts_.name + " target needs --db-url"};
    auto c = pg::connect(opts_.db_url);
    if (!c)
      return c.error();
    // Two bench runs preparing at once would race on CREATE TABLE IF NOT EXISTS.
    if (auto r = pg::exec(c->get(), "SELECT pg_advisory_lock(7355608)"); !r)
      return r.error();
    auto applied = pg::exec_script(c->get(), embedded::postgres_sql);
    pg::exec(c->get(), "SELECT pg_advisory_unlock(7355608)");
    if (!applied)
      return failure{applied.error().code,
                     "cannot apply bench/baseline/postgres.sql: "
                       + applied.error().message};
    auto sync = pg::exec(c->get(),
                         "SELECT current_setting('synchronous_commit'), "
                         "current_setting('fsync')");
    if (!sync)
      return sync.error();
    synchronous_commit_ = PQgetvalue(sync->get(), 0, 0);
    fsync_ = PQgetvalue(sync->get(), 0, 1);
    return done{};
  }

  outcome<std::unique_ptr<session>> connect(const run_book& book,
                                            uint32_t) override {
    auto c = pg::connect(opts_.db_url);
    if (!c)
      return c.error();
    for (auto& [name, sql] : statements_) {
      pg::result_ptr r{PQprepare(c->get(), name.c_str(), sql.c_str(), 0, nullptr)};
      if (!r || PQresultStatus(r.get()) != PGRES_COMMAND_OK)
        return failure{errc::internal, "cannot prepare statement " + name + ": "
                                         + pg::message_of(c->get(), r.get())};
    }
    if (PQenterPipelineMode(c->get()) != 1 || PQsetnonblocking(c->get(), 1) != 0)
      return failure{errc::internal, "cannot enter libpq pipeline mode: "
                                       + pg::message_of(c->get(), nullptr)};
    return std::unique_ptr<session>{
      std::make_unique<pg_session>(std::move(*c), book, mode_)};
  }

  outcome<std::vector<envelope_detail>> load(const run_book& book) override {
    auto c = pg::connect(opts_.db_url);
    if (!c)
      return c.error();
    std::vector<int64_t> ids;
    for (auto& e : book.envelopes)
      if (e.id != 0)
        ids.push_back(e.id);
    auto arr = pg::int_array(ids);
    auto envs = pg::exec(c->get(),
                         "SELECT id, kind, status, total_fen, count, "
                         "remaining_fen, remaining_count, sender "
                         "FROM bench_envelopes WHERE id = ANY($1::bigint[])",
                         {arr});
    if (!envs)
      return envs.error();
    auto opens = pg::exec(c->get(),
                          "SELECT envelope_id, user_id, amount_fen, seq "
                          "FROM bench_opens WHERE envelope_id = ANY($1::bigint[]) "
                          "ORDER BY envelope_id, seq",
                          {arr});
    if (!opens)
      return opens.error();
    std::unordered_map<int64_t, envelope_detail> by_id;
    auto* r = envs->get();
    for (int i = 0; i < PQntuples(r); ++i) {
      envelope_detail d;
      auto& e = d.env;
      e.id = std::stoll(PQgetvalue(r, i, 0));
      e.kind = static_cast<envelope_kind>(std::stoi(PQgetvalue(r, i, 1)));
      e.status = static_cast<envelope_status>(std::stoi(PQgetvalue(r, i, 2)));
      e.total_fen = std::stoll(PQgetvalue(r, i, 3));
      e.count = std::stoi(PQgetvalue(r, i, 4));
      e.remaining_fen = std::stoll(PQgetvalue(r, i, 5));
      e.remaining_count = std::stoi(PQgetvalue(r, i, 6));
      e.sender = PQgetvalue(r, i, 7);
      by_id.emplace(e.id, std::move(d));
    }
    auto* o = opens->get();
    for (int i = 0; i < PQntuples(o); ++i) {
      auto it = by_id.find(std::stoll(PQgetvalue(o, i, 0)));
      if (it == by_id.end())
        continue;
      open_record rec;
      rec.user = PQgetvalue(o, i, 1);
      rec.amount_fen = std::stoll(PQgetvalue(o, i, 2));
      rec.seq = std::stoi(PQgetvalue(o, i, 3));
      it->second.opens.push_back(std::move(rec));
    }
    std::vector<envelope_detail> out;
    for (auto& e : book.envelopes) {
      auto it = e.id != 0 ? by_id.find(e.id) : by_id.end();
      out.push_back(it != by_id.end() ? std::move(it->second) : envelope_detail{});
    }
    return out;
  }

  global_checks check_globals(const run_book&) override {
    global_checks out;
    if (synchronous_commit_ == "on" && fsync_ == "on")
      out.notes.push_back("synchronous_commit = on, fsync = on");
    else
      out.problems.push_back("synchronous_commit = " + synchronous_commit_
                             + ", fsync = " + fsync_
                             + ": the baseline was not durable");
    return out;
  }

private:
  target_options opts_;
  pg_mode mode_;
  std::map<std::string, std::string> statements_;
  std::string synchronous_commit_;
  std::string fsync_;
};

} // namespace

int64_t split_share(envelope_kind kind, int64_t total_fen, int32_t count,
                    int64_t remaining_fen, int32_t remaining_count,
                    uint64_t random) {
  if (kind == envelope_kind::equal)
    return total_fen / count
           + (count - remaining_count < total_fen % count ? 1 : 0);
  if (remaining_count == 1)
    return remaining_fen;
  int64_t hi = (2 * remaining_fen) / remaining_count - 1;
  return 1 + static_cast<int64_t>(random % static_cast<uint64_t>(hi));
}

outcome<std::unique_ptr<target>> make_pg_target(const target_options& opts) {
  auto mode = opts.name == "pg-lock" ? pg_mode::lock : pg_mode::update;
  return std::unique_ptr<target>{std::make_unique<pg_target>(opts, mode)};
}

} // namespace hb::bench
