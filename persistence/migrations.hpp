#pragma once

#include <vector>

namespace hb::persistence {

/// One versioned schema change. Versions are applied in ascending order,
/// each in its own transaction, and recorded in schema_migrations. A
/// migration that has shipped is never edited: changes go into a new one.
struct migration {
  int version;
  const char* name;
  const char* sql;  ///< One or more statements; trusted text, no parameters.
};

/// Every migration this build knows, sorted by strictly ascending version.
const std::vector<migration>& all_migrations();

} // namespace hb::persistence
