// Waiting on a condition with a deadline, for tests: no fixed sleeps.
#pragma once

#include <chrono>
#include <thread>

namespace webstack::it {

// Re-checks `pred()` until it holds or `timeout` passes; the last check is made after the
// deadline, so a condition that holds just then still counts. `pred` does the real work
// (an HTTP request, a query), which paces the loop; `interval` spaces the checks when
// each is too cheap to pace itself (a connect per check would otherwise open thousands
// of connections a second and run out of ephemeral ports under a slow sanitizer build).
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout,
                std::chrono::milliseconds interval = std::chrono::milliseconds(0)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    if (interval.count() > 0) std::this_thread::sleep_for(interval);  // poll interval
  }
  return pred();
}

}  // namespace webstack::it
