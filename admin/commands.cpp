#include "admin/commands.hpp"

#include <algorithm>
#include <cctype>
#include <limits>

#include "domain/envelope_id.hpp"

namespace hb::admin {

namespace {

arg_spec required(std::string name, arg_kind kind) {
  return arg_spec{std::move(name), kind, false};
}

arg_spec optional(std::string name, arg_kind kind) {
  return arg_spec{std::move(name), kind, true};
}

std::vector<command_spec> make_specs() {
  std::vector<command_spec> out;
  out.push_back({"help", {optional("COMMAND", arg_kind::command)}, {},
                 "list the commands, or explain one",
                 "Without an argument: every command with its usage. With one: "
                 "that command's\narguments, options and what it does.",
                 false, true});
  out.push_back({"nodes", {}, {},
                 "the nodes of the cluster: SET, zone, lease, addresses",
                 "Every node that ever joined a SET this node knows of (its own SET "
                 "and the\nothers' as pulled from their nodes): name, SET, zone, "
                 "incarnation, whether\nits lease is current and for how long, its "
                 "peer and gateway addresses.\nA node outside a cluster shows itself.",
                 false, false});
  out.push_back({"zones", {}, {},
                 "the zones: live nodes and segments served in each",
                 "Per zone: the nodes (live / known) and how many segments their "
                 "live nodes own.",
                 false, false});
  out.push_back({"sets", {}, {},
                 "the SETs: segments, database, nodes, owners, blocks",
                 "The SET map (segment ranges per SET, the database with its "
                 "password hidden)\nand per SET the live nodes, owned segments and "
                 "blocked segments.",
                 false, false});
  out.push_back({"segments", {optional("SET", arg_kind::set)}, {},
                 "who owns which segments (as ranges), and the blocked ones",
                 "Per SET (or only SET): each owner with its incarnation, whether "
                 "its lease is\ncurrent, how many segments it owns and which, as "
                 "compact ranges (\"0-2,5\");\nthen the blocked segments with mode "
                 "and reason.",
                 false, false});
  out.push_back({"envelope", {required("ID", arg_kind::envelope_id)}, {},
                 "where an envelope lives and its state",
                 "Where: its segment, SET, the segment's owner node and owner_epoch. "
                 "State,\nread from its SET's database (asked through a node of that "
                 "SET): status,\ntotal, remaining amount and count, opens, epoch, "
                 "expiry. Queued opens of a\nlive actor are not shown (the "
                 "registry does not expose them yet).",
                 false, false});
  out.push_back({"stats", {optional("NODE", arg_kind::node)}, {},
                 "a node's counters and blocked segments",
                 "The node's metrics (requests, batches, store latency, relay lag, "
                 "cluster) and\nits blocked segments. NODE: asked of that node's "
                 "admin, over the node link.",
                 false, false});
  out.push_back({"block",
                 {required("SEGMENT", arg_kind::segment),
                  optional("REASON", arg_kind::text)},
                 {},
                 "block a segment by hand (audited)",
                 "Blocks SEGMENT durably (segment_states): requests for its "
                 "envelopes fail fast\nwith SEGMENT_UNAVAILABLE and creates go to "
                 "other segments. A manual block is\nnever lifted by a probe: only "
                 "`unblock`. In a cluster it is done by a node of\nthe segment's "
                 "SET and adopted by the others at their next renewal.",
                 true, false});
  out.push_back({"unblock", {required("SEGMENT", arg_kind::segment)}, {},
                 "lift a segment's block (audited)",
                 "Lifts SEGMENT's block, manual or automatic; if its storage still "
                 "fails, segment\nhealth blocks it again.",
                 true, false});
  out.push_back({"reconcile", {},
                 {{"--since", "WHEN",
                   "only envelopes created since WHEN: Unix ms or an age "
                   "(90s, 30m, 24h, 7d)"}},
                 "reconcile the node's SET now (audited)",
                 "Runs the reconciliation (对账) of this node's SET at once: per "
                 "envelope opens +\nrefunded + remaining = total, every open "
                 "credited once, the ledger balanced.\nLost credits are re-enqueued. "
                 "Prints the totals and every discrepancy.",
                 true, false});
  // -- The cluster's planned moves (issue 27): asked of the membership ------
  out.push_back({"drain", {required("NODE", arg_kind::node)}, {},
                 "hand a node's segments over; it takes none (audited)",
                 "NODE hands every segment it owns to the other live nodes of "
                 "its SET, one\nowner compare-and-set each after its envelope "
                 "actors finished their writes,\nand takes none until `undrain` "
                 "(recorded in its SET's database:\nnode_leases.draining).",
                 true, false});
  out.push_back({"undrain", {required("NODE", arg_kind::node)}, {},
                 "let a drained node serve again (audited)",
                 "NODE takes segments again; a rebalance gives it its share "
                 "back.",
                 true, false});
  out.push_back({"rebalance", {},
                 {{"--dry-run", "", "only list the moves placement wants"}},
                 "move segments to where placement wants them (audited)",
                 "The moves that placement wants now (segment, from, to) in "
                 "this node's SET;\nstarted unless --dry-run.",
                 true, false});
  // migrate ID NODE (move one live envelope to NODE): a command_spec here
  // (action = true) and a handler in admin_actor.cpp's table, once the
  // membership or registry offers it.
  out.push_back({"quit", {}, {}, "leave the console", "Leaves the console "
                 "(also: exit, Ctrl-D).", false, true});
  return out;
}

std::string lowered(std::string s) {
  for (auto& c : s)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Edit distance, for "did you mean": command names are short.
size_t distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j)
    row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1,
                         diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

std::string suggestion_for(const std::string& name) {
  std::string best;
  size_t best_d = 3;
  for (auto& spec : command_specs()) {
    auto d = distance(lowered(name), spec.name);
    if (d < best_d || (spec.name.rfind(lowered(name), 0) == 0 && !name.empty()
                       && best.empty())) {
      best_d = std::min(d, best_d);
      best = spec.name;
    }
  }
  return best;
}

failure usage_failure(const command_spec& spec, const std::string& problem) {
  return failure{errc::invalid_argument,
                 problem + "; usage: " + usage_of(spec)};
}

// The value of one argument, by its kind.
std::string check_arg(const arg_spec& arg, const std::string& value) {
  switch (arg.kind) {
    case arg_kind::segment:
      if (!parse_segment(value))
        return arg.name + " must be a segment number from 0 to 999, not '"
               + value + "'";
      return {};
    case arg_kind::envelope_id:
      if (!parse_envelope_id(value))
        return arg.name + " must be an envelope id (a positive number), not '"
               + value + "'";
      return {};
    case arg_kind::command:
      if (!find_command(value))
        return "no command '" + value + "'";
      return {};
    case arg_kind::node:
    case arg_kind::set:
    case arg_kind::text:
      if (value.empty() || value.size() > 256)
        return arg.name + " must be 1 to 256 characters";
      return {};
  }
  return {};
}

bool digits_only(const std::string& s) {
  return !s.empty()
         && std::all_of(s.begin(), s.end(),
                        [](char c) { return c >= '0' && c <= '9'; });
}

} // namespace

const std::vector<command_spec>& command_specs() {
  static const std::vector<command_spec> specs = make_specs();
  return specs;
}

const command_spec* find_command(const std::string& name) {
  for (auto& spec : command_specs())
    if (spec.name == name)
      return &spec;
  if (name == "exit")
    return find_command("quit");
  return nullptr;
}

std::string usage_of(const command_spec& spec) {
  std::string out = spec.name;
  for (auto& opt : spec.options)
    out += " [" + opt.name + (opt.value_name.empty() ? "" : " " + opt.value_name)
           + "]";
  for (auto& arg : spec.args) {
    auto shown = arg.name + (arg.kind == arg_kind::text ? "..." : "");
    out += " " + (arg.optional ? "[" + shown + "]" : shown);
  }
  return out;
}

outcome<std::vector<std::string>> split_words(const std::string& line) {
  std::vector<std::string> out;
  std::string word;
  bool in_word = false;
  char quote = 0;
  for (size_t i = 0; i < line.size(); ++i) {
    char c = line[i];
    if (c == '\\' && quote != '\'') {
      if (i + 1 >= line.size())
        return failure{errc::invalid_argument,
                       "a backslash ends the line: nothing to escape"};
      word += line[++i];
      in_word = true;
    } else if (quote != 0) {
      if (c == quote)
        quote = 0;
      else
        word += c;
    } else if (c == '\'' || c == '"') {
      quote = c;
      in_word = true;
    } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      if (in_word)
        out.push_back(std::move(word));
      word.clear();
      in_word = false;
    } else {
      word += c;
      in_word = true;
    }
  }
  if (quote != 0)
    return failure{errc::invalid_argument,
                   std::string{"unclosed "} + (quote == '"' ? "double" : "single")
                     + " quote"};
  if (in_word)
    out.push_back(std::move(word));
  return out;
}

