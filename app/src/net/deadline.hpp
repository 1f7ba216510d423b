// A connection's deadline that is cheap to move. Setting or clearing it is a store; the one
// steady_timer behind it is re-armed only when the new deadline is sooner than the armed
// one, or when it fires before the current deadline (then it re-arms for the rest).
// Re-arming a timer per operation costs timer-queue work and timerfd syscalls on every
// request; with this, a busy keep-alive connection re-arms about once per timeout period.
//
// Single-threaded: use it from the executor it was made with.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <memory>
#include <utility>

namespace webstack::net {

template <class OnExpire>
class Deadline {
 public:
  using Clock = std::chrono::steady_clock;

  Deadline(const boost::asio::any_io_executor& ex, OnExpire on_expire)
      : timer_(ex), on_expire_(std::move(on_expire)) {}
  ~Deadline() { alive_.reset(); }
  Deadline(const Deadline&) = delete;
  Deadline& operator=(const Deadline&) = delete;

  void expire_at(Clock::time_point t) {
    deadline_ = t;
    fired_ = false;
    if (t < armed_) arm(t);
  }
  void expire_after(Clock::duration d) { expire_at(Clock::now() + d); }
  // No deadline until the next expire_*(): a pending timer firing later does nothing.
  void clear() {
    deadline_ = Clock::time_point::max();
    fired_ = false;
  }
  // The deadline passed (and on_expire ran) since it was last set.
  bool fired() const { return fired_; }
  // Stops the timer for good (on close), so that nothing keeps the io_context busy.
  void cancel() {
    clear();
    armed_ = Clock::time_point::max();
    timer_.cancel();
  }

 private:
  void arm(Clock::time_point t) {
    armed_ = t;
    timer_.expires_at(t);  // cancels a pending wait, whose handler then sees aborted
    timer_.async_wait([this, alive = std::weak_ptr<bool>(alive_)](boost::system::error_code ec) {
      if (alive.expired() || ec) return;
      armed_ = Clock::time_point::max();
      if (deadline_ == Clock::time_point::max()) return;
      if (Clock::now() >= deadline_) {
        fired_ = true;
        deadline_ = Clock::time_point::max();
        on_expire_();
      } else {
        arm(deadline_);
      }
    });
  }

  boost::asio::steady_timer timer_;
  OnExpire on_expire_;
  Clock::time_point deadline_ = Clock::time_point::max();
  Clock::time_point armed_ = Clock::time_point::max();  // max: no wait pending
  bool fired_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace webstack::net
