#define CAF_SUITE admin.commands

#include "caf/test/unit_test.hpp"

#include "admin/commands.hpp"

using namespace hb;
using namespace hb::admin;

// A check that names the case it fails for.
#define CHECK_FOR(cond, what)                                                  \
  do {                                                                         \
    if (!(cond))                                                               \
      CAF_MESSAGE("failed for: " << what);                                     \
    CAF_CHECK(cond);                                                           \
  } while (false)

namespace {

std::vector<std::string> words_of(const std::string& line) {
  auto w = split_words(line);
  CAF_REQUIRE(w.ok());
  return *w;
}

} // namespace

CAF_TEST(lines split into words with quotes and escapes) {
  CAF_CHECK_EQUAL(words_of("  block  7   disk check "),
                  (std::vector<std::string>{"block", "7", "disk", "check"}));
  CAF_CHECK_EQUAL(words_of("block 7 \"disk 'a' check\""),
                  (std::vector<std::string>{"block", "7", "disk 'a' check"}));
  CAF_CHECK_EQUAL(words_of("block 7 'x \"y\"' z\\ w"),
                  (std::vector<std::string>{"block", "7", "x \"y\"", "z w"}));
  CAF_CHECK_EQUAL(words_of("segments ''"),
                  (std::vector<std::string>{"segments", ""}));
  CAF_CHECK(words_of("   ").empty());
  CAF_CHECK(!split_words("block 7 \"open").ok());
  CAF_CHECK(!split_words("block 7 \\").ok());
}

CAF_TEST(every command parses with its arguments) {
  auto p = parse_line("block 7 disk check on sdb");
  CAF_REQUIRE(p.ok());
  CAF_CHECK_EQUAL(p->name(), "block");
  CAF_CHECK_EQUAL(p->args, (std::vector<std::string>{"7", "disk check on sdb"}));
  CAF_CHECK(p->spec->action);
  auto u = parse_line("unblock 999");
  CAF_REQUIRE(u.ok());
  CAF_CHECK(u->spec->action);
  for (auto line : {"nodes", "zones", "sets", "segments", "segments set-1",
                    "stats", "stats a1", "envelope 2026120700000001007",
                    "reconcile", "reconcile --since 24h",
                    "reconcile --since=1700000000000", "help", "help block",
                    "quit", "exit", "drain a1", "undrain a1", "rebalance",
                    "rebalance --dry-run"})
    CHECK_FOR(parse_line(line).ok(), line);
  auto r = parse_line("reconcile --since 24h");
  CAF_REQUIRE(r.ok());
  CAF_CHECK(r->has("--since"));
  CAF_CHECK_EQUAL(r->options.at("--since"), "24h");
  CAF_CHECK(!parse_line("nodes")->spec->action);
  CAF_CHECK(parse_line("help")->spec->console_only);
}

CAF_TEST(bad command lines are refused with the usage) {
  auto check_bad = [](const std::string& line, const std::string& part) {
    auto p = parse_line(line);
    CHECK_FOR(!p.ok(), line);
    if (p.ok())
      return;
    CAF_CHECK_EQUAL(p.error().code, errc::invalid_argument);
    CHECK_FOR(p.error().message.find(part) != std::string::npos,
              line << " -> " << p.error().message);
  };
  check_bad("", "no command");
  check_bad("blok 7", "did you mean 'block'");
  check_bad("frobnicate", "no command 'frobnicate'");
  check_bad("block", "missing SEGMENT; usage: block SEGMENT [REASON...]");
  check_bad("block 1000", "segment number from 0 to 999");
  check_bad("block -1", "segment number");
  check_bad("envelope 99999999999999999999", "envelope id");
  check_bad("envelope 9223372036854775808", "envelope id");
  check_bad("block seven", "segment number");
  check_bad("unblock 7 8", "too many arguments");
  check_bad("envelope 0", "envelope id");
  check_bad("envelope abc", "envelope id");
  check_bad("envelope", "missing ID");
  check_bad("nodes extra", "too many arguments");
  check_bad("reconcile --since", "needs a value WHEN");
  check_bad("reconcile --until 5", "unknown option --until");
  check_bad("help nosuch", "no command 'nosuch'");
  check_bad("drain", "missing NODE");
  check_bad("rebalance --dry-run=yes", "--dry-run takes no value");
}

CAF_TEST(since is Unix ms or an age) {
  int64_t now = 1'000'000'000'000;
  CAF_CHECK_EQUAL(*parse_since("1700000000000", now), 1700000000000);
  CAF_CHECK_EQUAL(*parse_since("90s", now), now - 90'000);
  CAF_CHECK_EQUAL(*parse_since("30m", now), now - 30 * 60'000);
  CAF_CHECK_EQUAL(*parse_since("24h", now), now - 24 * 3'600'000);
  CAF_CHECK_EQUAL(*parse_since("7d", now), now - 7 * 86'400'000LL);
  CAF_CHECK(!parse_since("yesterday", now).ok());
  CAF_CHECK(!parse_since("5w", now).ok());
  CAF_CHECK(!parse_since("h", now).ok());
}

CAF_TEST(help lists every command and explains one) {
  auto all = help_text();
  for (auto& spec : command_specs())
    CHECK_FOR(all.find(usage_of(spec)) != std::string::npos, spec.name);
  CAF_CHECK_EQUAL(usage_of(*find_command("block")), "block SEGMENT [REASON...]");
  CAF_CHECK_EQUAL(usage_of(*find_command("reconcile")), "reconcile [--since WHEN]");
  auto block = command_help("block");
  CAF_CHECK(block.find("usage: block SEGMENT") != std::string::npos);
  CAF_CHECK(block.find("audit log") != std::string::npos);
  CAF_CHECK(command_help("reconcile").find("--since WHEN") != std::string::npos);
  CAF_CHECK(command_help("nosuch").empty());
}

CAF_TEST(completion offers commands then names by argument kind) {
  completion_context known{{"a1", "a2", "b1"}, {"set-1", "set-2"}};
  CAF_CHECK_EQUAL(complete("", known).size(), command_specs().size());
  CAF_CHECK_EQUAL(complete("se", known),
                  (std::vector<std::string>{"segments", "sets"}));
  CAF_CHECK_EQUAL(complete("bl", known), (std::vector<std::string>{"block"}));
  CAF_CHECK_EQUAL(complete("stats a", known),
                  (std::vector<std::string>{"a1", "a2"}));
  CAF_CHECK_EQUAL(complete("stats ", known),
                  (std::vector<std::string>{"a1", "a2", "b1"}));
  CAF_CHECK_EQUAL(complete("segments set-", known),
                  (std::vector<std::string>{"set-1", "set-2"}));
  CAF_CHECK_EQUAL(complete("reconcile --s", known),
                  (std::vector<std::string>{"--since"}));
  CAF_CHECK_EQUAL(complete("help un", known),
                  (std::vector<std::string>{"unblock", "undrain"}));
  CAF_CHECK_EQUAL(complete("drain b", known), (std::vector<std::string>{"b1"}));
  CAF_CHECK(complete("block 7 ", known).empty());
  CAF_CHECK(complete("nosuch ", known).empty());
}
