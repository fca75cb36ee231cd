#include "sim/sim_runner.hpp"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <set>

#include "caf/all.hpp"

#include <spdlog/spdlog.h>

#include "runtime/messages.hpp"
#include "sim/sim_checker.hpp"
#include "sim/sim_node.hpp"
#include "sim/sim_store.hpp"
#include "sim/sim_workload.hpp"

// Debugging aid: with HB_SIM_WATCH_ACTOR=<id>, this is called with the
// actor's control block when the driver first runs it -- break here in gdb
// and watch its strong_refs to see who takes and drops references.
extern "C" __attribute__((noinline)) void sim_watch_hook(void* p) {
  asm volatile("" : : "r"(p) : "memory");
}

namespace hb::sim {

namespace {

using timespan = caf::timespan;

// The final reconciliation must be answered within this (the reconciler's
// own store timeout is 10 minutes).
constexpr int64_t final_bound_ms = 11 * 60 * 1000;

struct sim_config : caf::actor_system_config {
  sim_config() {
    add_hongbao_types(*this);
    // CAF's deterministic scheduler: nothing runs unless the driver says so.
    set("scheduler.policy", caf::atom("testing"));
    set("logger.file-verbosity", caf::atom("quiet"));
    set("logger.console", caf::atom("none"));
  }
};

// Node ids (host hash and process id) differ between processes; the trace
// must not. Actor ids are deterministic and stay.
std::string scrub_node_ids(std::string text) {
  size_t pos = 0;
  while ((pos = text.find('#', pos)) != std::string::npos) {
    size_t begin = pos;
    while (begin > 0 && std::isxdigit(static_cast<unsigned char>(text[begin - 1])))
      --begin;
    size_t end = pos + 1;
    while (end < text.size() && std::isdigit(static_cast<unsigned char>(text[end])))
      ++end;
    if (pos - begin >= 16 && end > pos + 1) {
      text.replace(begin, end - begin, "node");
      pos = begin + 4;
    } else {
      ++pos;
    }
  }
  return text;
}

// Remembers which envelope actor sent an open batch or a payment, for the
// ownership oracle of the store (it may reach the store through the commit
// or the pay batcher).
// One resume may consume more than the first message (CAF drops timeouts
// of answered requests without counting them), so the whole mailbox of the
// commit batcher is looked at.
void note_batch_origin(world& w, caf::scheduled_actor* a) {
  bool commits = std::strcmp(a->name(), "hb.commit_batcher") == 0;
  bool pays = std::strcmp(a->name(), "hb.pay_batcher") == 0;
  if ((!commits && !pays) || a->mailbox().peek() == nullptr)
    return;
  a->mailbox().queue().peek_all([&](const caf::mailbox_element& elem) {
    if (!elem.sender)
      return;
    auto& content = elem.content();
    bool batch = commits && content.match_elements<db_commit_atom, open_batch>();
    bool pay = pays && content.match_elements<db_pay_atom, payment>();
    if (!batch && !pay)
      return;
    auto sender = w.actors.find(elem.sender->id());
    if (sender == w.actors.end() || sender->second.name != "hb.envelope")
      return;
    auto key = batch ? batch_key(content.get_as<open_batch>(1))
                     : payment_key(content.get_as<payment>(1));
    w.batch_origin[key] = elem.sender->id();
  });
}

// Remembers which envelope actor holds each epoch of an envelope, for the
// same oracle: an activation through the activation batcher reaches the
// store from the batcher (alone or with others), so the owner of the epoch
// it bumped is the envelope actor its snapshot is delivered to.
void note_snapshot_owner(world& w, caf::scheduled_actor* a) {
  if (std::strcmp(a->name(), "hb.envelope") != 0
      || a->mailbox().peek() == nullptr)
    return;
  a->mailbox().queue().peek_all([&](const caf::mailbox_element& elem) {
    auto& content = elem.content();
    if (!content.match_elements<envelope_snapshot>())
      return;
    auto& snap = content.get_as<envelope_snapshot>(0);
    w.db.claim(snap.env.id, snap.env.epoch, a->id());
  });
}

std::string render(caf::scheduled_actor* a) {
  std::string line = std::to_string(a->id());
  line += ' ';
  line += a->name();
  auto elem = a->mailbox().peek();
  if (elem == nullptr)
    return line + " <start>";
  line += " <- ";
  line += elem->sender ? std::to_string(elem->sender->id()) : std::string("-");
  // The types of the elements (builtin type numbers or mangled names),
  // then their values.
  auto& content = elem->content();
  line += " <";
  for (size_t i = 0; i < content.size(); ++i) {
    auto type = content.type(i);
    if (i > 0)
      line += ',';
    line += type.second != nullptr ? type.second->name()
                                   : std::to_string(type.first);
  }
  line += "> ";
  line += content.stringify();
  return scrub_node_ids(std::move(line));
}

int poisson(world& w, double mean) {
  if (mean <= 0)
    return 0;
  auto limit = std::exp(-mean);
  int k = 0;
  double p = 1.0;
  do {
    ++k;
    p *= w.uniform();
  } while (p > limit && k < 100);
  return k - 1;
}

class driver {
public:
  explicit driver(const sim_options& opt) {
    spdlog::set_level(spdlog::level::from_str(opt.log_level));
    sys_ = std::make_unique<caf::actor_system>(cfg_);
    sys_->await_actors_before_shutdown(false);
    sched_ = &dynamic_cast<caf::scheduler::test_coordinator&>(sys_->scheduler());
    w_ = std::make_unique<world>(opt, *sched_);
  }

