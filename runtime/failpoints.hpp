#pragma once

namespace hb {

/// Fault injection for real-process tests: a failpoint is active when its
/// name appears in the environment variable HONGBAO_FAILPOINTS (comma
/// separated), read once at start-up. Production never sets it.
///
/// Known failpoints:
/// - crash_after_commit: the process exits right after an open batch is
///   committed and before any reply is sent (proves that a lost reply never
///   loses money and that a retried open returns the same share).
bool failpoint(const char* name);

} // namespace hb
