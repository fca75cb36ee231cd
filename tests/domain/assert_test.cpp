#define CAF_SUITE domain.assert

#include "caf/test/unit_test.hpp"

#include <csignal>
#include <string>
#include <sys/wait.h>
#include <unistd.h>

#include "domain/assert.hpp"

using namespace hb;

namespace {

// Runs `fn` in a child process with stderr into a pipe; returns what the
// child wrote and whether it died of SIGABRT.
template <class F>
std::pair<std::string, bool> run_child(F fn) {
  int fds[2];
  if (pipe(fds) != 0)
    return {"pipe failed", false};
  auto pid = fork();
  if (pid == 0) {
    dup2(fds[1], STDERR_FILENO);
    close(fds[0]);
    fn();
    _exit(0);
  }
  close(fds[1]);
  std::string out;
  char buf[512];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof(buf))) > 0)
    out.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  return {out, WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT};
}

} // namespace

CAF_TEST(the message fills each field with the next argument) {
  using detail::format_message;
  CAF_CHECK_EQUAL(format_message("plain"), "plain");
  CAF_CHECK_EQUAL(format_message("envelope {}: {} fen", 42, -7),
                  "envelope 42: -7 fen");
  CAF_CHECK_EQUAL(format_message("{}{}", "a", std::string{"b"}), "ab");
  // Extra arguments are appended; a field without an argument stays.
  CAF_CHECK_EQUAL(format_message("x", 1), "x 1");
  CAF_CHECK_EQUAL(format_message("{} and {}", 1), "1 and {}");
}

CAF_TEST(a holding assertion does nothing and renders nothing) {
  int rendered = 0;
  auto count = [&] {
    ++rendered;
    return 1;
  };
  HB_ASSERT(1 + 1 == 2, "never rendered {}", count());
  CAF_CHECK_EQUAL(rendered, 0);
}

CAF_TEST(a broken assertion prints where and why and aborts) {
  auto [out, aborted] = run_child([] {
    int64_t sum = 99;
    HB_ASSERT(sum == 100, "sum {} != total {}", sum, 100);
  });
  CAF_CHECK(aborted);
  CAF_CHECK_NOT_EQUAL(out.find("assert_test.cpp:"), std::string::npos);
  CAF_CHECK_NOT_EQUAL(out.find("sum == 100"), std::string::npos);
  CAF_CHECK_NOT_EQUAL(out.find("sum 99 != total 100"), std::string::npos);
}
