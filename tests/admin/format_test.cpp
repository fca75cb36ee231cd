#define CAF_SUITE admin.format

#include "caf/test/unit_test.hpp"

#include <nlohmann/json.hpp>

#include "admin/format.hpp"

using namespace hb;
using namespace hb::admin;
using json = nlohmann::json;

namespace {

admin_reply sample() {
  admin_reply r;
  r.node = "a1";
  r.command = "segments";
  r.fields.push_back({"cluster", "true"});
  r.fields.push_back({"opens.committed", "12"});
  r.fields.push_back({"id", "2026120700000001007"});
  r.tables.push_back({"owners",
                      {"set", "owner", "count", "segments"},
                      {{"set-1", "a1", "167", "0-2,5"},
                       {"set-1", "小明", "3", "-"}}});
  r.tables.push_back({"blocked", {"segment", "mode"}, {}});
  return r;
}

} // namespace

CAF_TEST(text shows fields and aligned tables) {
  auto text = reply_text(sample());
  CAF_CHECK(text.find("  cluster:         true\n") != std::string::npos);
  CAF_CHECK(text.find("owners (2):\n") != std::string::npos);
  CAF_CHECK(text.find("  set    owner  count  segments\n") != std::string::npos);
  CAF_CHECK(text.find("  set-1  a1     167    0-2,5\n") != std::string::npos);
  // Two columns wide per CJK character is beyond this; one per code point.
  CAF_CHECK(text.find("  set-1  小明     3      -\n") != std::string::npos);
  CAF_CHECK(text.find("blocked (0):\n") != std::string::npos);
}

CAF_TEST(json types numbers and booleans and keeps long ids as text) {
  auto j = json::parse(reply_json(sample()));
  CAF_CHECK_EQUAL(j["ok"], true);
  CAF_CHECK_EQUAL(j["node"], "a1");
  CAF_CHECK_EQUAL(j["command"], "segments");
  CAF_CHECK_EQUAL(j["fields"]["cluster"], true);
  CAF_CHECK_EQUAL(j["fields"]["opens.committed"], 12);
  CAF_CHECK_EQUAL(j["fields"]["id"], "2026120700000001007");
  CAF_CHECK_EQUAL(j["tables"]["owners"][0]["count"], 167);
  CAF_CHECK_EQUAL(j["tables"]["owners"][0]["segments"], "0-2,5");
  CAF_CHECK_EQUAL(j["tables"]["owners"][1]["owner"], "小明");
  CAF_CHECK(j["tables"]["blocked"].is_array());
  CAF_CHECK(j["tables"]["blocked"].empty());
}

CAF_TEST(failures say code and message) {
  auto r = admin_failure("a1", "block", "permission_denied",
                         "wrong operator secret");
  CAF_CHECK_EQUAL(reply_text(r),
                  "error (permission_denied): wrong operator secret\n");
  auto j = json::parse(reply_json(r));
  CAF_CHECK_EQUAL(j["ok"], false);
  CAF_CHECK_EQUAL(j["error"]["code"], "permission_denied");
  CAF_CHECK_EQUAL(j["error"]["message"], "wrong operator secret");
}
