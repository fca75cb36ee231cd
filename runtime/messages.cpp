#include "runtime/messages.hpp"

#include "runtime/errors.hpp"

namespace hb {

void add_hongbao_types(caf::actor_system_config& cfg) {
  cfg.add_message_types<caf::id_block::hongbao>();
  cfg.add_error_category(
    errc_category, [](uint8_t code, caf::atom_value, const caf::message& ctx) {
      std::string out = "hongbao: ";
      out += to_string(static_cast<errc>(code));
      if (ctx.match_elements<std::string>()) {
        out += " (";
        out += ctx.get_as<std::string>(0);
        out += ")";
      } else if (ctx.match_elements<std::string, std::string>()) {
        out += " (";
        out += ctx.get_as<std::string>(0);
        out += "; owner at ";
        out += ctx.get_as<std::string>(1);
        out += ")";
      }
      return out;
    });
}

} // namespace hb
