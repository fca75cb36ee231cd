// hb_fault_client: the load and timing client of the real-fault system tests
// (segment_fault_test.sh, db_outage_test.sh, overload_test.sh). It speaks the
// client protocol through hb_client and prints one line per answer, so the
// shell tests can count and audit exactly what each client was told.
//
//   hb_fault_client creates --n N [--connections C] [--prefix P]
//       N creates (no client retries: a retry inside the node must be
//       invisible). Lines: "ok <id> <us>" | "err <code> <us> <message>".
//   hb_fault_client time --op get|open|grab --id ID [--n N] [--user U]
//       N requests one after the other on one connection, timed from send to
//       answer. Lines: "<ok|code> <us>".
//   hb_fault_client storm --ids A,B,.. [--connections C] [--duration-ms D]
//                         [--pause-ms P] [--retry-ms R] [--grace-ms G]
//                         [--prefix P]
//       C workers open the envelopes with fresh users until D ms have passed;
//       an open that fails retryably (or whose connection broke) is retried
//       for the same user every R ms until it is answered, for at most G ms
//       after D. Lines (t = Unix ms):
//         "<t> ok <envelope> <user> <amount> <first_time>"
//         "<t> err <code> <envelope> <user>"       (answered with an error)
//         "<t> transport <envelope> <user>"        (no answer: connection)
//         "<t> gaveup <envelope> <user>"           (outcome unknown)
//   hb_fault_client burst --id ID [--connections C] [--per-connection K]
//                         [--prefix P]
//       C connections authenticate, then all send K pipelined opens at once
//       and read every answer. Lines: "<ok|code> <us> <user> [amount]".
//
// Server and token come from HONGBAO_SERVER and HONGBAO_TOKEN. Exit status:
// 0 done (whatever the answers were), 2 usage, 3 cannot connect at start.

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "client/client.hpp"
#include "domain/errc.hpp"
#include "domain/requests.hpp"

namespace {

using namespace hb;
using steady = std::chrono::steady_clock;

struct options {
  std::string command;
  std::string host;
  uint16_t port = 0;
  std::string token;
  int n = 1;
  int connections = 4;
  std::string op = "get";
  int64_t id = 0;
  std::vector<int64_t> ids;
  std::string user = "timer";
  std::string prefix = "fc";
  int duration_ms = 10000;
  int pause_ms = 0;
  int retry_ms = 100;
  int grace_ms = 30000;
  int per_connection = 50;
  int timeout_ms = 10000;
};

int64_t unix_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch())
    .count();
}

int64_t micros_since(steady::time_point t0) {
  return std::chrono::duration_cast<std::chrono::microseconds>(steady::now()
                                                               - t0)
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
  std::fprintf(stderr, "hb_fault_client: %s\n(see the comment at the top of "
                       "tests/system/fault_client.cpp)\n",
               why.c_str());
  return 2;
}

/// Connects and authenticates, or returns a broken connection.
client::connection open_connection(const options& opts, std::string& why) {
  auto conn = client::connection::connect(opts.host, opts.port, opts.timeout_ms);
  if (!conn) {
    why = conn.error().message;
    return {};
  }
  auto ok = conn->authenticate(opts.token, opts.timeout_ms);
  if (!ok) {
    why = ok.error().message;
    return {};
  }
  return std::move(*conn);
}

/// The answer's code: "ok" or the error's name.
std::string code_of(const client_response& resp) {
  if (auto* err = std::get_if<error_reply>(&resp.body))
    return to_string(err->code);
  return "ok";
}

std::string one_line(std::string text) {
  for (auto& c : text)
    if (c == '\n' || c == '\r')
      c = ' ';
  return text;
}

/// Runs `work(conn, w)` on --connections threads, each with a connection of
/// its own; exit status 3 when a worker could not connect at start.
int run_workers(const options& opts,
                const std::function<void(client::connection&, int)>& work) {
  std::atomic<bool> failed_start{false};
  std::vector<std::thread> workers;
  for (int w = 0; w < opts.connections; ++w)
    workers.emplace_back([&, w] {
      std::string why;
      auto conn = open_connection(opts, why);
      if (!conn.connected()) {
        std::fprintf(stderr, "hb_fault_client: worker %d: %s\n", w, why.c_str());
        failed_start = true;
        return;
      }
      work(conn, w);
    });
  for (auto& t : workers)
    t.join();
  return failed_start ? 3 : 0;
}

