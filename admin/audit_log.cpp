#include "admin/audit_log.hpp"

#include <ctime>

#include <nlohmann/json.hpp>

namespace hb::admin {

namespace {

std::string iso_utc(int64_t ms) {
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                tm.tm_min, tm.tm_sec, static_cast<int>(ms % 1000));
  return buf;
}

} // namespace

std::string audit_line(const audit_entry& e) {
  nlohmann::json j;
  j["at"] = iso_utc(e.at_ms);
  j["at_ms"] = e.at_ms;
  j["node"] = e.node;
  j["credential"] = e.credential;
  j["user"] = e.user;
  j["origin"] = e.origin;
  j["peer"] = e.peer;
  if (!e.forwarded_by.empty())
    j["forwarded_by"] = e.forwarded_by;
  j["command"] = e.command;
  j["args"] = e.args;
  j["result"] = e.result;
  j["message"] = e.message;
  // Invalid UTF-8 from a console must not make the line unwritable.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

bool audit_log::open(const std::string& path, std::string& err) {
  auto* f = std::fopen(path.c_str(), "a");
  if (f == nullptr) {
    err = "cannot open the audit log " + path + " for appending";
    return false;
  }
  std::fclose(f);
  path_ = path;
  return true;
}

// Opened for each line: actions are rare, and a log moved away by
// logrotate is followed by a new file at the configured path.
bool audit_log::write(const audit_entry& entry) {
  if (path_.empty())
    return false;
  auto* f = std::fopen(path_.c_str(), "a");
  if (f == nullptr)
    return false;
  auto line = audit_line(entry) + "\n";
  bool ok = std::fwrite(line.data(), 1, line.size(), f) == line.size();
  ok = std::fflush(f) == 0 && ok;
  return std::fclose(f) == 0 && ok;
}

} // namespace hb::admin
