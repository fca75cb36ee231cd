#pragma once

#include <string>

#include "caf/error.hpp"
#include "caf/make_message.hpp"

#include "domain/errc.hpp"

namespace hb {

/// The CAF error category of hongbao's operating errors.
constexpr caf::atom_value errc_category = caf::atom("hongbao");

caf::error make_error(errc x);
caf::error make_error(errc x, std::string message);
/// With a hint for the client (failure::hint), carried as a second string
/// in the error's context; an empty hint makes the error of the overload
/// above.
caf::error make_error(errc x, std::string message, std::string hint);
caf::error make_error(const failure& f);

/// Turns any CAF error (ours or CAF's own, e.g. a request timeout) into the
/// code, message and hint a client sees.
failure to_failure(const caf::error& err);

} // namespace hb
