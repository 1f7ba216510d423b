// Waiting on a condition with a deadline, for tests: no fixed sleeps.
#pragma once

#include <chrono>

namespace webstack::it {

// Re-checks `pred()` until it holds or `timeout` passes; the last check is made after the
// deadline, so a condition that holds just then still counts. `pred` does the real work
// (an HTTP request, a query), which paces the loop.
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
  }
  return pred();
}

}  // namespace webstack::it
