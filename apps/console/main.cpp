// hongbao-console: the operator's console of a hongbao node. It connects to
// the node's admin actor ([admin] port) over CAF's middleman and sends each
// command with the operator secret; the node answers plain data, printed
// as text or (--json) one JSON object per command.
//
//   hongbao-console --admin 127.0.0.1:7900 --secret-file ops.secret
//   hongbao-console -c "nodes" -c "block 7 disk check"     one-shot
//   echo stats | hongbao-console                             commands on stdin
//
// Exit status: 0 every command succeeded; otherwise that of the first that
// did not: 1 the node refused or failed it, 2 a usage error, 3 no
// connection or no answer, 4 the secret was refused.

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <editline/readline.h>

#include "caf/all.hpp"
#include "caf/io/all.hpp"

#include "admin/admin_actor.hpp"
#include "admin/commands.hpp"
#include "admin/format.hpp"

namespace {

using namespace hb;

constexpr int exit_ok = 0;
constexpr int exit_refused = 1;
constexpr int exit_usage = 2;
constexpr int exit_transport = 3;
constexpr int exit_denied = 4;

struct options {
  std::string admin = "127.0.0.1:7900";
  std::string secret_file;
  std::string user;
  bool json = false;
  int timeout_ms = 120000;
  std::vector<std::string> commands;
  std::string history_file;
};

// One connection to one node's admin actor; reconnects after a failure.
class session {
public:
  session(caf::actor_system& sys, options opts, std::string secret,
          std::string origin)
    : sys_(sys), self_(sys), opts_(std::move(opts)),
      secret_(std::move(secret)), origin_(std::move(origin)) {
  }

  // Connects if not connected; an error message if it cannot.
  std::string connect() {
    if (admin_)
      return {};
    auto colon = opts_.admin.rfind(':');
    if (colon == std::string::npos)
      return "--admin must be HOST:PORT, not '" + opts_.admin + "'";
    auto host = opts_.admin.substr(0, colon);
    int port = std::atoi(opts_.admin.c_str() + colon + 1);
    if (port <= 0 || port > 65535)
      return "--admin must be HOST:PORT, not '" + opts_.admin + "'";
    // Untyped: the node publishes its admin through its generic publish
    // hook, which announces no interface.
    auto a = sys_.middleman().remote_actor(host, static_cast<uint16_t>(port));
    if (!a)
      return "cannot connect to the admin port " + opts_.admin + ": "
             + sys_.render(a.error())
             + " (is [admin] port set in the node's config?)";
    admin_ = caf::actor_cast<admin_actor>(*a);
    return {};
  }

  // Sends one command; the node's reply, or a transport failure.
  admin_reply ask(const std::vector<std::string>& words, int& rc) {
    auto command = words.empty() ? std::string{} : words[0];
    auto problem = connect();
    if (!problem.empty()) {
      rc = exit_transport;
      return admin_failure(opts_.admin, command, "unavailable", problem);
    }
    admin_request req{secret_, opts_.user, origin_, words, {}};
    admin_reply out;
    self_->request(admin_, std::chrono::milliseconds(opts_.timeout_ms),
                   admin_atom::value, req)
      .receive([&](admin_reply& r) { out = std::move(r); },
               [&](caf::error& err) {
                 rc = exit_transport;
                 admin_ = nullptr;  // reconnect for the next command
                 out = admin_failure(opts_.admin, command, "unavailable",
                                     "no answer from " + opts_.admin + ": "
                                       + sys_.render(err));
               });
    if (rc == exit_ok && !out.error.empty())
      rc = out.error == "permission_denied" ? exit_denied : exit_refused;
    return out;
  }

