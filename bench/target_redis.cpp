// The Redis baseline: the split and the dedupe in Lua scripts (EVALSHA,
// bench/baseline/*.lua) on a Redis with appendonly yes and appendfsync
// always, so that an answer means the share is in the fsynced AOF — as
// durable as hongbao's commit. Connections are pipelined: Redis runs one
// event loop and fsyncs the AOF once per loop iteration, before it sends
// that iteration's replies, so a deep pipeline is its group commit.

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>

#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "bench/embedded.hpp"
#include "bench/targets.hpp"
#include "client/client.hpp"

namespace hb::bench {

namespace {

constexpr const char* key_prefix = "hbbench:";

struct context_free {
  void operator()(redisContext* c) const { redisFree(c); }
};
struct reply_free {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using context_ptr = std::unique_ptr<redisContext, context_free>;
using reply_ptr = std::unique_ptr<redisReply, reply_free>;

std::string env_key(int64_t id) {
  return std::string{key_prefix} + "env:" + std::to_string(id);
}
std::string opens_key(int64_t id) {
  return std::string{key_prefix} + "opens:" + std::to_string(id);
}

outcome<context_ptr> connect_redis(const client::host_port& where, int timeout_ms) {
  timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  context_ptr c{redisConnectWithTimeout(where.host.c_str(), where.port, tv)};
  if (!c || c->err != 0)
    return failure{errc::unavailable,
                   "cannot connect to Redis at " + where.host + ":"
                     + std::to_string(where.port) + ": "
                     + (c ? c->errstr : "out of memory")
                     + " — is redis-server running?"};
  return c;
}

/// A blocking command for set-up and the audit.
outcome<reply_ptr> command(redisContext* c, const std::vector<std::string>& args) {
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  for (auto& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  reply_ptr r{static_cast<redisReply*>(redisCommandArgv(
    c, static_cast<int>(argv.size()), argv.data(), lens.data()))};
  if (!r)
    return failure{errc::unavailable, std::string{"Redis: "} + c->errstr};
  if (r->type == REDIS_REPLY_ERROR)
    return failure{errc::internal, std::string{"Redis: "} + r->str};
  return r;
}

struct scripts {
  std::string create, pay, grab, open;
};

/// Parses "amount:seq".
void parse_share(const redisReply* r, reply& out) {
  std::string text{r->str, r->len};
  auto colon = text.find(':');
  out.amount_fen = std::stoll(text.substr(0, colon));
  out.seq = colon == std::string::npos ? 0 : std::stoi(text.substr(colon + 1));
}

class redis_session final : public session {
public:
  redis_session(context_ptr c, const run_book& book, const scripts& s,
                uint32_t window)
    : c_(std::move(c)), book_(book), scripts_(s), window_(window) {}

  int fd() const override { return c_->fd; }
  size_t window() const override { return window_; }
  size_t in_flight() const override { return fifo_.size(); }

  void submit(uint64_t tag, const request& req) override {
    const auto& env = book_.envelopes[req.env];
    args_.clear();
    args_.push_back("EVALSHA");
    switch (req.kind) {
      case op_kind::create: {
        const auto& c = env.create;
        args_.insert(args_.end(),
                     {scripts_.create, "2",
                      std::string{key_prefix} + "idem:" + c.sender + ":"
                        + c.idempotency_key,
                      std::string{key_prefix} + "next_id",
                      std::string{key_prefix} + "env:", c.sender, c.group,
                      c.greeting, std::to_string(static_cast<int>(c.kind)),
                      std::to_string(c.total_fen), std::to_string(c.count)});
        break;
      }
      case op_kind::pay:
        args_.insert(args_.end(),
                     {scripts_.pay, "1", env_key(env.id), env.payment_txn});
        break;
      case op_kind::grab:
        args_.insert(args_.end(), {scripts_.grab, "2", env_key(env.id),
                                   opens_key(env.id), book_.users[req.user]});
        break;
      case op_kind::open:
        args_.insert(args_.end(),
                     {scripts_.open, "2", env_key(env.id), opens_key(env.id),
                      book_.users[req.user],
                      std::to_string(req.random & 0x7fffffffULL)});
        break;
    }
    argv_.clear();
    lens_.clear();
    for (auto& a : args_) {
      argv_.push_back(a.data());
      lens_.push_back(a.size());
    }
    redisAppendCommandArgv(c_.get(), static_cast<int>(argv_.size()),
                           argv_.data(), lens_.data());
    fifo_.push_back(sent{tag, req.kind});
    wants_write_ = true;
  }

  bool wants_write() const override { return wants_write_; }

  bool flush(std::string& why) override {
    int done = 0;
    if (redisBufferWrite(c_.get(), &done) != REDIS_OK) {
      why = c_->errstr;
      return false;
    }
    wants_write_ = done == 0;
    return true;
  }

  bool read(std::vector<completion>& out, std::string& why) override {
    if (redisBufferRead(c_.get()) != REDIS_OK) {
      why = c_->errstr;
      return false;
    }
    for (;;) {
      void* raw = nullptr;
      if (redisGetReplyFromReader(c_.get(), &raw) != REDIS_OK) {
        why = c_->errstr;
        return false;
      }
      if (raw == nullptr)
        return true;
      reply_ptr r{static_cast<redisReply*>(raw)};
      if (fifo_.empty()) {
        why = "a Redis reply nobody asked for";
        return false;
      }
      auto s = fifo_.front();
      fifo_.pop_front();
      out.push_back(completion{s.tag, to_reply(s.kind, r.get())});
    }
  }

  std::vector<uint64_t> abandon() override {
    std::vector<uint64_t> tags;
    for (auto& s : fifo_)
      tags.push_back(s.tag);
    fifo_.clear();
    return tags;
  }

private:
  struct sent {
    uint64_t tag;
    op_kind kind;
  };

  static reply error(errc code, std::string message) {
    reply r;
    r.code = code;
    r.message = std::move(message);
    return r;
  }

  static reply from_code(long long code) {
    switch (code) {
      case -3:
        return error(errc::not_found, "no such envelope");
      case -4:
        return error(errc::not_paid, "the envelope is not paid yet");
      case -5:
        return error(errc::payment_mismatch, "paid with another payment txn");
      case -6:
        return error(errc::exhausted, "手慢了: no shares left");
      default:
        return error(errc::internal, "unknown script answer "
                                       + std::to_string(code));
    }
  }

  static reply to_reply(op_kind kind, const redisReply* r) {
    if (r->type == REDIS_REPLY_ERROR)
      return error(errc::internal, std::string{"Redis: "} + r->str);
    reply rep;
    switch (kind) {
      case op_kind::create:
        if (r->type != REDIS_REPLY_INTEGER)
          return error(errc::internal, "create: not an id");
        rep.envelope_id = r->integer;
        return rep;
      case op_kind::pay:
        if (r->type != REDIS_REPLY_INTEGER)
          return error(errc::internal, "pay: not an integer");
        return r->integer == 1 ? rep : from_code(r->integer);
      case op_kind::grab: {
        if (r->type != REDIS_REPLY_ARRAY || r->elements < 1)
          return error(errc::internal, "grab: not an array");
        auto code = r->element[0]->integer;
        if (code < 0)
          return from_code(code);
        rep.outcome = static_cast<grab_outcome>(code);
        if (rep.outcome == grab_outcome::already_opened)
          parse_share(r->element[1], rep);
        return rep;
      }
      case op_kind::open: {
        if (r->type != REDIS_REPLY_ARRAY || r->elements < 1)
          return error(errc::internal, "open: not an array");
        auto code = r->element[0]->integer;
        if (code < 0)
          return from_code(code);
        if (code == 2) {
          parse_share(r->element[1], rep);
          rep.first_time = false;
        } else {
          rep.amount_fen = r->element[1]->integer;
          rep.seq = static_cast<int32_t>(r->element[2]->integer);
        }
        return rep;
      }
    }
    return rep;
  }

  context_ptr c_;
  const run_book& book_;
  const scripts& scripts_;
  uint32_t window_;
  bool wants_write_ = false;
  std::deque<sent> fifo_;
  std::vector<std::string> args_;
  std::vector<const char*> argv_;
  std::vector<size_t> lens_;
};

class redis_target final : public target {
public:
  redis_target(target_options opts, client::host_port where)
    : opts_(std::move(opts)), where_(std::move(where)) {}

  std::string describe() const override {
    return "redis-lua at " + opts_.redis;
  }
  uint32_t connections_default() const override { return 8; }
  uint32_t window_default() const override { return 256; }

  outcome<done> prepare() override {
    auto c = connect_redis(where_, opts_.timeout_ms);
    if (!c)
      return c.error();
    struct {
      const char* source;
      std::string* sha;
    } all[] = {{embedded::create_lua, &scripts_.create},
               {embedded::pay_lua, &scripts_.pay},
               {embedded::grab_lua, &scripts_.grab},
               {embedded::open_lua, &scripts_.open}};
    for (auto& s : all) {
      auto r = command(c->get(), {"SCRIPT", "LOAD", s.source});
      if (!r)
        return r.error();
      *s.sha = std::string{(*r)->str, (*r)->len};
    }
    auto cfg = command(c->get(), {"CONFIG", "GET", "append*"});
    if (!cfg)
      return cfg.error();
    for (size_t i = 0; i + 1 < (*cfg)->elements; i += 2)
      settings_.emplace_back((*cfg)->element[i]->str,
                             (*cfg)->element[i + 1]->str);
    return done{};
  }

  outcome<std::unique_ptr<session>> connect(const run_book& book,
                                            uint32_t window) override {
    auto c = connect_redis(where_, opts_.timeout_ms);
    if (!c)
      return c.error();
    (*c)->flags &= ~REDIS_BLOCK;
    if (!set_nonblocking((*c)->fd))
      return failure{errc::internal, "cannot make the Redis socket non-blocking"};
    return std::unique_ptr<session>{
      std::make_unique<redis_session>(std::move(*c), book, scripts_, window)};
  }

  outcome<std::vector<envelope_detail>> load(const run_book& book) override {
    auto c = connect_redis(where_, opts_.timeout_ms);
    if (!c)
      return c.error();
    std::vector<envelope_detail> out(book.envelopes.size());
    // Pipelined HGETALLs, a bounded batch at a time.
    constexpr size_t batch = 1000;
    for (size_t first = 0; first < book.envelopes.size(); first += batch) {
      size_t last = std::min(book.envelopes.size(), first + batch);
      for (size_t i = first; i < last; ++i) {
        auto id = book.envelopes[i].id;
        auto ek = env_key(id);
        auto ok = opens_key(id);
        redisAppendCommand(c->get(), "HGETALL %b", ek.data(), ek.size());
        redisAppendCommand(c->get(), "HGETALL %b", ok.data(), ok.size());
      }
      for (size_t i = first; i < last; ++i) {
        reply_ptr env;
        reply_ptr opens;
        void* raw = nullptr;
        if (redisGetReply(c->get(), &raw) != REDIS_OK)
          return failure{errc::unavailable, (*c)->errstr};
        env.reset(static_cast<redisReply*>(raw));
        if (redisGetReply(c->get(), &raw) != REDIS_OK)
          return failure{errc::unavailable, (*c)->errstr};
        opens.reset(static_cast<redisReply*>(raw));
        if (book.envelopes[i].id != 0 && env->elements > 0)
          out[i] = to_detail(book.envelopes[i].id, env.get(), opens.get());
      }
    }
    return out;
  }

  global_checks check_globals(const run_book&) override {
    global_checks out;
    std::string aof, fsync;
    for (auto& [k, v] : settings_) {
      if (k == "appendonly")
        aof = v;
      if (k == "appendfsync")
        fsync = v;
    }
    if (aof == "yes" && fsync == "always")
      out.notes.push_back("appendonly yes, appendfsync always");
    else
      out.problems.push_back("appendonly " + aof + ", appendfsync " + fsync
                             + ": the baseline was not durable");
    return out;
  }

private:
  static envelope_detail to_detail(int64_t id, const redisReply* env,
                                   const redisReply* opens) {
    envelope_detail d;
    d.env.id = id;
    for (size_t i = 0; i + 1 < env->elements; i += 2) {
      std::string k{env->element[i]->str, env->element[i]->len};
      std::string v{env->element[i + 1]->str, env->element[i + 1]->len};
      if (k == "kind")
        d.env.kind = static_cast<envelope_kind>(std::stoi(v));
      else if (k == "status")
        d.env.status = static_cast<envelope_status>(std::stoi(v));
      else if (k == "total_fen")
        d.env.total_fen = std::stoll(v);
      else if (k == "count")
        d.env.count = std::stoi(v);
      else if (k == "remaining_fen")
        d.env.remaining_fen = std::stoll(v);
      else if (k == "remaining_count")
        d.env.remaining_count = std::stoi(v);
      else if (k == "sender")
        d.env.sender = v;
    }
    for (size_t i = 0; i + 1 < opens->elements; i += 2) {
      open_record rec;
      rec.user.assign(opens->element[i]->str, opens->element[i]->len);
      reply share;
      parse_share(opens->element[i + 1], share);
      rec.amount_fen = share.amount_fen;
      rec.seq = share.seq;
      d.opens.push_back(std::move(rec));
    }
    std::sort(d.opens.begin(), d.opens.end(),
              [](const open_record& a, const open_record& b) { return a.seq < b.seq; });
    return d;
  }

  target_options opts_;
  client::host_port where_;
  scripts scripts_;
  std::vector<std::pair<std::string, std::string>> settings_;
};

} // namespace

outcome<std::unique_ptr<target>> make_redis_target(const target_options& opts) {
  auto where = client::parse_host_port(opts.redis);
  if (!where)
    return where.error();
  return std::unique_ptr<target>{std::make_unique<redis_target>(opts, *where)};
}

} // namespace hb::bench
