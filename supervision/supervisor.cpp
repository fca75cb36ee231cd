#include "supervision/supervisor.hpp"

#include <deque>
#include <map>
#include <set>

#include "caf/all.hpp"

#include <spdlog/spdlog.h>

#include "runtime/errors.hpp"
#include "runtime/log.hpp"

namespace hb {

namespace {

struct running_child {
  child_spec spec;
  caf::actor handle;
};

struct supervisor_state {
  supervisor_settings cfg;
  std::vector<running_child> children;  // in start order
  std::deque<caf::actor_clock::time_point> restarts;
  uint64_t restarts_total = 0;
  bool stopping = false;
  static inline const char* name = "hb.supervisor";
};

using supervisor_pointer = supervisor_actor::stateful_pointer<supervisor_state>;

void stop_child(supervisor_pointer self, running_child& c) {
  if (!c.handle)
    return;
  self->demonitor(c.handle);
  if (c.spec.stop)
    c.spec.stop(c.handle);
  else
    self->send_exit(c.handle, caf::exit_reason::user_shutdown);
  c.handle = nullptr;
}

// The child at `index` and every child that depends on it, transitively
// (children only depend on children started before them).
std::vector<size_t> with_dependents(const supervisor_state& st, size_t index) {
  std::set<std::string> affected{st.children[index].spec.name};
  std::vector<size_t> out{index};
  for (size_t i = index + 1; i < st.children.size(); ++i)
    for (auto& dep : st.children[i].spec.depends_on)
      if (affected.count(dep) > 0) {
        affected.insert(st.children[i].spec.name);
        out.push_back(i);
        break;
      }
  return out;
}

// Beyond the restart intensity: stop everything and fail.
void escalate(supervisor_pointer self, const std::string& child,
              const caf::error& reason) {
  auto& st = self->state;
  actors_log().critical("supervisor_escalation child={} restarts={} "
                        "window_ms={} reason={}",
                        child, st.restarts.size(), st.cfg.window_ms,
                        to_failure(reason).message);
  st.stopping = true;
  for (auto i = st.children.rbegin(); i != st.children.rend(); ++i)
    stop_child(self, *i);
  self->quit(make_error(errc::internal,
                        "child " + child + " failed more than "
                          + std::to_string(st.cfg.restarts_max)
                          + " times within "
                          + std::to_string(st.cfg.window_ms) + " ms"));
}

void on_down(supervisor_pointer self, caf::down_msg& msg) {
  auto& st = self->state;
  if (st.stopping)
    return;
  size_t index = st.children.size();
  for (size_t i = 0; i < st.children.size(); ++i)
    if (st.children[i].handle && st.children[i].handle.address() == msg.source)
      index = i;
  if (index == st.children.size())
    return;
  auto name = st.children[index].spec.name;
  st.children[index].handle = nullptr;
  auto now = self->clock().now();
  st.restarts.push_back(now);
  auto window = std::chrono::milliseconds{st.cfg.window_ms};
  while (!st.restarts.empty() && now - st.restarts.front() > window)
    st.restarts.pop_front();
  if (st.restarts.size() > st.cfg.restarts_max) {
    escalate(self, name, msg.reason);
    return;
  }
  ++st.restarts_total;
  auto affected = with_dependents(st, index);
  actors_log().warn("supervisor_restart child={} reason={} restarts_in_window={} "
                    "restarting={}",
                    name, to_failure(msg.reason).message, st.restarts.size(),
                    affected.size());
  // Stop the dependents (they hold the dead handle), then start all of them
  // again in their original order.
  for (auto i = affected.rbegin(); i != affected.rend(); ++i)
    stop_child(self, st.children[*i]);
  for (auto i : affected) {
    auto& c = st.children[i];
    auto handle = c.spec.start();
    if (!handle) {
      escalate(self, c.spec.name, handle.error());
      return;
    }
    c.handle = std::move(*handle);
    self->monitor(c.handle);
  }
}

supervisor_actor::behavior_type supervisor_impl(supervisor_pointer self,
                                                std::vector<running_child> kids,
                                                supervisor_settings cfg) {
  auto& st = self->state;
  st.cfg = cfg;
  st.children = std::move(kids);
  for (auto& c : st.children)
    self->monitor(c.handle);
  self->set_down_handler([=](caf::down_msg& msg) { on_down(self, msg); });
  return {
    [=](stop_atom) {
      auto& st = self->state;
      st.stopping = true;
      actors_log().info("supervisor_stopping children={}", st.children.size());
      for (auto i = st.children.rbegin(); i != st.children.rend(); ++i)
        stop_child(self, *i);
      self->quit();
    },
    [=](stats_atom) { return self->state.restarts_total; },
    [=](get_atom, const std::string& name) -> caf::result<caf::actor> {
      for (auto& c : self->state.children)
        if (c.spec.name == name && c.handle)
          return c.handle;
      return make_error(errc::not_found, "no running child named " + name);
    },
  };
}

} // namespace

caf::expected<supervisor_actor>
spawn_supervisor(caf::actor_system& sys, std::vector<child_spec> children,
                 const supervisor_settings& cfg) {
  std::vector<running_child> started;
  for (auto& spec : children) {
    auto handle = spec.start();
    if (!handle) {
      // Undo what started, in reverse order.
      for (auto i = started.rbegin(); i != started.rend(); ++i)
        if (i->spec.stop)
          i->spec.stop(i->handle);
        else
          caf::anon_send_exit(i->handle, caf::exit_reason::user_shutdown);
      return std::move(handle.error());
    }
    actors_log().debug("supervisor_started child={}", spec.name);
    started.push_back(running_child{std::move(spec), std::move(*handle)});
  }
  return sys.spawn(supervisor_impl, std::move(started), cfg);
}

} // namespace hb
