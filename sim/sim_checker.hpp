#pragma once

// The invariants of ../shared/DESIGN.md, checked against the simulated
// database: cheaply after every change, fully once the run is quiet.
// Violations are recorded in the world (the first one ends the run).

#include "sim/sim_world.hpp"

namespace hb::sim {

class checker {
public:
  explicit checker(world& w) : w_(w) {
  }

  /// After every change of the database: per envelope, money conserved to
  /// the fen, at most one share per user, shares >= 1 fen, at most `count`
  /// shares, a consistent status; in the ledger, every account the sum of
  /// its entries, all accounts summing to 0, escrow per segment equal to
  /// what its envelopes hold, no wallet below 0, at most one pay, credit
  /// and refund entry per envelope (and user) with the right amounts; every
  /// open committed or transferred, transferred only with its credit; no
  /// outbox row but 'paid' ones (opens are their own outbox); no
  /// stale-epoch write accepted, no refund before expiry, no id reused.
  void cheap();

  /// After quiescence (faults off, expiries passed, relay drained): every
  /// open credited exactly once and marked transferred, every outbox row
  /// delivered, nothing left in the relay's backlog, every expired envelope
  /// refunded exactly once, every escrow account empty.
  void final_checks();

private:
  void check_envelope(const envelope& env);
  void check_ledger();

  world& w_;
};

} // namespace hb::sim
