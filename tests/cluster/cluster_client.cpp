// hb_cluster_client: the load and timing client of the cluster tests
// (tests/cluster/*_test.sh) and of scripts/quickstart's cluster demo. It
// speaks the client protocol through hb_client to SEVERAL gateways at once
// (any node's gateway accepts any request) and prints one line per answer,
// so that the shell can count and audit exactly what each client was told.
//
//   hb_cluster_client create --servers H:P,H:P,.. --n N [--count C]
//                            [--total-fen T] [--prefix P] [--grace-ms G]
//       Creates and pays N envelopes, envelope i through gateway i % S, so
//       that every node gets envelopes in the segments it owns. A retryable
//       answer is retried on the same gateway with the same idempotency key
//       for up to G ms. Lines: "<id> <gateway index>". Exit 1 if one failed.
//   hb_cluster_client storm --servers .. --ids A,B,.. [--connections C]
//                           [--duration-ms D] [--pause-ms P] [--retry-ms R]
//                           [--grace-ms G] [--timeout-ms T] [--prefix P]
//       C workers per gateway open the envelopes (round robin) with fresh
//       users until D ms have passed. An open answered with a retryable
//       error waits R ms (2R, 4R, then 8R when it fails again) in the
//       worker's retry queue while the worker goes on
//       with other envelopes (an envelope whose segment fails over does not
//       stall the storm); an open whose connection broke is retried at once
//       through the next gateway. Each open is retried for the same user
//       until it is answered, for at most G ms after D. Lines (t = Unix ms,
//       gw = gateway index):
//         "<t> ok <envelope> <user> <amount> <first_time> <gw> <wait_us>"
//       (wait_us: from the open's first try to this answer, retries included)
//         "<t> err <code> <envelope> <user> <gw>"   (answered with an error)
//         "<t> transport <envelope> <user> <gw>"    (no answer: connection)
//         "<t> gaveup <envelope> <user>"            (outcome unknown)
//       SIGUSR1 ends the storm early: no new open starts, what is pending is
//       settled within the grace as after --duration-ms.
//   hb_cluster_client open --servers .. --id ID --user U [--grace-ms G]
//       One open, retried (next gateway after a broken connection) until it
//       is answered or G ms passed. Lines as the storm's.
//
// The token comes from HONGBAO_TOKEN. Exit status: 0 done (whatever the
// answers were), 1 a create failed, 2 usage, 3 no gateway reachable at start.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <functional>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "client/client.hpp"
#include "domain/errc.hpp"
#include "domain/requests.hpp"

namespace {

using namespace hb;
using steady = std::chrono::steady_clock;
using std::chrono::milliseconds;

/// Opens one worker keeps waiting for a retry at once; beyond, it starts no
/// new open until one is answered.
constexpr size_t retry_queue_max = 256;

struct options {
  std::string command;
  std::vector<client::host_port> servers;
  std::vector<std::string> server_names;
  std::string token;
  int n = 1;
  int connections = 2;
  int64_t id = 0;
  std::vector<int64_t> ids;
  std::string user = "probe";
  std::string prefix = "cc";
  int32_t count = 100;
  int64_t total_fen = 0;  ///< 0: count * 100
  int duration_ms = 10000;
  int pause_ms = 0;
  int retry_ms = 50;
  int grace_ms = 30000;
  int timeout_ms = 10000;
};

int64_t unix_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch())
    .count();
}

std::mutex out_mtx;