outcome<parsed_command> parse_words(const std::vector<std::string>& words) {
  if (words.empty())
    return failure{errc::invalid_argument, "no command; try: help"};
  auto* spec = find_command(words[0]);
  if (spec == nullptr) {
    auto hint = suggestion_for(words[0]);
    return failure{errc::invalid_argument,
                   "no command '" + words[0] + "'"
                     + (hint.empty() ? "" : "; did you mean '" + hint + "'?")
                     + " (help lists them)"};
  }
  parsed_command out;
  out.spec = spec;
  std::vector<std::string> positional;
  for (size_t i = 1; i < words.size(); ++i) {
    auto& w = words[i];
    // Options come anywhere before a free-text rest; "--" ends them.
    bool rest = !spec->args.empty() && spec->args.back().kind == arg_kind::text
                && positional.size() >= spec->args.size() - 1;
    if (!rest && w == "--") {
      positional.insert(positional.end(), words.begin() + i + 1, words.end());
      break;
    }
    if (!rest && w.size() > 2 && w.compare(0, 2, "--") == 0) {
      auto eq = w.find('=');
      auto name = w.substr(0, eq);
      auto opt = std::find_if(spec->options.begin(), spec->options.end(),
                              [&](const option_spec& o) { return o.name == name; });
      if (opt == spec->options.end())
        return usage_failure(*spec, "unknown option " + name);
      if (opt->value_name.empty()) {
        if (eq != std::string::npos)
          return usage_failure(*spec, name + " takes no value");
        out.options[name] = "";
      } else if (eq != std::string::npos) {
        out.options[name] = w.substr(eq + 1);
      } else if (i + 1 < words.size()) {
        out.options[name] = words[++i];
      } else {
        return usage_failure(*spec, name + " needs a value " + opt->value_name);
      }
      continue;
    }
    positional.push_back(w);
  }
  // A free-text last argument takes the rest of the line.
  if (!spec->args.empty() && spec->args.back().kind == arg_kind::text
      && positional.size() > spec->args.size()) {
    std::string rest;
    for (size_t k = spec->args.size() - 1; k < positional.size(); ++k)
      rest += (rest.empty() ? "" : " ") + positional[k];
    positional.resize(spec->args.size() - 1);
    positional.push_back(rest);
  }
  size_t needed = 0;
  for (auto& arg : spec->args)
    needed += arg.optional ? 0 : 1;
  if (positional.size() < needed)
    return usage_failure(*spec, "missing " + spec->args[positional.size()].name);
  if (positional.size() > spec->args.size())
    return usage_failure(*spec, "too many arguments ('" + positional.back()
                                  + "')");
  for (size_t k = 0; k < positional.size(); ++k) {
    auto problem = check_arg(spec->args[k], positional[k]);
    if (!problem.empty())
      return usage_failure(*spec, problem);
  }
  out.args = std::move(positional);
  return out;
}

