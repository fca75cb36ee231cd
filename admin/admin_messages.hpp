#pragma once

// What hongbao-console and the admin actors of the nodes say to each other:
// a request (the operator's credential, who and where they are, and the
// command's words) and a reply of plain data (fields and tables) that the
// console prints as text or JSON. The types have a CAF type-id block of
// their own, after hongbao's: only programs with an operator side
// (hongbao-node, hongbao-console) register it.

#include <cstdint>
#include <string>
#include <vector>

#include "caf/all.hpp"

#include "runtime/messages.hpp"

namespace hb {

/// One operator request. `secret` is compared in constant time and never
/// logged; `user` and `origin` are what the console says about itself
/// (written to the audit log with the credential's name); `words` is the
/// command line split into words (command name first).
struct admin_request {
  std::string secret;
  std::string user;
  std::string origin;
  std::vector<std::string> words;
  /// The node that forwarded this request (empty from a console): a
  /// forwarded request is never forwarded again.
  std::string forwarded_by;
};

/// One named field of a reply ("node" = "a1").
struct admin_field {
  std::string key;
  std::string value;
};

/// One table of a reply: a name ("nodes"), its columns and rows of cells.
struct admin_table {
  std::string name;
  std::vector<std::string> columns;
  std::vector<std::vector<std::string>> rows;
};

/// The answer to every command: plain data, the same shape for all, so
/// that a new command needs no new type and the console formats it.
/// `error` is empty on success, else a stable snake_case code
/// ("permission_denied", "invalid_argument", "unavailable", ...).
struct admin_reply {
  std::string node;     ///< the node that answered
  std::string command;  ///< the command's name
  std::string error;
  std::string message;  ///< for people: what went wrong or what happened
  std::vector<admin_field> fields;
  std::vector<admin_table> tables;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, admin_request& x) {
  return f(x.secret, x.user, x.origin, x.words, x.forwarded_by);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, admin_field& x) {
  return f(x.key, x.value);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, admin_table& x) {
  return f(x.name, x.columns, x.rows);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, admin_reply& x) {
  return f(x.node, x.command, x.error, x.message, x.fields, x.tables);
}

} // namespace hb

CAF_BEGIN_TYPE_ID_BLOCK(hongbao_admin, caf::id_block::hongbao::end)

  CAF_ADD_TYPE_ID(hongbao_admin, (hb::admin_request))
  CAF_ADD_TYPE_ID(hongbao_admin, (hb::admin_reply))

CAF_END_TYPE_ID_BLOCK(hongbao_admin)

namespace hb {

/// An operator request to an admin actor.
using admin_atom = caf::atom_constant<caf::atom("admin")>;

/// The name under which each node's admin actor is in CAF's actor
/// registry: another node's admin finds it there over the node link.
constexpr caf::atom_value admin_registry_name = caf::atom("hb_admin");

/// Registers hongbao's message types and the admin's.
void add_admin_types(caf::actor_system_config& cfg);

/// A reply that failed: `error` is the code's name.
admin_reply admin_failure(std::string node, std::string command,
                          std::string error, std::string message);

} // namespace hb