void emit(const std::string& line) {
  std::lock_guard<std::mutex> guard{out_mtx};
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

int usage(const std::string& why) {
  std::fprintf(stderr, "hb_cluster_client: %s\n(see the comment at the top of "
                       "tests/cluster/cluster_client.cpp)\n",
               why.c_str());
  return 2;
}

std::string one_line(std::string text) {
  for (auto& c : text)
    if (c == '\n' || c == '\r')
      c = ' ';
  return text;
}

/// A connection to one of the gateways that moves on to the next gateway
/// when its own breaks (a killed node takes its gateway along).
class gateway_link {
public:
  gateway_link(const options& opts, size_t first) : opts_(opts), gw_(first) {}

  size_t gateway() const { return gw_; }
  bool connected() const { return conn_.connected(); }

  /// Connects to the current gateway, then to the next ones, one round at
  /// most. False when none answered (`why` says the last reason).
  bool connect(std::string& why) {
    for (size_t tries = 0; tries < opts_.servers.size(); ++tries) {
      if (connect_one(why))
        return true;
      gw_ = (gw_ + 1) % opts_.servers.size();
    }
    return false;
  }

  /// Drops the connection and moves to the next gateway.
  void fail_over() {
    conn_.close();
    gw_ = (gw_ + 1) % opts_.servers.size();
  }

  outcome<client_response> call(request_body body) {
    return conn_.call(std::move(body), opts_.timeout_ms,
                      static_cast<uint32_t>(opts_.timeout_ms));
  }

private:
  bool connect_one(std::string& why) {
    auto& where = opts_.servers[gw_];
    auto conn = client::connection::connect(where.host, where.port,
                                            opts_.timeout_ms);
    if (!conn) {
      why = opts_.server_names[gw_] + ": " + conn.error().message;
      return false;
    }
    auto ok = conn->authenticate(opts_.token, opts_.timeout_ms);
    if (!ok) {
      why = opts_.server_names[gw_] + ": " + ok.error().message;
      return false;
    }
    conn_ = std::move(*conn);
    return true;
  }

  const options& opts_;
  size_t gw_;
  client::connection conn_;
};

// -- create ----------------------------------------------------------------------

/// Sends `body` through `link` until it is answered with something other than
/// a retryable error, or the deadline passes. Transport failures reconnect to
/// the SAME gateway (a create's idempotency key lives in its node's SET).
outcome<client_response> call_retrying(gateway_link& link,
                                       const request_body& body,
                                       steady::time_point deadline,
                                       const options& opts) {
  std::string why = "no answer";
  for (;;) {
    if (link.connected() || link.connect(why)) {
      auto resp = link.call(body);
      if (!resp) {
        why = resp.error().message;
        link.fail_over();
      } else if (auto* err = std::get_if<error_reply>(&resp->body);
                 err == nullptr || !retryable(err->code)) {
        return resp;
      } else {
        why = std::string{to_string(err->code)} + ": " + err->message;
      }
    }
    if (steady::now() >= deadline)
      return failure{errc::unavailable, why};
    std::this_thread::sleep_for(milliseconds(opts.retry_ms));
  }
}

int run_create(const options& opts) {
  if (opts.n < 1)
    return usage("create needs --n >= 1");
  std::atomic<int> next{0};
  std::atomic<bool> failed{false};
  std::vector<std::thread> workers;
  auto per_gateway = static_cast<int>(opts.servers.size());
  for (int w = 0; w < per_gateway; ++w)
    workers.emplace_back([&, w] {
      for (int i = next++; i < opts.n; i = next++) {
        // Always the same gateway for envelope i: its retries must reach
        // the node (and SET) that holds its idempotency key.
        gateway_link link{opts, static_cast<size_t>(i % per_gateway)};
        auto gw = link.gateway();
        auto deadline = steady::now() + milliseconds(opts.grace_ms);
        create_request req;
        req.sender = opts.prefix + "-sender-" + std::to_string(i);
        req.group = opts.prefix + "-group";
        req.greeting = "cluster test";
        req.count = opts.count;
        req.total_fen = opts.total_fen > 0 ? opts.total_fen
                                           : int64_t{opts.count} * 100;
        req.kind = envelope_kind::random;
        req.idempotency_key = opts.prefix + "-create-" + std::to_string(i);
        std::string what = "create";
        auto resp = call_retrying(link, req, deadline, opts);
        int64_t id = 0;
        if (resp) {
          if (auto* env = std::get_if<envelope>(&resp->body)) {
            id = env->id;
            what = "pay";
            resp = call_retrying(
              link,
              pay_request{id, opts.prefix + "-txn-" + std::to_string(i), false},
              deadline, opts);
          }
        }
        std::string problem;
        if (!resp)
          problem = resp.error().message;
        else if (auto* err = std::get_if<error_reply>(&resp->body))
          problem = std::string{to_string(err->code)} + ": " + err->message;
        else if (link.gateway() != gw)
          problem = "the gateway changed";
        if (!problem.empty()) {
          std::fprintf(stderr, "hb_cluster_client: %s of envelope %d via %s "
                               "failed: %s\n",
                       what.c_str(), i, opts.server_names[gw].c_str(),
                       one_line(problem).c_str());
          failed = true;
          continue;
        }
        emit(std::to_string(id) + " " + std::to_string(gw));
      }
    });
  for (auto& t : workers)
    t.join();
  return failed ? 1 : 0;
}

// -- storm and open ----------------------------------------------------------------

struct pending_open {
  int64_t env = 0;
  std::string user;
  steady::time_point due;
  int tries = 0;
  steady::time_point born;  // first sent: the user's wait counts from here
};

/// The wait before the next try of an open answered with a retryable error:
/// R, 2R, 4R, then 8R, so that opens waiting out an outage leave the
/// worker's time to the envelopes that are served.
milliseconds retry_delay(const options& opts, int tries) {
  return milliseconds(opts.retry_ms << std::min(tries, 3));
}

/// One open attempt. Returns true when the open is settled (answered with
/// a result or a final error); false when it must be tried again.
bool attempt_open(gateway_link& link, const pending_open& op,
                  const options& opts) {
  auto tag = std::to_string(op.env) + " " + op.user;
  std::string why;
  if (!link.connected() && !link.connect(why))
    return false;
  auto gw = std::to_string(link.gateway());
  auto resp = link.call(open_request{op.env, op.user});
  if (!resp) {
    emit(std::to_string(unix_ms()) + " transport " + tag + " " + gw);
    link.fail_over();
    return false;
  }
  if (auto* res = std::get_if<open_result>(&resp->body)) {
    auto waited = std::chrono::duration_cast<std::chrono::microseconds>(
                    steady::now() - op.born)
                    .count();
    emit(std::to_string(unix_ms()) + " ok " + tag + " "
         + std::to_string(res->amount_fen) + " "
         + (res->first_time ? "1" : "0") + " " + gw + " "
         + std::to_string(waited));
    return true;
  }
  if (auto* err = std::get_if<error_reply>(&resp->body)) {
    emit(std::to_string(unix_ms()) + " err " + to_string(err->code) + " "
         + tag + " " + gw);
    return !retryable(err->code);
  }
  emit(std::to_string(unix_ms()) + " err unexpected " + tag + " " + gw);
  return true;
}

/// SIGUSR1: the storm starts no new open from now on, as if its duration
/// had passed (what is in flight and waiting for a retry is settled).
std::atomic<bool> stop_requested{false};
std::atomic<int64_t> stop_ns{0};  // steady clock, when it was asked

void on_stop_signal(int) {
  stop_ns = steady::now().time_since_epoch().count();  // clock_gettime: safe
  stop_requested = true;
}

/// When the retries of a storm stopped by SIGUSR1 give up: its grace after
/// the signal.
steady::time_point stopped_at(const options& opts) {
  return steady::time_point(steady::duration(stop_ns.load()))
         + milliseconds(opts.grace_ms);
}

int run_storm(const options& opts) {
  if (opts.ids.empty())
    return usage("storm needs --ids");
  std::signal(SIGUSR1, on_stop_signal);
  auto start = steady::now();
  auto stop_new = start + milliseconds(opts.duration_ms);
  auto give_up = stop_new + milliseconds(opts.grace_ms);
  std::atomic<uint64_t> next_env{0};
  std::atomic<bool> reached_one{false};
  std::atomic<int> unreachable{0};
  std::vector<std::thread> workers;
  auto total = static_cast<int>(opts.servers.size()) * opts.connections;
  for (int w = 0; w < total; ++w)
    workers.emplace_back([&, w] {
      gateway_link link{opts, static_cast<size_t>(w) % opts.servers.size()};
      std::string why;
      if (link.connect(why))
        reached_one = true;
      else
        ++unreachable;
      std::deque<pending_open> retries;
      int k = 0;
      for (;;) {
        auto now = steady::now();
        pending_open op;
        if (!retries.empty() && retries.front().due <= now) {
          op = std::move(retries.front());
          retries.pop_front();
        } else if (now < stop_new && !stop_requested
                   && retries.size() < retry_queue_max) {
          auto i = next_env++ % opts.ids.size();
          op.env = opts.ids[i];
          op.user = opts.prefix + "-w" + std::to_string(w) + "-u"
                    + std::to_string(k++);
          op.born = now;
        } else if (!retries.empty()) {
          std::this_thread::sleep_until(
            std::min(retries.front().due, steady::now() + milliseconds(50)));
          continue;
        } else {
          break;
        }
        if (attempt_open(link, op, opts)) {
          if (opts.pause_ms > 0)
            std::this_thread::sleep_for(milliseconds(opts.pause_ms));
          continue;
        }
        if (steady::now() >= give_up
            || (stop_requested && steady::now() >= stopped_at(opts))) {
          emit(std::to_string(unix_ms()) + " gaveup " + std::to_string(op.env)
               + " " + op.user);
          continue;
        }
        // A broken connection is retried at once (through the next
        // gateway); an error answer after the retry delay.
        op.due = steady::now()
                 + (link.connected() ? retry_delay(opts, op.tries++)
                                     : milliseconds(0));
        if (!link.connected() && !link.connect(why))
          op.due = steady::now() + milliseconds(opts.retry_ms);
        retries.push_back(std::move(op));
      }
    });
  for (auto& t : workers)
    t.join();
  if (!reached_one) {
    std::fprintf(stderr, "hb_cluster_client: no gateway reachable\n");
    return 3;
  }
  return 0;
}

int run_open(const options& opts) {
  if (opts.id == 0)
    return usage("open needs --id");
  auto give_up = steady::now() + milliseconds(opts.grace_ms);
  gateway_link link{opts, 0};
  pending_open op{opts.id, opts.user, {}, 0, steady::now()};
  while (!attempt_open(link, op, opts)) {
    if (steady::now() >= give_up) {
      emit(std::to_string(unix_ms()) + " gaveup " + std::to_string(op.env)
           + " " + op.user);
      break;
    }
    std::this_thread::sleep_for(milliseconds(opts.retry_ms));
  }
  return 0;
}

// -- main ----------------------------------------------------------------------

std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream ss{text};
  std::string part;
  while (std::getline(ss, part, ','))
    if (!part.empty())
      out.push_back(part);
  return out;
}

