#include "admin/admin_messages.hpp"

namespace hb {

void add_admin_types(caf::actor_system_config& cfg) {
  add_hongbao_types(cfg);
  cfg.add_message_types<caf::id_block::hongbao_admin>();
}

admin_reply admin_failure(std::string node, std::string command,
                          std::string error, std::string message) {
  admin_reply out;
  out.node = std::move(node);
  out.command = std::move(command);
  out.error = std::move(error);
  out.message = std::move(message);
  return out;
}

} // namespace hb
