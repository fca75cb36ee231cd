#pragma once

// The operator's commands, as data: one table says each command's name,
// arguments, options, help and whether it is an action (audited). The
// console (parsing, help, completion) and the admin actor (which parses
// the words again: it never trusts a console) share it. Pure: no CAF, no
// I/O.
//
// Adding a command: a command_spec in command_specs() (commands.cpp) and a
// handler in the admin actor's table (admin_actor.cpp); migrate ID NODE
// has its place marked in both.

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "domain/errc.hpp"

namespace hb::admin {

/// What an argument holds; each kind is checked by parse_words and
/// completed by the console.
enum class arg_kind {
  segment,      ///< 0..999
  envelope_id,  ///< a positive envelope id
  node,         ///< a node's name
  set,          ///< a SET's name
  command,      ///< a command's name (help)
  text,         ///< free text; the last one takes the rest of the line
};

struct arg_spec {
  std::string name;  ///< as shown in the usage: SEGMENT, NODE, ...
  arg_kind kind = arg_kind::text;
  bool optional = false;
};

struct option_spec {
  std::string name;        ///< "--since"
  std::string value_name;  ///< "WHEN"; empty for a flag
  std::string help;
};

struct command_spec {
  std::string name;
  std::vector<arg_spec> args;
  std::vector<option_spec> options;
  std::string summary;  ///< one line
  std::string help;     ///< what it shows or does, in a few lines
  bool action = false;  ///< changes something: written to the audit log
  bool console_only = false;  ///< answered by the console itself
};

/// Every command, in the order `help` lists them.
const std::vector<command_spec>& command_specs();

/// The command named `name`; null if none is.
const command_spec* find_command(const std::string& name);

/// "block SEGMENT [REASON...]".
std::string usage_of(const command_spec& spec);

/// A command line split into words: blanks separate words, single and
/// double quotes group, a backslash escapes the next character. An
/// unclosed quote is an error.
outcome<std::vector<std::string>> split_words(const std::string& line);

/// A command with its arguments and options checked against its spec.
struct parsed_command {
  const command_spec* spec = nullptr;
  std::vector<std::string> args;  ///< positional, in order (text rest joined)
  std::map<std::string, std::string> options;  ///< "--since" -> "24h"; flags -> ""

  const std::string& name() const { return spec->name; }
  bool has(const std::string& option) const { return options.count(option) > 0; }
  /// The positional argument `i`, or "" when it was left out.
  std::string arg(size_t i) const { return i < args.size() ? args[i] : ""; }
};

/// Checks the words (name first) against the command table: unknown
/// commands (with a suggestion), missing or extra arguments, unknown
/// options, values of the wrong kind. Errors are invalid_argument with a
/// message that says the usage.
outcome<parsed_command> parse_words(const std::vector<std::string>& words);

/// split_words, then parse_words; an empty line is an error.
outcome<parsed_command> parse_line(const std::string& line);

/// `reconcile --since`: Unix milliseconds, or an age before `now_ms`
/// ("90s", "30m", "24h", "7d"). Errors say what is accepted.
outcome<int64_t> parse_since(const std::string& text, int64_t now_ms);

/// A segment "0".."999".
std::optional<int32_t> parse_segment(const std::string& text);

/// A positive envelope id.
std::optional<int64_t> parse_envelope_id(const std::string& text);

/// The list of commands with their usage and summary (`help`).
std::string help_text();

/// One command's usage, options and help (`help block`); empty if there is
/// no such command.
std::string command_help(const std::string& name);

/// What the console knows for completion besides the command table.
struct completion_context {
  std::vector<std::string> nodes;
  std::vector<std::string> sets;
};

/// Candidates for the last word of `line` (the text before the cursor):
/// command names for the first word, then the kind of the argument at
/// that place (node and SET names, command names) or the command's
/// options. Sorted; empty when nothing fits.
std::vector<std::string> complete(const std::string& line,
                                  const completion_context& known);

} // namespace hb::admin