// -- creates -------------------------------------------------------------------

int run_creates(const options& opts) {
  std::atomic<int> next{0};
  return run_workers(opts, [&](client::connection& conn, int) {
    std::string why;
    for (int i = next++; i < opts.n; i = next++) {
      create_request req;
      req.sender = opts.prefix + "-sender-" + std::to_string(i % 7);
      req.group = "fault-group";
      req.greeting = "segment fault test";
      req.total_fen = 100 + i % 50;
      req.count = 3;
      req.kind = envelope_kind::random;
      req.idempotency_key = opts.prefix + "-create-" + std::to_string(i);
      auto t0 = steady::now();
      auto resp = conn.call(req, opts.timeout_ms);
      auto us = micros_since(t0);
      if (!resp) {
        emit("err transport " + std::to_string(us) + " "
             + one_line(resp.error().message));
        conn = open_connection(opts, why);
        continue;
      }
      if (auto* env = std::get_if<envelope>(&resp->body))
        emit("ok " + std::to_string(env->id) + " " + std::to_string(us));
      else if (auto* err = std::get_if<error_reply>(&resp->body))
        emit(std::string{"err "} + to_string(err->code) + " "
             + std::to_string(us) + " " + one_line(err->message));
      else
        emit("err unexpected " + std::to_string(us) + " -");
    }
  });
}

// -- time ----------------------------------------------------------------------

int run_time(const options& opts) {
  std::string why;
  auto conn = open_connection(opts, why);
  if (!conn.connected())
    return std::fprintf(stderr, "hb_fault_client: %s\n", why.c_str()), 3;
  for (int i = 0; i < opts.n; ++i) {
    request_body body;
    if (opts.op == "get")
      body = get_request{opts.id};
    else if (opts.op == "open")
      body = open_request{opts.id, opts.user};
    else if (opts.op == "grab")
      body = grab_request{opts.id, opts.user};
    else
      return usage("--op must be get, open or grab");
    auto t0 = steady::now();
    auto resp = conn.call(std::move(body), opts.timeout_ms);
    auto us = micros_since(t0);
    if (!resp) {
      emit("transport " + std::to_string(us));
      conn = open_connection(opts, why);
      continue;
    }
    emit(code_of(*resp) + " " + std::to_string(us));
  }
  return 0;
}

// -- storm ---------------------------------------------------------------------

int run_storm(const options& opts) {
  if (opts.ids.empty())
    return usage("storm needs --ids");
  auto start = steady::now();
  auto stop_new = start + std::chrono::milliseconds(opts.duration_ms);
  auto give_up = stop_new + std::chrono::milliseconds(opts.grace_ms);
  return run_workers(opts, [&](client::connection& conn, int w) {
    std::string why;
    for (int k = 0; steady::now() < stop_new; ++k) {
      auto env = opts.ids[static_cast<size_t>(k + w) % opts.ids.size()];
      auto user = opts.prefix + "-w" + std::to_string(w) + "-u"
                  + std::to_string(k);
      auto tag = std::to_string(env) + " " + user;
      // One user until answered: "you got X" or a final error.
      for (;;) {
        if (!conn.connected()) {
          conn = open_connection(opts, why);
          if (!conn.connected()) {
            if (steady::now() >= give_up) {
              emit(std::to_string(unix_ms()) + " gaveup " + tag);
              break;
            }
            std::this_thread::sleep_for(
              std::chrono::milliseconds(opts.retry_ms));
            continue;
          }
        }
        auto resp = conn.call(open_request{env, user}, opts.timeout_ms,
                              static_cast<uint32_t>(opts.timeout_ms));
        if (!resp) {
          emit(std::to_string(unix_ms()) + " transport " + tag);
          conn.close();
        } else if (auto* res = std::get_if<open_result>(&resp->body)) {
          emit(std::to_string(unix_ms()) + " ok " + tag + " "
               + std::to_string(res->amount_fen) + " "
               + (res->first_time ? "1" : "0"));
          break;
        } else if (auto* err = std::get_if<error_reply>(&resp->body)) {
          emit(std::to_string(unix_ms()) + " err " + to_string(err->code)
               + " " + tag);
          if (!retryable(err->code))
            break;
        } else {
          emit(std::to_string(unix_ms()) + " err unexpected " + tag);
          break;
        }
        if (steady::now() >= give_up) {
          emit(std::to_string(unix_ms()) + " gaveup " + tag);
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(opts.retry_ms));
      }
      if (opts.pause_ms > 0)
        std::this_thread::sleep_for(std::chrono::milliseconds(opts.pause_ms));
    }
  });
}

