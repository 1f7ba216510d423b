// Child processes, temp directories and ports for the integration tests.
//
// Used by MariaDbPair and AppProcess; usable directly by tests too:
//
//   auto r = webstack::it::run_command({"mariadb", "--version"});   // PATH is searched
//   EXPECT_EQ(r.exit_code, 0) << r.err;
//
//   pid_t pid = webstack::it::spawn_daemon({.argv = {"/usr/sbin/nginx", ...},
//                                           .output_path = dir + "/nginx.log"});
//   webstack::it::terminate_process(pid, 10s);   // SIGTERM, wait, SIGKILL after 10 s
//
// Long-lived children (spawn_daemon) are forked from one helper thread that lives as long as
// the test binary and get prctl(PR_SET_PDEATHSIG, SIGKILL): if the test binary dies in any
// way (crash, abort, SIGKILL from a ctest timeout), the kernel kills them. They also run in
// their own process group, so a Ctrl-C on the terminal reaches only the test binary, whose
// normal exit path then stops them in order.
//
// Temp directories are /tmp/webstack-it-<pid>-<tag>-XXXXXX; sweep_stale_temp_dirs() removes
// those left behind by test binaries that no longer run (e.g. killed by SIGKILL).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/process.hpp"

namespace webstack::it {

using namespace std::chrono_literals;

// exit_code (128 + signal number if killed by a signal), out, err.
using CommandResult = webstack::ProcessResult;
using webstack::random_token;  // [A-Za-z0-9] characters, e.g. for passwords

// Runs argv[0] (searched in PATH unless it contains '/') to completion with `input` on its
// stdin and returns its exit code and output (common/process.hpp's run). Throws
// std::runtime_error if it cannot be found or started, or if it does not finish within
// `timeout` (it is then SIGKILLed).
CommandResult run_command(const std::vector<std::string>& argv, std::string_view input = {},
                          std::chrono::milliseconds timeout = 120s,
                          const std::vector<std::pair<std::string, std::string>>& env = {});

struct SpawnOptions {
  std::vector<std::string> argv{};                         // argv[0]: searched in PATH
  std::vector<std::pair<std::string, std::string>> env{};  // added to / replacing environ
  std::string output_path{};  // stdout and stderr appended here; empty: /dev/null
};

// Starts a long-lived child (see the top of this file). Throws std::runtime_error if the
// executable cannot be executed. The caller owns the pid: reap it with wait_for_exit or
// terminate_process.
pid_t spawn_daemon(const SpawnOptions& options);

// Waits up to `timeout` for `pid` to exit; returns its raw wait status, or nullopt if it
// still runs. timeout 0 polls.
std::optional<int> wait_for_exit(pid_t pid, std::chrono::milliseconds timeout);

// SIGTERM, wait up to `grace`, then SIGKILL and wait. Returns the raw wait status.
int terminate_process(pid_t pid, std::chrono::milliseconds grace);

// "exit code 3", "killed by signal 9 (Killed)".
std::string describe_wait_status(int status);

// The process is stopped (state T in /proc/<pid>/stat): SIGSTOP takes effect
// asynchronously, so a test waits for this before it counts on the stop.
bool is_stopped(pid_t pid);

// SIGSTOP to `pid` and a wait (5 s at most) until it is stopped; SIGCONT when resumed or
// destroyed, so that a failed test leaves nothing stopped. Throws std::runtime_error when
// the process does not stop.
class Paused {
 public:
  explicit Paused(pid_t pid);
  ~Paused() { resume(); }
  Paused(const Paused&) = delete;
  Paused& operator=(const Paused&) = delete;
  void resume();

 private:
  pid_t pid_;
  bool paused_ = true;
};

// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, then close).
std::uint16_t free_tcp_port();

// mkdtemp("/tmp/webstack-it-<pid>-<tag>-XXXXXX"); returns the path.
std::string make_temp_dir(std::string_view tag);

// rm -rf; never throws.
void remove_tree(const std::string& path) noexcept;

// Removes /tmp/webstack-it-<pid>-* whose <pid> no longer exists.
void sweep_stale_temp_dirs() noexcept;

std::string read_file(const std::string& path);
void write_file(const std::string& path, std::string_view content);

// The last `max_bytes` of a file ("" if it cannot be read), for diagnostics.
std::string tail_file(const std::string& path, std::size_t max_bytes = 4096);

// Full path of an executable: `name` itself if it contains '/', else searched in PATH.
// Throws std::runtime_error if not found.
std::string find_executable(const std::string& name);

}  // namespace webstack::it
