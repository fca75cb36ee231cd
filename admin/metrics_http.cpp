#include "admin/metrics_http.hpp"

#include <map>

#include "caf/all.hpp"
#include "caf/io/all.hpp"

#include "admin/prometheus.hpp"
#include "runtime/log.hpp"

namespace hb {

namespace {

constexpr size_t head_max = 8192;

struct http_state {
  std::map<caf::io::connection_handle, std::string> heads;
  static inline const char* name = "hb.metrics_http";
};

using http_broker = caf::io::stateful_broker<http_state>;

void respond(http_broker* self, caf::io::connection_handle hdl,
             const std::string& status, const std::string& type,
             const std::string& body) {
  std::string out = "HTTP/1.1 " + status + "\r\nContent-Type: " + type
                    + "\r\nContent-Length: " + std::to_string(body.size())
                    + "\r\nConnection: close\r\n\r\n" + body;
  self->write(hdl, out.size(), out.data());
  self->flush(hdl);
  self->close(hdl);
  self->state.heads.erase(hdl);
}

void serve(http_broker* self, caf::io::connection_handle hdl,
           const std::string& head, std::shared_ptr<metrics_http_settings> cfg) {
  auto line_end = head.find("\r\n");
  auto line = head.substr(0, line_end);
  auto sp1 = line.find(' ');
  auto sp2 = line.find(' ', sp1 == std::string::npos ? 0 : sp1 + 1);
  if (sp1 == std::string::npos || sp2 == std::string::npos) {
    respond(self, hdl, "400 Bad Request", "text/plain", "bad request line\n");
    return;
  }
  auto method = line.substr(0, sp1);
  auto path = line.substr(sp1 + 1, sp2 - sp1 - 1);
  auto query = path.find('?');
  if (query != std::string::npos)
    path.resize(query);
  if (path != "/metrics") {
    respond(self, hdl, "404 Not Found", "text/plain", "only /metrics here\n");
    return;
  }
  if (method != "GET" && method != "HEAD") {
    respond(self, hdl, "405 Method Not Allowed", "text/plain", "GET only\n");
    return;
  }
  self->request(cfg->router, std::chrono::milliseconds(cfg->timeout_ms),
                stats_atom::value)
    .then(
      [=](node_stats& st) {
        auto body = admin::prometheus_text(*cfg->metrics, st, cfg->zone);
        respond(self, hdl, "200 OK", "text/plain; version=0.0.4; charset=utf-8",
                method == "HEAD" ? std::string{} : body);
      },
      [=](caf::error& err) {
        respond(self, hdl, "503 Service Unavailable", "text/plain",
                "the node's stats did not come: " + self->system().render(err)
                  + "\n");
      });
}

caf::behavior http_impl(http_broker* self, caf::io::doorman_ptr door,
                        std::shared_ptr<metrics_http_settings> cfg) {
  self->add_doorman(std::move(door));
  return {
    [=](const caf::io::new_connection_msg& msg) {
      self->state.heads[msg.handle];
      self->configure_read(msg.handle, caf::io::receive_policy::at_most(4096));
    },
    [=](const caf::io::new_data_msg& msg) {
      auto i = self->state.heads.find(msg.handle);
      if (i == self->state.heads.end())
        return;  // answered already; the rest is ignored
      i->second.append(msg.buf.begin(), msg.buf.end());
      if (i->second.find("\r\n\r\n") != std::string::npos) {
        auto head = std::move(i->second);
        // One request per connection: further bytes are not read.
        self->state.heads.erase(i);
        self->configure_read(msg.handle, caf::io::receive_policy::at_most(1));
        serve(self, msg.handle, head, cfg);
      } else if (i->second.size() > head_max) {
        respond(self, msg.handle, "431 Request Header Fields Too Large",
                "text/plain", "request head over 8 KiB\n");
      }
    },
    [=](const caf::io::connection_closed_msg& msg) {
      self->state.heads.erase(msg.handle);
    },
    [=](const caf::io::acceptor_closed_msg&) { self->quit(); },
    [=](stop_atom) {
      self->close_all();
      self->quit();
    },
  };
}

} // namespace

caf::expected<metrics_http_handle>
spawn_metrics_http(caf::actor_system& sys, const metrics_http_settings& cfg) {
  auto& mm = sys.middleman();
  auto door = mm.backend().new_tcp_doorman(cfg.port, cfg.host.c_str(), true);
  if (!door)
    return std::move(door.error());
  metrics_http_handle out;
  out.port = (*door)->port();
  auto shared = std::make_shared<metrics_http_settings>(cfg);
  out.broker = mm.spawn_broker(http_impl, std::move(*door), shared);
  named_logger("admin").info("metrics_listening host={} port={}", cfg.host,
                             out.port);
  return out;
}

} // namespace hb
