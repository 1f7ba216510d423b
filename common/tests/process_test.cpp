#include "common/process.hpp"

#include <gtest/gtest.h>

#include <signal.h>

#include <stdexcept>
#include <string>

namespace webstack {
namespace {

using namespace std::chrono_literals;

TEST(Run, CapturesOutputAndExitStatus) {
  const auto r = run({"sh", "-c", "echo out; echo err >&2; exit 3"});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.out, "out\n");
  EXPECT_EQ(r.err, "err\n");
  EXPECT_FALSE(r.timed_out);
}

TEST(Run, ArgumentsAreNeverInterpreted) {
  const auto r = run({"printf", "%s", "$(id) *; x"});
  EXPECT_EQ(r.out, "$(id) *; x");
}

TEST(Run, InputGoesToStdin) {
  const auto r =
      run({"cat"}, RunOptions{.timeout = 10s, .input = "line one\nline two\n", .env = {}});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, "line one\nline two\n");
}

TEST(Run, InputLargerThanAPipeWhileTheChildWrites) {
  // Both directions at once: a child that echoes 1 MiB back must not deadlock with us.
  const std::string big(1 << 20, 'x');
  const auto r = run({"cat"}, RunOptions{.timeout = 20s, .input = big, .env = {}});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out.size(), big.size());
}

TEST(Run, AChildThatReadsNoInputIsNoSigpipeForUs) {
  const std::string big(1 << 20, 'x');
  const auto r = run({"true"}, RunOptions{.timeout = 10s, .input = big, .env = {}});
  EXPECT_EQ(r.exit_code, 0);
}

TEST(Run, WithoutInputStdinIsEmpty) {
  const auto r = run({"wc", "-c"});
  EXPECT_EQ(r.out, "0\n");
}

TEST(Run, EnvironmentIsAddedOrReplaced) {
  const auto r =
      run({"sh", "-c", "printf '%s %s' \"$WEBSTACK_A\" \"$HOME\""},
          RunOptions{.timeout = 10s, .input = {}, .env = {{"WEBSTACK_A", "a b"}, {"HOME", "/h"}}});
  EXPECT_EQ(r.out, "a b /h");
}

// The value of a "SigIgn:"-style line of /proc/self/status, as the child saw it.
unsigned long long child_signal_set(const std::string& name) {
  const auto r = run({"grep", name + ":", "/proc/self/status"});
  return std::stoull(r.out.substr(r.out.find(':') + 1), nullptr, 16);
}

TEST(Run, TheChildStartsWithSigpipeDeadlyAndNoSignalBlocked) {
  const auto old_handler = ::signal(SIGPIPE, SIG_IGN);
  sigset_t block, old_mask;
  sigemptyset(&block);
  sigaddset(&block, SIGTERM);
  ::pthread_sigmask(SIG_BLOCK, &block, &old_mask);
  const auto ignored = child_signal_set("SigIgn");
  const auto blocked = child_signal_set("SigBlk");
  ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  ::signal(SIGPIPE, old_handler);
  EXPECT_EQ(ignored & (1ULL << (SIGPIPE - 1)), 0u);
  EXPECT_EQ(blocked, 0u);
}

TEST(Run, KilledAtTheDeadline) {
  const auto r = run({"sleep", "30"}, 200ms);
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(r.exit_code, 128 + 9);
  EXPECT_NE(r.err.find("timed out after 200 ms"), std::string::npos) << r.err;
}

TEST(Run, AMissingProgramExits127) {
  const auto r = run({"webstack-no-such-program"});
  EXPECT_EQ(r.exit_code, 127);
  EXPECT_NE(r.err.find("exec failed"), std::string::npos) << r.err;
}

TEST(RunChecked, AFailureNamesTheCommandItsStatusAndError) {
  try {
    run_checked({"sh", "-c", "echo nope >&2; exit 2"});
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "`sh -c echo nope >&2; exit 2` failed (exit 2): nope");
  }
}

}  // namespace
}  // namespace webstack
