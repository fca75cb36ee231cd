#pragma once

// How the console prints an admin reply: text for people (fields as
// "key: value" lines, tables with aligned columns) or one JSON object per
// command for scripts. Pure: no CAF, no I/O.

#include <string>

#include "admin/admin_messages.hpp"

namespace hb::admin {

/// Text: "error (code): message" for a failure, else its message; then
/// its fields and its tables (each with a heading and its row count; a
/// failure may carry some, e.g. reconcile's discrepancies).
std::string reply_text(const admin_reply& reply);

/// One JSON object on one line. Success: {"ok": true, "node", "command",
/// "message"?, "fields": {key: value}, "tables": {name: [{column: cell}]}};
/// failure: {"ok": false, "node", "command", "error": {"code", "message"},
/// "fields", "tables"}.
/// A cell or field that is an integer of at most 15 digits is a JSON
/// number (envelope ids, longer, stay strings: JSON readers keep only 53
/// bits), "true"/"false" are booleans, everything else a string.
std::string reply_json(const admin_reply& reply);

/// A table's rows as aligned text columns, with a header line.
std::string table_text(const admin_table& table);

} // namespace hb::admin
