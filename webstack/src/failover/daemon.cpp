#include "failover/daemon.hpp"

#include <signal.h>

#include <csignal>

namespace webstack::failover {

std::atomic<int> g_stop{0};
static_assert(std::atomic<int>::is_always_lock_free);

namespace {
void on_signal(int) {
  g_stop = 1;
}
}  // namespace

void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
}

}  // namespace webstack::failover