// -- burst ---------------------------------------------------------------------

int run_burst(const options& opts) {
  std::vector<client::connection> conns;
  for (int c = 0; c < opts.connections; ++c) {
    std::string why;
    auto conn = open_connection(opts, why);
    if (!conn.connected())
      return std::fprintf(stderr, "hb_fault_client: %s\n", why.c_str()), 3;
    conns.push_back(std::move(conn));
  }
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> workers;
  for (int c = 0; c < opts.connections; ++c)
    workers.emplace_back([&, c] {
      auto& conn = conns[static_cast<size_t>(c)];
      std::unordered_map<uint64_t, std::pair<std::string, steady::time_point>>
        sent;
      ++ready;
      while (!go)
        std::this_thread::yield();
      for (int k = 0; k < opts.per_connection; ++k) {
        client_request req;
        req.request_id = conn.next_request_id();
        auto user = opts.prefix + "-c" + std::to_string(c) + "-u"
                    + std::to_string(k);
        req.body = open_request{opts.id, user};
        sent[req.request_id] = {user, steady::now()};
        if (!conn.send(req)) {
          emit("transport 0 " + user);
          sent.erase(req.request_id);
        }
      }
      while (!sent.empty()) {
        auto resp = conn.receive(opts.timeout_ms);
        if (!resp) {
          for (auto& kv : sent)
            emit("transport 0 " + kv.second.first);
          return;
        }
        auto it = sent.find(resp->request_id);
        if (it == sent.end())
          continue;
        auto us = micros_since(it->second.second);
        std::string line = code_of(*resp) + " " + std::to_string(us) + " "
                           + it->second.first;
        if (auto* res = std::get_if<open_result>(&resp->body))
          line += " " + std::to_string(res->amount_fen);
        emit(line);
        sent.erase(it);
      }
    });
  while (ready < opts.connections)
    std::this_thread::yield();
  go = true;
  for (auto& t : workers)
    t.join();
  return 0;
}

// -- main ----------------------------------------------------------------------

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
      if (key == "--n")
        num(opts.n);
      else if (key == "--connections")
        num(opts.connections);
      else if (key == "--op")
        opts.op = value;
      else if (key == "--id")
        num(opts.id);
      else if (key == "--ids") {
        std::stringstream ss{value};
        std::string part;
        while (std::getline(ss, part, ','))
          if (!part.empty())
            opts.ids.push_back(std::stoll(part));
      } else if (key == "--user")
        opts.user = value;
      else if (key == "--prefix")
        opts.prefix = value;
      else if (key == "--duration-ms")
        num(opts.duration_ms);
      else if (key == "--pause-ms")
        num(opts.pause_ms);
      else if (key == "--retry-ms")
        num(opts.retry_ms);
      else if (key == "--grace-ms")
        num(opts.grace_ms);
      else if (key == "--per-connection")
        num(opts.per_connection);
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
  const char* server = std::getenv("HONGBAO_SERVER");
  const char* token = std::getenv("HONGBAO_TOKEN");
  if (server == nullptr || token == nullptr)
    return usage("HONGBAO_SERVER and HONGBAO_TOKEN must be set");
  auto where = client::parse_host_port(server);
  if (!where)
    return usage(where.error().message);
  opts.host = where->host;
  opts.port = where->port;
  opts.token = token;
  if (opts.connections < 1 || opts.n < 0)
    return usage("--connections must be >= 1");
  if (opts.command == "creates")
    return run_creates(opts);
  if (opts.command == "time")
    return run_time(opts);
  if (opts.command == "storm")
    return run_storm(opts);
  if (opts.command == "burst")
    return run_burst(opts);
  return usage("unknown command " + opts.command);
}
