#define CAF_SUITE admin.audit_log

#include "caf/test/unit_test.hpp"

#include <fstream>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "admin/admin_actor.hpp"
#include "admin/audit_log.hpp"

using namespace hb;
using namespace hb::admin;
using json = nlohmann::json;

CAF_TEST(an entry is one json line with who when what where and result) {
  audit_entry e;
  e.at_ms = 1765090000123;
  e.node = "a1";
  e.credential = "operator";
  e.user = "alice";
  e.origin = "ops-host pid=7 mode=one-shot";
  e.peer = "node-id-x";
  e.command = "block";
  e.args = {"7", "disk check"};
  e.result = "ok";
  e.message = "segment 7 blocked (manual: disk check)";
  auto line = audit_line(e);
  CAF_CHECK(line.find('\n') == std::string::npos);
  auto j = json::parse(line);
  CAF_CHECK_EQUAL(j["at"], "2025-12-07T06:46:40.123Z");
  CAF_CHECK_EQUAL(j["at_ms"], 1765090000123);
  CAF_CHECK_EQUAL(j["user"], "alice");
  CAF_CHECK_EQUAL(j["credential"], "operator");
  CAF_CHECK_EQUAL(j["args"][1], "disk check");
  CAF_CHECK_EQUAL(j["result"], "ok");
  CAF_CHECK(!j.contains("forwarded_by"));
  // Bytes that are not UTF-8 do not make the line unwritable.
  e.user = std::string{"bad\xff"};
  CAF_CHECK(json::parse(audit_line(e))["user"].is_string());
}

CAF_TEST(the log appends flushed lines) {
  auto path = "/tmp/hb_audit_test_" + std::to_string(getpid()) + ".jsonl";
  std::remove(path.c_str());
  {
    audit_log log;
    std::string err;
    CAF_REQUIRE(log.open(path, err));
    audit_entry e;
    e.command = "unblock";
    CAF_CHECK(log.write(e));
    // Flushed: readable before the log closes.
    std::ifstream in{path};
    std::string line;
    CAF_CHECK(static_cast<bool>(std::getline(in, line)));
    auto j = json::parse(line);
    CAF_CHECK_EQUAL(j["command"], "unblock");
  }
  audit_log again;
  std::string err;
  CAF_REQUIRE(again.open(path, err));
  audit_entry e;
  e.command = "reconcile";
  CAF_CHECK(again.write(e));
  std::ifstream in{path};
  int lines = 0;
  for (std::string line; std::getline(in, line);)
    ++lines;
  CAF_CHECK_EQUAL(lines, 2);
  // Rotated away (logrotate's rename): the next line starts a new file.
  auto rotated = path + ".1";
  CAF_REQUIRE(std::rename(path.c_str(), rotated.c_str()) == 0);
  CAF_CHECK(again.write(e));
  std::ifstream fresh{path};
  lines = 0;
  for (std::string line; std::getline(fresh, line);)
    ++lines;
  CAF_CHECK_EQUAL(lines, 1);
  std::remove(rotated.c_str());
  std::remove(path.c_str());
  audit_log nowhere;
  CAF_CHECK(!nowhere.open("/nonexistent-dir/audit.jsonl", err));
  CAF_CHECK(err.find("/nonexistent-dir/audit.jsonl") != std::string::npos);
}

CAF_TEST(secrets compare whole) {
  CAF_CHECK(secrets_equal("0123456789abcdef", "0123456789abcdef"));
  CAF_CHECK(!secrets_equal("0123456789abcdeX", "0123456789abcdef"));
  CAF_CHECK(!secrets_equal("0123456789abcde", "0123456789abcdef"));
  CAF_CHECK(!secrets_equal("0123456789abcdef0", "0123456789abcdef"));
  CAF_CHECK(!secrets_equal("", ""));  // no secret configured: nothing passes
}
