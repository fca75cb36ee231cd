#define CAF_SUITE load.cpu_use

#include "caf/test/unit_test.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <ctime>

#include "load/cpu_use.hpp"

using namespace hb;
using namespace hb::bench;

namespace {

// A child that burns `burn` of its own CPU time (not wall time: on a busy
// machine it may get only a share of a core), then writes one byte to
// `ready_fd` and sleeps until killed.
pid_t spawn_burner(std::chrono::milliseconds burn, int ready_fd) {
  pid_t pid = fork();
  if (pid == 0) {
    auto cpu_ms = [] {
      timespec ts{};
      clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
      return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    };
    volatile uint64_t x = 0;
    while (cpu_ms() < burn.count())
      x = x + 1;
    char done = 1;
    if (write(ready_fd, &done, 1) != 1)
      _exit(1);
    pause();
    _exit(0);
  }
  return pid;
}

// Waits up to `timeout` for the burner's byte; false on a time-out.
bool wait_ready(int fd, std::chrono::milliseconds timeout) {
  pollfd p{fd, POLLIN, 0};
  char done = 0;
  return poll(&p, 1, static_cast<int>(timeout.count())) == 1
         && read(fd, &done, 1) == 1;
}

void stop(pid_t pid) {
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
}

} // namespace

CAF_TEST(a process counts what it used between the samples and a process gone since counts nothing) {
  process_times before{{{10, 1}, 2.0}, {{11, 1}, 5.0}, {{12, 7}, 1.0}};
  // 10 ran on (+0.5 s); 11 ended (its 5 s are not subtracted); 12's pid was
  // reused by a process started later (all of its 0.25 s count); 13 is new.
  process_times after{{{10, 1}, 2.5}, {{12, 9}, 0.25}, {{13, 3}, 0.5}};
  CAF_CHECK_EQUAL(spent_between(before, after), 1.25);
  CAF_CHECK_EQUAL(spent_between(after, after), 0.0);
  CAF_CHECK_EQUAL(spent_between(before, {}), 0.0);
}

CAF_TEST(the tree of a process holds its children with their CPU) {
  int fds[2];
  CAF_REQUIRE_EQUAL(pipe(fds), 0);
  auto child = spawn_burner(std::chrono::milliseconds(300), fds[1]);
  CAF_REQUIRE(child > 0);
  auto ready = wait_ready(fds[0], std::chrono::seconds(60));
  close(fds[0]);
  close(fds[1]);
  if (!ready)
    stop(child);
  CAF_REQUIRE(ready);
  auto tree = tree_cpu(getpid());
  double child_s = -1;
  bool self_seen = false;
  for (auto& [proc, cpu_s] : tree) {
    if (proc.first == child)
      child_s = cpu_s;
    if (proc.first == getpid())
      self_seen = true;
  }
  auto own = tree_cpu(child);
  stop(child);
  CAF_CHECK(self_seen);
  // The child burnt 300 ms of CPU before it said so; /proc counts in ticks.
  CAF_CHECK_GREATER_OR_EQUAL(child_s, 0.28);
  CAF_CHECK_EQUAL(own.size(), 1u);
}

CAF_TEST(a watched process is LABEL=PID of a running process) {
  auto self = parse_watched("me=" + std::to_string(getpid()));
  CAF_REQUIRE(self.ok());
  CAF_CHECK_EQUAL(self->label, "me");
  CAF_CHECK_EQUAL(self->pid, getpid());
  for (auto bad : {"me", "=12", "me=", "me=12a", "me=-3", "me=1234567890123"}) {
    auto w = parse_watched(bad);
    CAF_CHECK(!w.ok());
    CAF_CHECK(w.error().code == errc::invalid_argument);
    CAF_CHECK(w.error().message.find("LABEL=PID") != std::string::npos);
  }
  auto gone = parse_watched("x=999999999");
  CAF_CHECK(!gone.ok());
  CAF_CHECK(gone.error().message.find("no process 999999999") != std::string::npos);
}