bool parse(int argc, char** argv, options& opts, std::string& why) {
  if (argc < 2) {
    why = "missing command";
    return false;
  }
  opts.command = argv[1];
  for (int i = 2; i < argc; ++i) {
    std::string key = argv[i];
    if (i + 1 >= argc) {
      why = "missing value of " + key;
      return false;
    }
    std::string value = argv[++i];
    auto num = [&](auto& out) {
      out = static_cast<std::remove_reference_t<decltype(out)>>(
        std::stoll(value));
    };
    try {
      if (key == "--servers") {
        for (auto& s : split(value)) {
          auto where = client::parse_host_port(s);
          if (!where) {
            why = "bad gateway address " + s + ": " + where.error().message;
            return false;
          }
          opts.servers.push_back(*where);
          opts.server_names.push_back(s);
        }
      } else if (key == "--n")
        num(opts.n);
      else if (key == "--connections")
        num(opts.connections);
      else if (key == "--id")
        num(opts.id);
      else if (key == "--ids") {
        for (auto& part : split(value))
          opts.ids.push_back(std::stoll(part));
      } else if (key == "--user")
        opts.user = value;
      else if (key == "--prefix")
        opts.prefix = value;
      else if (key == "--count")
        num(opts.count);
      else if (key == "--total-fen")
        num(opts.total_fen);
      else if (key == "--duration-ms")
        num(opts.duration_ms);
      else if (key == "--pause-ms")
        num(opts.pause_ms);
      else if (key == "--retry-ms")
        num(opts.retry_ms);
      else if (key == "--grace-ms")
        num(opts.grace_ms);
      else if (key == "--timeout-ms")
        num(opts.timeout_ms);
      else {
        why = "unknown option " + key;
        return false;
      }
    } catch (const std::exception&) {
      why = "bad value of " + key + ": " + value;
      return false;
    }
  }
  return true;
}

} // namespace

int main(int argc, char** argv) {
  options opts;
  std::string why;
  if (!parse(argc, argv, opts, why))
    return usage(why);
  const char* token = std::getenv("HONGBAO_TOKEN");
  if (token == nullptr)
    return usage("HONGBAO_TOKEN must be set");
  opts.token = token;
  if (opts.servers.empty())
    return usage("--servers is required (HOST:PORT,HOST:PORT,...)");
  if (opts.connections < 1 || opts.retry_ms < 1 || opts.timeout_ms < 1)
    return usage("--connections, --retry-ms and --timeout-ms must be >= 1");
  if (opts.command == "create")
    return run_create(opts);
  if (opts.command == "storm")
    return run_storm(opts);
  if (opts.command == "open")
    return run_open(opts);
  return usage("unknown command " + opts.command);
}
