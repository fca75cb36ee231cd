#pragma once

// The audit: after a load run, checks from the outside (the envelope and its
// shares as a store records them, and what the Open replies said) that every
// envelope's money is conserved and that every "you got X" a user was told
// is what the envelope records. Shared by hongbao-demo (which reads the
// records with GetEnvelope) and hongbao-bench (which reads them from the
// database of whatever it benchmarked).

#include <cstdint>
#include <string>
#include <vector>

#include "domain/requests.hpp"

namespace hb::load {

/// What one Open reply told a user ("you got X").
struct told_share {
  uint32_t user = 0;
  int64_t amount_fen = 0;
  int32_t seq = 0;
  bool first_time = true;
};

struct envelope_audit {
  /// Broken money invariants or replies that do not match the records.
  std::vector<std::string> problems;
  /// Shares that do not follow the split rule of the envelope's kind
  /// (double-mean for random, total / count for equal).
  std::vector<std::string> rule_problems;
  int64_t opened_fen = 0;  ///< Σ shares recorded by the envelope
  int64_t told_fen = 0;    ///< Σ amounts Open replies told (each user once)
  size_t told_users = 0;
  size_t unknown_users = 0;  ///< opens whose outcome stayed unknown

  bool conserved() const { return problems.empty(); }
  bool rules_ok() const { return rule_problems.empty(); }
};

/// Audits one envelope: shares ≥ 1 fen, nobody twice, at most `count`
/// shares, seqs 1..n, Σ shares + remaining = total, a status that matches
/// the remaining count, every Open reply matches a recorded share, and every
/// recorded share was told to its user (unless that user's open outcome
/// stayed unknown). `names` maps user indices to user names.
envelope_audit audit_envelope(const envelope_detail& detail,
                              const std::vector<told_share>& told,
                              const std::vector<uint32_t>& unknown,
                              const std::vector<std::string>& names);

} // namespace hb::load