outcome<parsed_command> parse_line(const std::string& line) {
  auto words = split_words(line);
  if (!words)
    return words.error();
  return parse_words(*words);
}

outcome<int64_t> parse_since(const std::string& text, int64_t now_ms) {
  auto bad = failure{errc::invalid_argument,
                     "--since takes Unix milliseconds or an age like 90s, "
                     "30m, 24h or 7d, not '" + text + "'"};
  if (digits_only(text)) {
    if (text.size() > 15)
      return bad;
    return static_cast<int64_t>(std::stoll(text));
  }
  if (text.size() < 2 || !digits_only(text.substr(0, text.size() - 1))
      || text.size() > 10)
    return bad;
  int64_t n = std::stoll(text.substr(0, text.size() - 1));
  int64_t unit = 0;
  switch (text.back()) {
    case 's': unit = 1000; break;
    case 'm': unit = 60 * 1000; break;
    case 'h': unit = 3600 * 1000; break;
    case 'd': unit = int64_t{24} * 3600 * 1000; break;
    default: return bad;
  }
  return std::max<int64_t>(0, now_ms - n * unit);
}

std::optional<int32_t> parse_segment(const std::string& text) {
  if (!digits_only(text) || text.size() > 3)
    return std::nullopt;
  auto v = std::stoi(text);
  if (v < 0 || v >= segment_count)
    return std::nullopt;
  return static_cast<int32_t>(v);
}