  ~driver() {
    teardown();
  }

  sim_result run();

private:
  // -- set-up ----------------------------------------------------------------------
  void set_up();
  void plan_faults();
  void at(int64_t sim_ms, const char* name, std::function<void()> f) {
    events_.emplace(sim_ms, event{name, std::move(f)});
  }
  void mark_sim(const caf::strong_actor_ptr& ptr, const char* name);
  void restart_node_in(int64_t delay_ms);
  void check_escalation();
  void check_orphans();
  void note_requests(caf::scheduled_actor* a);
  void check_unanswered();

  // -- the loop ----------------------------------------------------------------------
  void step();
  bool advance();
  void on_idle();
  void run_due_events();

  // -- phases --------------------------------------------------------------------------
  void start_heal();
  void start_quiesce();
  void start_final();
  bool drained(std::string* why) const;
  void teardown();

  struct event {
    const char* name;
    std::function<void()> run;
  };

  sim_config cfg_;
  std::unique_ptr<caf::actor_system> sys_;
  caf::scheduler::test_coordinator* sched_ = nullptr;
  std::unique_ptr<world> w_;
  sim_store_actor store_;
  sim_store_actor background_;
  std::unique_ptr<sim_node> node_;
  std::unique_ptr<workload> load_;
  std::unique_ptr<checker> check_;
  std::vector<caf::actor> clients_;
  std::set<uint64_t> sim_ids_;
  std::map<uint64_t, uint64_t> spawned_by_;  // envelope actor -> registry
  // Requests delivered to envelope actors and not answered yet:
  // (requester, request number) -> (envelope actor, what was asked).
  std::map<std::pair<uint64_t, uint64_t>, std::pair<uint64_t, std::string>>
    unanswered_;
  // Writes envelope actors sent to the commit batcher and not answered yet:
  // (envelope actor, request number). Such a request has no CAF timeout, so
  // the clock does not show that the envelope waits for it.
  std::set<std::pair<uint64_t, uint64_t>> commits_open_;
  std::set<uint64_t> waiting_actors();
  std::multimap<int64_t, event> events_;
  uint64_t db_version_seen_ = 0;
  enum class phase { load, heal, quiesce, final, done } phase_ = phase::load;
  int64_t heal_deadline_ = 0;
  int64_t quiesce_at_ = 0;
  int64_t quiesce_deadline_ = 0;
  uint64_t reconcile_op_ = 0;
  int64_t final_deadline_ = 0;
  int restarts_pending_ = 0;
  int escalations_ = 0;
  bool torn_down_ = false;
};

void driver::mark_sim(const caf::strong_actor_ptr& ptr, const char* name) {
  sim_ids_.insert(ptr->id());
  w_->actors[ptr->id()]
    = seen_actor{caf::actor_cast<caf::weak_actor_ptr>(ptr), name, true};
}

void driver::restart_node_in(int64_t delay_ms) {
  ++restarts_pending_;
  at(w_->sim_ms() + delay_ms, "node_restart", [this] {
    --restarts_pending_;
    if (!node_->up())
      node_->start();
  });
}

// A supervisor beyond its restart intensity stops the node; whoever runs
// the node (systemd) starts it again.
void driver::check_escalation() {
  if (restarts_pending_ > 0 || !node_->escalated())
    return;
  w_->note("the node supervisor escalated in generation "
           + std::to_string(node_->generation()) + " at t="
           + std::to_string(w_->sim_ms() / 1000) + "s; restarted");
  ++escalations_;
  node_->crash();  // whatever is left of it
  restart_node_in(w_->between(1000, 5000));
}

// How many references the clock's timers hold to each actor: a delayed
// message refers to its receiver and, through its content, its sender; a
// timeout to its actor. Each lasts until the timer fires.
std::map<uint64_t, size_t>
timer_refs(caf::scheduler::test_coordinator& sched,
           std::set<uint64_t>* waiting = nullptr) {
  using clk = caf::detail::simple_actor_clock;
  std::map<uint64_t, size_t> out;
  auto add = [&](const caf::strong_actor_ptr& who) {
    if (who)
      ++out[who->id()];
  };
  for (auto& kv : sched.clock().schedule()) {
    auto* ev = kv.second.get();
    switch (ev->subtype) {
      case clk::ordinary_timeout_type:
        add(static_cast<clk::ordinary_timeout*>(ev)->self);
        break;
      case clk::multi_timeout_type:
        add(static_cast<clk::multi_timeout*>(ev)->self);
        break;
      case clk::request_timeout_type: {
        auto& self = static_cast<clk::request_timeout*>(ev)->self;
        add(self);
        if (waiting != nullptr && self)
          waiting->insert(self->id());
        break;
      }
      case clk::actor_msg_type: {
        auto* msg = static_cast<clk::actor_msg*>(ev);
        add(msg->receiver);
        if (msg->content)
          add(msg->content->sender);
        break;
      }
      default:
        break;
    }
  }
  return out;
}

// After quiescence every envelope actor still running and waiting for
// nothing must be accounted for: one reference from its registry (if that
// is alive), the clock's timers, and store calls not yet answered. Any
// other reference is held by
// something that should have let go -- above all a response promise kept in
// the actor's own state (a request it will never answer) -- and an actor
// whose registry is gone with nothing left to reclaim it is an orphan that
// leaks. Both are violations.
// Actors with a request of their own open: one with a timeout in the
// clock, or a write at the commit batcher.
std::set<uint64_t> driver::waiting_actors() {
  std::set<uint64_t> waiting;
  timer_refs(*sched_, &waiting);
  for (auto& c : commits_open_)
    waiting.insert(c.first);
  return waiting;
}

void driver::check_orphans() {
  auto waiting = waiting_actors();
  auto timers = timer_refs(*sched_);
  for (auto& kv : spawned_by_) {
    if (w_->failed())
      return;
    auto ptr = w_->alive(kv.first);
    if (!ptr)
      continue;
    bool registry_alive = w_->alive(kv.second) != nullptr;
    size_t accounted = 1  // `ptr` itself
                       + (registry_alive ? 1 : 0)
                       + (timers.count(kv.first) > 0 ? timers[kv.first] : 0)
                       + w_->store_holds.count(kv.first);
    size_t strong = ptr->strong_refs.load();
    // An actor still waiting for an answer of its own may hold the promises
    // of requests it will answer then; one that waits for nothing may not.
    if (strong > accounted && waiting.count(kv.first) == 0)
      w_->violate("envelope actor " + std::to_string(kv.first) + " (registry "
                  + std::to_string(kv.second)
                  + (registry_alive ? " alive" : " gone") + ") holds "
                  + std::to_string(strong - accounted)
                  + " references nothing accounts for (of "
                  + std::to_string(strong - 1) + ": registry "
                  + std::to_string(registry_alive ? 1 : 0) + ", timers "
                  + std::to_string(timers.count(kv.first) > 0 ? timers[kv.first]
                                                           : 0)
                  + ", store calls "
                  + std::to_string(w_->store_holds.count(kv.first))
                  + "): a request it will never answer, kept in its state?");
    else if (!registry_alive && timers.count(kv.first) == 0
             && w_->store_holds.count(kv.first) == 0)
      w_->violate("envelope actor " + std::to_string(kv.first)
                  + " outlived its registry (actor "
                  + std::to_string(kv.second)
                  + ") with no timer left: an orphan nobody can reach, "
                    "passivate or reclaim");
  }
}

// Notes every request that reaches an envelope actor (directly or
// delegated by the router and registry: the requester stays the sender)
// and every response that reaches a requester. The whole mailbox is looked
// at, because one resume may consume more than its first message.
void driver::note_requests(caf::scheduled_actor* a) {
  if (a->mailbox().peek() == nullptr)
    return;
  bool envelope = std::strcmp(a->name(), "hb.envelope") == 0;
  bool batcher = std::strcmp(a->name(), "hb.commit_batcher") == 0;
  auto receiver = a->id();
  a->mailbox().queue().peek_all([&](const caf::mailbox_element& elem) {
    auto number = elem.mid.request_id().integer_value();
    if (elem.mid.is_response()) {
      unanswered_.erase({receiver, number});
      commits_open_.erase({receiver, number});
      return;
    }
    if (batcher && elem.mid.is_request() && elem.sender
        && w_->actors.count(elem.sender->id()) > 0
        && spawned_by_.count(elem.sender->id()) > 0)
      commits_open_.insert({elem.sender->id(), number});
    if (!envelope || !elem.mid.is_request() || !elem.sender)
      return;
    auto key = std::make_pair(elem.sender->id(), number);
    if (unanswered_.count(key) == 0)
      unanswered_.emplace(key, std::make_pair(receiver,
                                              elem.content().stringify()));
  });
}

// Every request an envelope actor took must be answered -- with a value or
// an error -- unless the actor was killed (then its requester's timeout
// tells it) or is still waiting for an answer of its own. A request dropped silently (a promise the actor never kept,
// lost when it stopped) leaves its requester waiting for its full timeout.
void driver::check_unanswered() {
  auto waiting = waiting_actors();
  for (auto& kv : unanswered_) {
    if (w_->failed())
      return;
    auto requester = kv.first.first;
    auto envelope = kv.second.first;
    if (w_->killed.count(envelope) > 0 || !w_->alive(requester))
      continue;
    // Still waiting for a store call of its own: it will answer after it.
    if (w_->alive(envelope) && waiting.count(envelope) > 0)
      continue;
    auto who = w_->actors.count(requester) > 0 ? w_->actors[requester].name
                                                 : std::string("?");
    w_->violate("envelope actor " + std::to_string(envelope)
                + (w_->alive(envelope) ? " (still running)" : " (stopped)")
                + " never answered request " + kv.second.second + " of "
                + who + " " + std::to_string(requester)
                + " although nobody killed it");
  }
}

void driver::set_up() {
  auto& w = *w_;
  // CAF's own actors, if any, are part of the simulation, not the node.
  sched_->run();
  // The database, behind two stores as in the node: the hot path's, which
  // reports to segment health, and the background one.
  store_ = spawn_sim_store(*sys_, w, true);
  background_ = spawn_sim_store(*sys_, w, false);
  mark_sim(caf::actor_cast<caf::strong_actor_ptr>(store_), "sim.store");
  mark_sim(caf::actor_cast<caf::strong_actor_ptr>(background_), "sim.store");
  node_ = std::make_unique<sim_node>(*sys_, w,
                                     caf::actor_cast<store_actor>(store_),
                                     caf::actor_cast<store_actor>(background_));
  load_ = std::make_unique<workload>(w, *node_);
  check_ = std::make_unique<checker>(w);
  for (int i = 0; i < 3; ++i) {
    clients_.push_back(spawn_client(*sys_, *load_));
    mark_sim(caf::actor_cast<caf::strong_actor_ptr>(clients_.back()),
             "sim.client");
  }
  // Store errors: each segment (and the calls that touch none) fails at its
  // own rate, zero for about half of them.
  for (auto s : node_segments())
    w.segment_error_rate[s] = w.coin(0.5) ? 0.0 : w.uniform() * 0.15;
  w.segment_error_rate[-1] = w.coin(0.5) ? 0.0 : w.uniform() * 0.1;
  for (auto& kv : w.segment_error_rate)
    kv.second *= w.opt.fault_rate;
  load_->setup();
  node_->start();
  // The requests of the load phase arrive at random times.
  auto ops = std::max<int64_t>(1, static_cast<int64_t>(w.opt.ops * w.opt.scale));
  auto load_ms = static_cast<int64_t>(w.opt.load_ms * std::max(1.0, w.opt.scale));
  std::vector<int64_t> arrivals;
  for (int64_t i = 0; i < ops; ++i)
    arrivals.push_back(w.between(0, load_ms - 1));
  std::sort(arrivals.begin(), arrivals.end());
  // A third of the requests come in bursts (a group chat reacting at once).
  for (size_t i = 1; i < arrivals.size(); ++i)
    if (w.coin(0.35))
      arrivals[i] = std::min(load_ms - 1, arrivals[i - 1] + w.between(0, 2));
  std::sort(arrivals.begin(), arrivals.end());
  for (auto t : arrivals)
    at(t, "request", [this] {
      auto id = load_->new_op();
      auto& client = clients_[id % clients_.size()];
      caf::anon_send(client, sim_go_atom::value, id);
    });
  // The envelopes are wrapped over the first two thirds of the load.
  auto envelopes = std::max<int64_t>(1, static_cast<int64_t>(
                                          w.opt.envelopes * w.opt.scale));
  for (int64_t i = 0; i < envelopes; ++i)
    at(i == 0 ? 0 : w.between(0, load_ms * 2 / 3), "create", [this] {
      auto id = load_->new_create_op();
      caf::anon_send(clients_[id % clients_.size()], sim_go_atom::value, id);
    });
  // Now and then a storm: many users open the hot envelope at once, so that
  // opens queue behind a write in flight and go out in group commits.
  for (int n = poisson(w, 4.0 * std::max(1.0, w.opt.scale)); n > 0; --n) {
    auto size = w.between(5, 20);
    at(w.between(0, load_ms - 1), "storm", [this, size] {
      for (int64_t i = 0; i < size; ++i) {
        auto id = load_->new_storm_op();
        auto& client = clients_[id % clients_.size()];
        caf::anon_send(client, sim_go_atom::value, id);
      }
    });
  }
  plan_faults();
  at(load_ms, "heal", [this] { start_heal(); });
  heal_deadline_ = load_ms + w.opt.heal_bound_ms;
}

void driver::plan_faults() {
  auto& w = *w_;
  auto load_ms = static_cast<int64_t>(w.opt.load_ms * std::max(1.0, w.opt.scale));
  auto when = [&] { return w.between(0, load_ms - 1); };
  auto times = [&](fault f) {
    return w.active[static_cast<size_t>(f)]
             ? poisson(w, w.prob[static_cast<size_t>(f)])
             : 0;
  };
  for (int n = times(fault::store_outage); n > 0; --n) {
    auto length = w.between(1000, 30000);
    at(when(), "outage", [this, length] {
      if (!w_->can(fault::store_outage))
        return;
      w_->count(fault::store_outage);
      w_->outage_until_sim_ms
        = std::max(w_->outage_until_sim_ms, w_->sim_ms() + length);
    });
  }
  // A segment's storage breaks for a while (most of its calls fail), so
  // that segment health blocks it and probes bring it back.
  if (w.active[static_cast<size_t>(fault::store_error)])
    for (int n = poisson(w, 0.6); n > 0; --n) {
      auto& segments = node_segments();
      auto segment = segments[static_cast<size_t>(
        w.between(0, static_cast<int64_t>(segments.size()) - 1))];
      auto start = when();
      auto length = w.between(3000, 20000);
      at(start, "segment_breaks", [this, segment] {
        w_->segment_broken[segment] += 1;
      });
      at(start + length, "segment_repaired", [this, segment] {
        w_->segment_broken[segment] -= 1;
      });
    }
  for (int n = times(fault::envelope_crash); n > 0; --n)
    at(when(), "envelope_crash", [this] {
      if (w_->can(fault::envelope_crash) && node_->up()
          && node_->crash_envelope())
        w_->count(fault::envelope_crash);
    });
  // The node supervisor restarts a crashed relay (and what depends on it);
  // a burst of crashes goes beyond its restart intensity, and it gives up.
  for (int n = times(fault::relay_crash); n > 0; --n) {
    auto burst = w.coin(0.2) ? 7 : 1;
    auto start = when();
    for (int k = 0; k < burst; ++k)
      at(start + k * 700, "relay_crash", [this] {
        if (w_->can(fault::relay_crash) && node_->crash_relay())
          w_->count(fault::relay_crash);
      });
  }
  for (int n = times(fault::child_crash); n > 0; --n)
    at(when(), "child_crash", [this] {
      if (!w_->can(fault::child_crash))
        return;
      auto victim = node_->crash_child();
      if (!victim.empty()) {
        w_->count(fault::child_crash);
        w_->trace("driver killed " + victim);
      }
    });
  for (int n = times(fault::node_crash); n > 0; --n) {
    auto down = w.between(500, 10000);
    at(when(), "node_crash", [this, down] {
      if (!w_->can(fault::node_crash) || !node_->up())
        return;
      w_->count(fault::node_crash);
      node_->crash();
      restart_node_in(down);
    });
  }
  for (int n = times(fault::clock_jump); n > 0; --n) {
    auto jump = w.between(w.opt.expiry_ms, w.opt.expiry_ms * 2);
    at(when(), "clock_jump", [this, jump] {
      if (!w_->can(fault::clock_jump))
        return;
      w_->count(fault::clock_jump);
      w_->wall_offset_ms += jump;
    });
  }
}

sim_result driver::run() {
  set_up();
  auto& w = *w_;
  while (phase_ != phase::done && !w.failed()) {
    if (++w.steps > w.opt.max_steps) {
      w.violate("no end after " + std::to_string(w.opt.max_steps)
                + " steps (livelock?)");
      break;
    }
    // Mostly run a ready actor; now and then let a little time pass first,
    // so that timers also fire while messages are pending.
    if (sched_->has_job() && !w.coin(0.02)) {
      step();
      continue;
    }
    check_escalation();
    if (!sched_->has_job())
      on_idle();
    if (phase_ == phase::done || w.failed())
      break;
    if (!advance())
      break;
  }
  sim_result r;
  r.false_exhausted = load_->false_exhausted();
  r.pending_answers = load_->pending_answers;
  r.expired_refused = w.db.commits_refused_expired;
  r.seed = w.opt.seed;
  r.hash = w.hash;
  r.messages = w.messages;
  r.steps = w.steps;
  r.sim_ms = w.sim_ms();
  r.fired = w.fired;
  r.active = w.active;
  r.violation = w.violation;
  r.notes = w.notes;
  r.opens_ok = load_->opens_ok;
  r.envelopes = w.db.envelopes.size();
  for (auto& kv : w.db.opens)
    r.opens += kv.second.size();
  for (auto& e : w.db.ledger) {
    r.refunds += e.kind == "refund";
    r.credits += e.kind == "credit";
  }
  r.stale_refused = w.db.stale_refused;
  r.commits = w.db.commits;
  r.segment_blocks = w.db.segment_blocks;
  r.generations = node_->generation();
  r.escalations = escalations_;
  return r;
}

void driver::step() {
  auto& w = *w_;
  auto& jobs = sched_->jobs;
  size_t pick = 0;
  if (w.active[static_cast<size_t>(fault::reorder)] && jobs.size() > 1) {
    pick = static_cast<size_t>(
      w.between(0, static_cast<int64_t>(jobs.size()) - 1));
    if (pick != 0)
      w.count(fault::reorder);
  }
  auto job = jobs[pick];
  if (pick != 0)
    std::rotate(jobs.begin(), jobs.begin() + static_cast<long>(pick),
                jobs.begin() + static_cast<long>(pick) + 1);
  if (auto actor = dynamic_cast<caf::scheduled_actor*>(job)) {
    auto id = actor->id();
    if (w.actors.count(id) == 0) {
      if (auto watch = std::getenv("HB_SIM_WATCH_ACTOR");
          watch != nullptr && std::to_string(id) == watch)
        sim_watch_hook(actor->ctrl());
      w.actors.emplace(id, seen_actor{caf::actor_cast<caf::weak_actor_ptr>(
                                        actor->ctrl()),
                                      actor->name(), sim_ids_.count(id) > 0});
      // Only the registry spawns envelope actors: the current one did.
      if (std::strcmp(actor->name(), "hb.envelope") == 0)
        spawned_by_.emplace(id, node_->registry_id());
    }
    ++w.messages;
    w.trace(render(actor));
    note_batch_origin(w, actor);
    note_snapshot_owner(w, actor);
    note_requests(actor);
  }
  sched_->run_once();
  if (w.db_version != db_version_seen_) {
    db_version_seen_ = w.db_version;
    check_->cheap();
  }
}

bool driver::advance() {
  auto& w = *w_;
  auto& clock = sched_->clock();
  auto now = clock.current_time;
  auto target = caf::actor_clock::time_point::max();
  if (!clock.schedule().empty())
    target = clock.schedule().begin()->first;
  auto t0 = w.t0();
  if (!events_.empty())
    target = std::min(target, t0 + std::chrono::milliseconds(
                                     events_.begin()->first));
  if (sched_->has_job())
    target = std::min(target, now + std::chrono::milliseconds(w.between(1, 3)));
  if (target == caf::actor_clock::time_point::max()) {
    w.violate("deadlock: no message, timer or event left");
    return false;
  }
  sched_->advance_time(std::max(timespan{0}, target - now));
  run_due_events();
  return true;
}

void driver::run_due_events() {
  while (!events_.empty() && events_.begin()->first <= w_->sim_ms()) {
    auto ev = std::move(events_.begin()->second);
    events_.erase(events_.begin());
    w_->trace(std::string("driver ") + ev.name);
    ev.run();
  }
}

void driver::on_idle() {
  auto& w = *w_;
  switch (phase_) {
    case phase::load:
      break;
    case phase::heal:
      if (load_->all_final()) {
        start_quiesce();
      } else if (w.sim_ms() > heal_deadline_) {
        auto op = load_->first_open_op();
        w.violate("liveness: " + std::to_string(w.opt.heal_bound_ms / 1000)
                  + " s after the faults stopped, op #"
                  + std::to_string(op->id) + " (" + to_string(op->kind)
                  + ") has no final answer; last answer: "
                  + (op->last.empty() ? "none" : op->last));
      }
      break;
    case phase::quiesce: {
      if (w.sim_ms() < quiesce_at_)
        break;
      std::string why;
      if (drained(&why))
        start_final();
      else if (w.sim_ms() > quiesce_deadline_)
        w.violate("liveness: " + std::to_string(w.opt.quiesce_bound_ms / 1000)
                  + " s after the last expiry, " + why);
      break;
    }
    case phase::final:
      if (load_->op(reconcile_op_).final) {
        load_->recheck_promises();
        if (auto wrong = load_->false_exhausted(); wrong > 0)
          w.violate(std::to_string(wrong) + " users told 手慢了 whose share "
                    "went back to the sender unopened");
        check_->final_checks();
        check_unanswered();
        check_orphans();
        phase_ = phase::done;
      } else if (w.sim_ms() > final_deadline_) {
        w.violate("liveness: the final reconciliation got no answer ("
                  + load_->op(reconcile_op_).last + ")");
      }
      break;
    case phase::done:
      break;
  }
}

void driver::start_heal() {
  auto& w = *w_;
  phase_ = phase::heal;
  w.phase = "heal";
  w.faults_on = false;
  w.outage_until_sim_ms = -1;
  load_->heal(clients_);
}

void driver::start_quiesce() {
  auto& w = *w_;
  phase_ = phase::quiesce;
  w.phase = "quiesce";
  // Past every expiry: the latest possible one is a payment now.
  quiesce_at_ = w.sim_ms() + w.opt.expiry_ms + 2000;
  quiesce_deadline_ = quiesce_at_ + w.opt.quiesce_bound_ms;
  at(quiesce_at_, "expiries_passed", [] {});
}

bool driver::drained(std::string* why) const {
  auto& w = *w_;
  if (!node_->up()) {
    *why = "the node is not running";
    return false;
  }
  if (auto n = w.db.relay_backlog(); n > 0) {
    *why = std::to_string(n) + " items still wait for the relay (outbox rows"
           " and opens not credited yet)";
    return false;
  }
  auto now = w.now_ms();
  for (auto& kv : w.db.envelopes)
    if (kv.second.status == envelope_status::paid
        && kv.second.expires_at_ms > 0 && kv.second.expires_at_ms <= now) {
      *why = "envelope " + std::to_string(kv.first) + " expired "
             + std::to_string((now - kv.second.expires_at_ms) / 1000)
             + " s ago and is not refunded";
      return false;
    }
  return true;
}

void driver::start_final() {
  auto& w = *w_;
  phase_ = phase::final;
  w.phase = "final";
  reconcile_op_ = load_->new_reconcile_op();
  // A reconciliation whose store reply got lost holds the reconciler for
  // its timeout (10 minutes); requests queue behind it.
  final_deadline_ = w.sim_ms() + final_bound_ms;
  caf::anon_send(clients_.front(), sim_go_atom::value, reconcile_op_);
}

void driver::teardown() {
  if (torn_down_ || !sys_)
    return;
  torn_down_ = true;
  // Kill everything, let the exits run, and leave no actor behind that
  // refers to the world.
  for (auto& kv : w_->actors)
    if (auto ptr = w_->alive(kv.first))
      w_->kill(ptr);
  for (auto job : sched_->jobs)
    if (auto actor = dynamic_cast<caf::scheduled_actor*>(job))
      w_->kill(caf::actor_cast<caf::strong_actor_ptr>(actor->ctrl()));
  for (size_t i = 0; i < 1000000 && sched_->has_job(); ++i)
    sched_->run_once();
  clients_.clear();
  store_ = nullptr;
  background_ = nullptr;
  node_.reset();
  sys_.reset();
  load_.reset();
  check_.reset();
  w_.reset();
}

} // namespace

sim_result run_simulation(const sim_options& opt) {
  driver d{opt};
  return d.run();
}

} // namespace hb::sim
