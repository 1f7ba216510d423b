// What the failover manager and agent share as long-running processes: the stop flag set
// by SIGTERM/SIGINT, and one-line logging to stdout (s6-log or journald add the time).
#pragma once

#include <fmt/format.h>

#include <atomic>
#include <cstdio>
#include <string>

namespace webstack::failover {

// Set by SIGTERM/SIGINT; read by every thread (lock-free: safe in a handler).
extern std::atomic<int> g_stop;

// SIGTERM/SIGINT set g_stop (without SA_RESTART: poll() and sleeps return early);
// SIGPIPE ignored.
void install_signal_handlers();

template <typename... Args>
void say(fmt::format_string<Args...> f, Args&&... args) {
  std::fputs((fmt::format(f, std::forward<Args>(args)...) + "\n").c_str(), stdout);
  std::fflush(stdout);
}

}  // namespace webstack::failover
