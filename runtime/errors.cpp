#include "runtime/errors.hpp"

#include "caf/sec.hpp"

namespace hb {

caf::error make_error(errc x) {
  return caf::error{static_cast<uint8_t>(x), errc_category};
}

caf::error make_error(errc x, std::string message) {
  return caf::error{static_cast<uint8_t>(x), errc_category,
                    caf::make_message(std::move(message))};
}

caf::error make_error(errc x, std::string message, std::string hint) {
  if (hint.empty())
    return make_error(x, std::move(message));
  return caf::error{static_cast<uint8_t>(x), errc_category,
                    caf::make_message(std::move(message), std::move(hint))};
}

caf::error make_error(const failure& f) {
  return make_error(f.code, f.message, f.hint);
}

failure to_failure(const caf::error& err) {
  if (err.category() == errc_category) {
    failure f{static_cast<errc>(err.code()), {}};
    auto& ctx = err.context();
    if (ctx.match_elements<std::string>()) {
      f.message = ctx.get_as<std::string>(0);
    } else if (ctx.match_elements<std::string, std::string>()) {
      f.message = ctx.get_as<std::string>(0);
      f.hint = ctx.get_as<std::string>(1);
    } else {
      f.message = to_string(f.code);
    }
    return f;
  }
  if (err.category() == caf::atom("system")) {
    switch (static_cast<caf::sec>(err.code())) {
      case caf::sec::request_timeout:
        return {errc::unavailable,
                "timed out inside the node; the outcome is unknown, retry the "
                "same request (opens are idempotent)"};
      case caf::sec::request_receiver_down:
        return {errc::unavailable,
                "the envelope's actor restarted; retry the same request"};
      default:
        break;
    }
  }
  return {errc::internal, "internal error: " + caf::to_string(err)};
}

} // namespace hb
