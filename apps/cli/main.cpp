// hongbao: the command-line client of a hongbao node (its commands are
// client/commands.hpp). Parses the command line and runs one command.

#include <cstdlib>
#include <string>

#include <CLI/CLI.hpp>

#include "client/commands.hpp"
#include "domain/envelope_id.hpp"

namespace {

using namespace hb;
using namespace hb::client::cli;

std::string env_or(const char* name, const std::string& fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : fallback;
}

/// Whether --json appears before a lone "--": a usage error must honour it
/// even though parsing failed.
bool wants_json(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--")
      return false;
    if (arg == "--json")
      return true;
  }
  return false;
}

} // namespace

int main(int argc, char** argv) {
  global_options opts;
  opts.server = env_or("HONGBAO_SERVER", opts.server);
  opts.token = env_or("HONGBAO_TOKEN", opts.token);

  CLI::App app{"hongbao — command-line client of a hongbao (红包) node.\n"
               "Exit status: 0 ok, 1 service error (or reconcile found "
               "discrepancies), 2 usage error, 3 connection error.",
               "hongbao"};
  // Global options may also follow the subcommand: `hongbao show ID --json`.
  app.fallthrough();
  app.require_subcommand(1);
  app.add_option("--server", opts.server,
                 "node address HOST:PORT (env HONGBAO_SERVER)")
    ->capture_default_str();
  app.add_option("--token", opts.token,
                 "auth token from the node's config (env HONGBAO_TOKEN)");
  app.add_flag("--json", opts.json,
               "print exactly one JSON object on stdout");
  auto* timeout_opt
    = app.add_option("--timeout-ms", opts.timeout_ms,
                     "connect and response timeout, also sent to the node as "
                     "the request's deadline (reconcile: response timeout "
                     "300000 unless given)")
        ->capture_default_str()
        ->check(CLI::Range(1, 3600 * 1000));

  create_request create;
  std::string kind_text = "random";
  auto* create_cmd = app.add_subcommand("create", "wrap (包) a new envelope");
  create_cmd->add_option("--sender", create.sender, "sending user")
    ->required();
  create_cmd->add_option("--group", create.group, "group chat")->required();
  create_cmd->add_option("--total-fen", create.total_fen,
                         "total amount in fen (100 fen = 1 yuan)")
    ->required();
  create_cmd->add_option("--count", create.count, "number of shares")
    ->required();
  create_cmd->add_option("--kind", kind_text,
                         "random (拼手气) or equal (普通)")
    ->capture_default_str()
    ->check(CLI::IsMember({"random", "equal"}));
  create_cmd->add_option("--greeting", create.greeting, "greeting text");
  create_cmd->add_option("--idempotency-key", create.idempotency_key,
                         "repeat a create safely (default: a new random key, "
                         "printed)");

  pay_request pay;
  auto* pay_cmd = app.add_subcommand(
    "pay", "confirm the sender's payment (as the payment system does)");
  pay_cmd->add_option("ID", pay.envelope_id, "envelope id")->required();
  pay_cmd->add_option("--payment-txn", pay.payment_txn,
                      "payment transaction id (idempotency key of the payment)")
    ->required();
  pay_cmd->add_flag("--from-wallet", pay.from_wallet,
                    "pay from the sender's wallet (零钱) instead of the "
                    "external payment system");

  grab_request grab;
  auto* grab_cmd = app.add_subcommand("grab", "check (抢) whether a user may open");
  grab_cmd->add_option("ID", grab.envelope_id, "envelope id")->required();
  grab_cmd->add_option("--user", grab.user, "grabbing user")->required();

  open_request open;
  auto* open_cmd = app.add_subcommand("open", "open (拆) a share");
  open_cmd->add_option("ID", open.envelope_id, "envelope id")->required();
  open_cmd->add_option("--user", open.user, "opening user")->required();

  get_request get;
  auto* show_cmd = app.add_subcommand(
    "show", "show an envelope, its shares and 手气最佳 best luck");
  show_cmd->add_option("ID", get.envelope_id, "envelope id")->required();

  history_query history;
  bool history_sent = false;
  bool history_received = false;
  auto* history_cmd = app.add_subcommand(
    "history", "a user's sent or received envelopes, newest first");
  history_cmd->add_option("--user", history.user, "whose history")
    ->required();
  auto* sent_flag = history_cmd->add_flag(
    "--sent", history_sent, "envelopes the user wrapped and paid");
  auto* received_flag = history_cmd->add_flag(
    "--received", history_received,
    "shares the user opened and was credited (the default)");
  sent_flag->excludes(received_flag);
  history_cmd->add_option("--limit", history.limit, "items per page")
    ->capture_default_str()
    ->check(CLI::Range(1, 100));
  history_cmd->add_option("--cursor", history.cursor,
                          "the next page: the cursor printed after 'more:'");

  balance_request balance;
  auto* balance_cmd
    = app.add_subcommand("balance", "a user's wallet (零钱) balance");
  balance_cmd->add_option("--user", balance.user, "whose wallet")->required();

  std::string since_text;
  auto* reconcile_cmd = app.add_subcommand(
    "reconcile",
    "reconcile (对账) envelopes, shares, refunds and wallets against the "
    "ledger; exit status 1 when there are discrepancies");
  reconcile_cmd->add_option(
    "--since", since_text,
    "envelopes created since: Unix ms, 2026-11-26, 2026-11-26T10:00:00Z, "
    "or an age like 30m, 24h, 7d (default: all)");

  auto* stats_cmd = app.add_subcommand(
    "stats", "operators: the node's metrics and blocked segments");

  segment_request segment;
  auto* segment_cmd = app.add_subcommand(
    "segment",
    "operators: block or unblock an id segment (the last three digits of an "
    "envelope id)");
  segment_cmd->require_subcommand(1);
  auto* block_cmd = segment_cmd->add_subcommand(
    "block",
    "block segment N: requests for its envelopes fail fast, creates go to "
    "other segments, until a manual unblock");
  block_cmd->add_option("N", segment.segment, "segment, 0..999")
    ->required()
    ->check(CLI::Range(0, segment_count - 1));
  block_cmd->add_option("--reason", segment.reason,
                        "why (shown by `hongbao stats`)");
  auto* unblock_cmd = segment_cmd->add_subcommand(
    "unblock", "lift the block of segment N, manual or automatic");
  unblock_cmd->add_option("N", segment.segment, "segment, 0..999")
    ->required()
    ->check(CLI::Range(0, segment_count - 1));
  unblock_cmd->add_option("--reason", segment.reason,
                          "why (goes to the node's log)");

  control_request control;
  int drain_wait_s = 0;
  auto* drain_cmd = app.add_subcommand(
    "drain",
    "operators (cluster): NODE hands every segment to the next nodes in "
    "their zone order and takes none, until undrain or its restart");
  drain_cmd->add_option("NODE", control.node, "the node's name")->required();
  drain_cmd->add_option("--wait", drain_wait_s,
                        "follow until it owns no segment, at most this many "
                        "seconds (0: do not wait)")
    ->check(CLI::Range(0, 3600));
  auto* undrain_cmd = app.add_subcommand(
    "undrain",
    "operators (cluster): NODE serves again; its preferred segments come "
    "back after the rebalance settling time");
  undrain_cmd->add_option("NODE", control.node, "the node's name")->required();
  auto* rebalance_cmd = app.add_subcommand(
    "rebalance",
    "operators (cluster): move segments to their preferred live nodes now, "
    "without the settling wait");
  rebalance_cmd->add_flag("--dry-run", control.dry_run,
                          "only list the moves placement wants");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help is a ParseError with exit code 0.
    if (e.get_exit_code() == 0)
      return app.exit(e);
    if (wants_json(argc, argv))
      usage_error(e.what());
    app.exit(e);
    return exit_usage;
  }
  opts.timeout_given = timeout_opt->count() > 0;

  if (create_cmd->parsed())
    return cmd_create(opts, std::move(create), kind_text);
  if (pay_cmd->parsed())
    return cmd_pay(opts, std::move(pay));
  if (grab_cmd->parsed())
    return cmd_grab(opts, std::move(grab));
  if (open_cmd->parsed())
    return cmd_open(opts, std::move(open));
  if (history_cmd->parsed()) {
    history.kind = history_sent ? history_kind::sent : history_kind::received;
    return cmd_history(opts, std::move(history));
  }
  if (balance_cmd->parsed())
    return cmd_balance(opts, std::move(balance));
  if (reconcile_cmd->parsed())
    return cmd_reconcile(opts, since_text);
  if (stats_cmd->parsed())
    return cmd_stats(opts);
  if (drain_cmd->parsed() || undrain_cmd->parsed()
      || rebalance_cmd->parsed()) {
    control.action = drain_cmd->parsed()     ? control_action::drain
                     : undrain_cmd->parsed() ? control_action::undrain
                                             : control_action::rebalance;
    return cmd_cluster(opts, std::move(control), drain_wait_s * 1000);
  }
  if (segment_cmd->parsed()) {
    segment.block = block_cmd->parsed();
    return cmd_segment(opts, std::move(segment));
  }
  return cmd_show(opts, get);
}
