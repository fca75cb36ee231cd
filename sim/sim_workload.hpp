#pragma once

// The clients: random users create, pay, grab, open, query and refund
// envelopes through the router, like the gateway does, with a request
// timeout, duplicates and retries. Every answer is checked against the
// simulated database the moment it arrives ("you got X" must be durable).

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "caf/fwd.hpp"

#include "runtime/messages.hpp"
#include "sim/sim_node.hpp"
#include "sim/sim_world.hpp"

namespace hb::sim {

using sim_go_atom = caf::atom_constant<caf::atom("sim_go")>;

enum class op_kind : uint8_t {
  create, pay, grab, open, get, refund, balance, history, reconcile,
};

const char* to_string(op_kind x);

/// An envelope the workload means to create.
struct planned_envelope {
  std::string sender;
  std::string key;
  std::string group;
  int64_t total_fen = 0;
  int32_t count = 0;
  envelope_kind kind = envelope_kind::random;
  std::string txn;  ///< the payment system's txn for it
  int64_t id = 0;   ///< known once a create was answered
  bool requested = false;
};

/// One client operation, retried until it has a final answer.
struct sim_op {
  uint64_t id = 0;
  op_kind kind = op_kind::get;
  int env = -1;  ///< index into the planned envelopes
  int64_t envelope_id = 0;
  std::string user;
  std::string txn;
  bool from_wallet = false;
  history_kind history = history_kind::received;
  bool final = false;
  uint32_t attempts = 0;
  uint32_t inflight = 0;
  int64_t created_sim_ms = 0;
  std::string last;  ///< the last answer, for messages
};

class workload {
public:
  workload(world& w, sim_node& node);

  /// Plans the envelopes and funds the users' wallets (directly in the
  /// database, as the payment system would).
  void setup();

  /// Chooses a new operation from what the clients know now; returns its id.
  uint64_t new_op();

  /// Creates the next planned envelope.
  uint64_t new_create_op();

  /// An open of the hot envelope by a random user (a storm of grabbers).
  uint64_t new_storm_op();

  /// Adds the final reconciliation request; returns its id.
  uint64_t new_reconcile_op();

  /// Sends the operation's request from a client actor.
  void issue(caf::event_based_actor* self, uint64_t op);

  /// Faults stopped: every operation without a final answer is asked again
  /// (retries continue until each has one).
  void heal(const std::vector<caf::actor>& clients);

  bool all_final() const;
  const sim_op* first_open_op() const;
  const sim_op& op(uint64_t id) const { return ops_[id]; }

  /// Checks every answer "you got X" again against the database.
  void recheck_promises();

  /// Users told 手慢了 (exhausted) on an open of an envelope whose shares
  /// later went back to the sender unopened: the shares were reserved by a
  /// write in flight that then failed. Counted, and a violation at the end
  /// (a wrong answer is caught already when it arrives, check_exhausted).
  uint64_t false_exhausted();

  /// Counters for the summary.
  uint64_t answers_ok = 0;
  uint64_t answers_error = 0;
  uint64_t opens_ok = 0;
  uint64_t pending_answers = 0;  ///< SHARES_PENDING answers (retried)

private:
  void send(caf::event_based_actor* self, sim_op& op);
  void on_error(caf::event_based_actor* self, uint64_t id,
                const caf::error& err);
  void finish(sim_op& op, std::string answer);
  int pick_envelope(bool want_paid);
  void pick_hot(sim_op& op);
  void force_hot(sim_op& op);
  std::string pick_user();

  // Checks of the answers (a violation is recorded in the world).
  void check_create(sim_op& op, const envelope& e);
  void check_pay(sim_op& op, const envelope& e);
  void check_open(sim_op& op, const open_result& r);
  void check_grab(sim_op& op, const grab_result& r);
  void check_exhausted(sim_op& op, const char* how);
  void check_get(sim_op& op, const envelope_detail& d);
  void check_refund(sim_op& op, int64_t amount);
  void check_error(sim_op& op, errc code, const std::string& message);

  world& w_;
  sim_node& node_;
  std::vector<std::string> users_;
  std::vector<planned_envelope> envs_;
  std::vector<sim_op> ops_;
  /// Users answered "exhausted" on an open, per envelope.
  std::map<int64_t, std::set<std::string>> exhausted_answers_;
  /// Every answered open: (envelope, user) -> (amount, seq).
  std::map<std::pair<int64_t, std::string>, std::pair<int64_t, int32_t>> got_;
};

/// A client actor: sends the requests of the operations it is told to.
caf::actor spawn_client(caf::actor_system& sys, workload& load);

/// The client request timeout (the gateway's default).
constexpr int64_t client_timeout_ms = 10000;

} // namespace hb::sim