  const options& opts() const { return opts_; }

private:
  caf::actor_system& sys_;
  caf::scoped_actor self_;
  options opts_;
  std::string secret_;
  std::string origin_;
  admin_actor admin_;
};

void print_reply(const options& opts, const admin_reply& reply) {
  if (opts.json)
    std::cout << admin::reply_json(reply) << "\n";
  else if (reply.error.empty())
    std::cout << admin::reply_text(reply);
  else
    std::cerr << admin::reply_text(reply);
  std::cout.flush();
}

// A console-only command or a usage error, in the chosen format.
void print_local(const options& opts, const std::string& command,
                 const std::string& error, const std::string& text) {
  if (opts.json) {
    admin_reply r;
    r.node = "console";
    r.command = command;
    r.error = error;
    r.message = text;
    std::cout << admin::reply_json(r) << "\n";
  } else if (error.empty()) {
    std::cout << text;
  } else {
    std::cerr << "error (" << error << "): " << text << "\n";
  }
  std::cout.flush();
}

// Runs one line; its exit status. `quit` is set by quit/exit.
int run_line(session& s, const std::string& line, bool& quit) {
  auto& opts = s.opts();
  auto words = admin::split_words(line);
  if (!words) {
    print_local(opts, "", "invalid_argument", words.error().message);
    return exit_usage;
  }
  if (words->empty() || (*words)[0].rfind('#', 0) == 0)
    return exit_ok;
  auto parsed = admin::parse_words(*words);
  if (!parsed) {
    print_local(opts, (*words)[0], "invalid_argument", parsed.error().message);
    return exit_usage;
  }
  auto& name = parsed->name();
  if (name == "quit") {
    quit = true;
    return exit_ok;
  }
  if (name == "help") {
    auto topic = parsed->arg(0);
    print_local(opts, "help", "",
                topic.empty() ? admin::help_text() : admin::command_help(topic));
    return exit_ok;
  }
  int rc = exit_ok;
  auto reply = s.ask(*words, rc);
  print_reply(opts, reply);
  return rc;
}

// -- Interactive: libedit's readline interface ------------------------------------

session* interactive_session = nullptr;
admin::completion_context known;
bool known_loaded = false;
std::vector<std::string> matches;

// Node and SET names for completion, asked once (read-only commands).
void load_known() {
  if (known_loaded || interactive_session == nullptr)
    return;
  known_loaded = true;
  int rc = exit_ok;
  auto nodes = interactive_session->ask({"nodes"}, rc);
  for (auto& t : nodes.tables)
    for (auto& row : t.rows)
      if (!row.empty())
        known.nodes.push_back(row[0]);
  rc = exit_ok;
  auto sets = interactive_session->ask({"sets"}, rc);
  for (auto& t : sets.tables)
    for (auto& row : t.rows)
      if (!row.empty())
        known.sets.push_back(row[0]);
}

char* next_match(const char*, int state) {
  static size_t i = 0;
  if (state == 0)
    i = 0;
  if (i >= matches.size())
    return nullptr;
  return strdup(matches[i++].c_str());
}

char** complete_words(const char* text, int, int end) {
  rl_attempted_completion_over = 1;
  std::string before(rl_line_buffer, static_cast<size_t>(end));
  if (before.find(' ') != std::string::npos)
    load_known();
  matches = admin::complete(before, known);
  if (matches.empty())
    return nullptr;
  return rl_completion_matches(text, next_match);
}

int interactive(session& s) {
  interactive_session = &s;
  rl_readline_name = const_cast<char*>("hongbao-console");
  rl_attempted_completion_function = complete_words;
  using_history();
  auto& hist = s.opts().history_file;
  if (!hist.empty())
    read_history(hist.c_str());
  auto problem = s.connect();
  if (!problem.empty()) {
    std::cerr << "hongbao-console: " << problem << "\n";
    return exit_transport;
  }
  std::cout << "hongbao-console: connected to " << s.opts().admin
            << " (help lists the commands, Ctrl-D leaves)\n";
  auto prompt = "hongbao " + s.opts().admin + "> ";
  int first_failure = exit_ok;
  for (;;) {
    char* raw = readline(prompt.c_str());
    if (raw == nullptr) {
      std::cout << "\n";
      break;
    }
    std::string line = raw;
    free(raw);
    // History keeps the command without the blank a completion leaves.
    auto last = line.find_last_not_of(" \t");
    if (last == std::string::npos)
      continue;
    line.resize(last + 1);
    add_history(line.c_str());
    if (!hist.empty())
      write_history(hist.c_str());
    bool quit = false;
    auto rc = run_line(s, line, quit);
    if (first_failure == exit_ok)
      first_failure = rc;
    if (quit)
      break;
  }
  return first_failure;
}

std::string origin_of(const char* mode) {
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  std::string out = std::string{host} + " pid=" + std::to_string(getpid());
  if (auto* tty = ttyname(STDIN_FILENO))
    out += std::string{" tty="} + tty;
  return out + " mode=" + mode;
}

std::optional<std::string> read_secret(const options& opts, std::string& err) {
  if (!opts.secret_file.empty()) {
    std::ifstream in{opts.secret_file};
    std::string line;
    if (!in || !std::getline(in, line)) {
      err = "cannot read the secret file " + opts.secret_file;
      return std::nullopt;
    }
    while (!line.empty() && (line.back() == '\r' || line.back() == ' '))
      line.pop_back();
    return line;
  }
  if (auto* env = std::getenv("HONGBAO_ADMIN_SECRET"))
    return std::string{env};
  err = "no operator secret: give --secret-file FILE or set "
        "HONGBAO_ADMIN_SECRET (never on the command line: ps shows it)";
  return std::nullopt;
}

} // namespace

