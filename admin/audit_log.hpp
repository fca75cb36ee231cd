#pragma once

// The audit log of operator actions: one JSON object per line, appended
// and flushed as each action finishes (block, unblock, reconcile, later
// drain and its kin), and each refused attempt. Who: the console's user and
// the credential's name; when; what (command and arguments); from where
// (what the console says and CAF's id of the sending node); the result.
// The secret is never written.

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace hb::admin {

struct audit_entry {
  int64_t at_ms = 0;       ///< Unix ms when the action finished
  std::string node;        ///< the node that ran (or refused) it
  std::string credential;  ///< the credential's name ("-" if refused)
  std::string user;        ///< what the console says its user is
  std::string origin;      ///< what the console says: host, pid, terminal
  std::string peer;        ///< CAF's id of the sending node
  std::string forwarded_by;  ///< the node that forwarded it, if any
  std::string command;
  std::vector<std::string> args;
  std::string result;      ///< "ok" or an error code
  std::string message;
};

/// The entry as one line of JSON (no newline), with "at" as ISO 8601 UTC.
std::string audit_line(const audit_entry& entry);

/// An append-only file of audit lines: each line is appended and flushed
/// with the file opened for it, so that a rotated log is followed.
class audit_log {
public:
  audit_log() = default;
  audit_log(const audit_log&) = delete;
  audit_log& operator=(const audit_log&) = delete;
  ~audit_log() = default;

  /// Checks that the file can be appended to (creates it); false with a
  /// message if not.
  bool open(const std::string& path, std::string& err);

  /// Appends and flushes one line; false if the file could not take it.
  bool write(const audit_entry& entry);

  const std::string& path() const { return path_; }

private:
  std::string path_;
};

} // namespace hb::admin