std::optional<int64_t> parse_envelope_id(const std::string& text) {
  // Up to int64's 19 digits (stoll throws beyond it).
  if (!digits_only(text) || text.size() > 19
      || (text.size() == 19 && text > "9223372036854775807"))
    return std::nullopt;
  auto v = std::stoll(text);
  if (v <= 0)
    return std::nullopt;
  return v;
}

std::string help_text() {
  size_t width = 0;
  for (auto& spec : command_specs())
    width = std::max(width, usage_of(spec).size());
  std::string out = "commands:\n";
  for (auto& spec : command_specs()) {
    auto usage = usage_of(spec);
    out += "  " + usage + std::string(width - usage.size() + 2, ' ')
           + spec.summary + "\n";
  }
  out += "help COMMAND explains one; actions are written to the node's "
         "audit log.\n";
  return out;
}

std::string command_help(const std::string& name) {
  auto* spec = find_command(name);
  if (spec == nullptr)
    return {};
  std::string out = "usage: " + usage_of(*spec) + "\n" + spec->summary + "\n\n"
                    + spec->help + "\n";
  if (!spec->options.empty()) {
    out += "\noptions:\n";
    for (auto& opt : spec->options)
      out += "  " + opt.name
             + (opt.value_name.empty() ? "" : " " + opt.value_name) + "  "
             + opt.help + "\n";
  }
  if (spec->action)
    out += "\nAn action: written to the node's audit log (who, when, what, "
           "from where, result).\n";
  return out;
}

std::vector<std::string> complete(const std::string& line,
                                  const completion_context& known) {
  // The words before the cursor; the last one is being typed (empty after
  // a blank).
  auto words = split_words(line);
  if (!words)
    return {};
  auto ws = *words;
  if (line.empty() || line.back() == ' ' || line.back() == '\t')
    ws.push_back("");
  std::vector<std::string> pool;
  if (ws.size() == 1) {
    for (auto& spec : command_specs())
      pool.push_back(spec.name);
  } else {
    auto* spec = find_command(ws[0]);
    if (spec == nullptr)
      return {};
    auto& word = ws.back();
    if (word.compare(0, 1, "-") == 0) {
      for (auto& opt : spec->options)
        pool.push_back(opt.name);
    } else {
      // The positional place of the word, skipping options and their values.
      size_t place = 0;
      for (size_t i = 1; i + 1 < ws.size(); ++i) {
        if (ws[i].compare(0, 2, "--") == 0) {
          auto opt = std::find_if(spec->options.begin(), spec->options.end(),
                                  [&](const option_spec& o) {
                                    return o.name == ws[i];
                                  });
          if (opt != spec->options.end() && !opt->value_name.empty())
            ++i;
          continue;
        }
        ++place;
      }
      if (place < spec->args.size()) {
        switch (spec->args[place].kind) {
          case arg_kind::node: pool = known.nodes; break;
          case arg_kind::set: pool = known.sets; break;
          case arg_kind::command:
            for (auto& s : command_specs())
              pool.push_back(s.name);
            break;
          default: break;
        }
      }
      if (pool.empty() && word.empty())
        for (auto& opt : spec->options)
          pool.push_back(opt.name);
    }
  }
  auto& prefix = ws.back();
  std::vector<std::string> out;
  for (auto& cand : pool)
    if (cand.compare(0, prefix.size(), prefix) == 0)
      out.push_back(cand);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

} // namespace hb::admin