int main(int argc, char** argv) {
  options opts;
  if (auto* env = std::getenv("HONGBAO_ADMIN"))
    opts.admin = env;
  if (auto* env = std::getenv("HONGBAO_ADMIN_SECRET_FILE"))
    opts.secret_file = env;
  if (auto* env = std::getenv("USER"))
    opts.user = env;
  if (auto* home = std::getenv("HOME"))
    opts.history_file = std::string{home} + "/.hongbao_console_history";
  CLI::App app{"hongbao-console: the operator's console of a hongbao node.\n"
               "Commands: type help, or see docs/operations.md.\n"
               "Exit status: 0 ok, 1 refused or failed by the node, 2 usage, "
               "3 no connection or answer, 4 wrong secret."};
  app.add_option("--admin,-a", opts.admin,
                 "the node's admin port HOST:PORT ([admin] host and port; "
                 "env HONGBAO_ADMIN)")
    ->capture_default_str();
  app.add_option("--secret-file", opts.secret_file,
                 "file whose first line is the operator secret (env "
                 "HONGBAO_ADMIN_SECRET_FILE, or the secret itself in "
                 "HONGBAO_ADMIN_SECRET)");
  app.add_option("--user,-u", opts.user,
                 "who you are, for the node's audit log (default: $USER)");
  app.add_flag("--json", opts.json, "one JSON object per command");
  app.add_option("-c,--command", opts.commands,
                 "run this command and exit (repeatable); without it, "
                 "commands come from the terminal or, when stdin is not "
                 "one, one per line from stdin");
  app.add_option("--timeout-ms", opts.timeout_ms, "per command")
    ->capture_default_str()
    ->check(CLI::Range(100, 3600000));
  app.add_option("--history-file", opts.history_file,
                 "interactive history (\"\" keeps none)")
    ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (opts.user.empty())
    opts.user = "unknown";

  std::string err;
  auto secret = read_secret(opts, err);
  if (!secret) {
    std::cerr << "hongbao-console: " << err << "\n";
    return exit_usage;
  }
  bool tty = isatty(STDIN_FILENO) != 0;
  const char* mode = !opts.commands.empty() ? "one-shot" : tty ? "interactive"
                                                                : "stdin";
  caf::actor_system_config cfg;
  add_admin_types(cfg);
  cfg.load<caf::io::middleman>();
  cfg.set("logger.console", caf::atom("none"));
  cfg.set("scheduler.max-threads", size_t{2});
  caf::actor_system sys{cfg};
  session s{sys, opts, *secret, origin_of(mode)};

  if (opts.commands.empty() && tty)
    return interactive(s);
  std::vector<std::string> lines = opts.commands;
  if (lines.empty())
    for (std::string line; std::getline(std::cin, line);)
      lines.push_back(line);
  int first_failure = exit_ok;
  for (auto& line : lines) {
    bool quit = false;
    auto rc = run_line(s, line, quit);
    if (first_failure == exit_ok)
      first_failure = rc;
    if (quit)
      break;
  }
  return first_failure;
}
