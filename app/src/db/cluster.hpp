// The database as the application sees it: every configured MariaDB node, which one is
// writable, how far each replica lags, and per-node connection pools. One Cluster per
// I/O thread (shared-nothing): it is used only from its own io_context.
// Where each part is: the pools and the Lease in pool.cpp, the topology prober in
// prober.cpp, one connection in connection.cpp, the routing rules in routing.cpp; what a
// statement takes and gives back (and the errors) in statement.hpp.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/config.hpp"
#include "core/metrics.hpp"
#include "db/pool.hpp"     // Lease
#include "db/routing.hpp"  // NodeStatus
#include "db/statement.hpp"

namespace webstack::db {

class Cluster {
 public:
  // No I/O here: may be constructed on any thread. Destroy it before its io_context.
  Cluster(boost::asio::io_context& io, const DatabaseConfig& cfg, MetricsShard& metrics);
  ~Cluster();
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  // Starts the topology prober (first probe at once, then every probe_interval). Call it
  // before the io_context runs or from its thread.
  void start();
  // Stops the prober and closes idle connections; loans in progress finish.
  void stop();

  // A connection to the writable node. With none known (a promotion under way), or the
  // known one not accepting connections, waits for the prober to find one until
  // `deadline` (default: now + writer_wait). Throws Unavailable.
  boost::asio::awaitable<Lease> acquire_write();
  boost::asio::awaitable<Lease> acquire_write(std::chrono::steady_clock::time_point deadline);

  // Runs `body(Lease&)` (returning awaitable<void>) on a write connection. A statement
  // refused because the node turned read-only did not run: `body` runs again on the new
  // primary once the prober finds it, within writer_wait (so it must reset whatever it
  // fills). Throws Unavailable or QueryError.
  template <class Body>
  boost::asio::awaitable<void> write(Body body);
  // A connection for reading: a healthy replica within the lag bound, else the primary.
  // With `ryw_gtid` (read-your-writes), a replica is used only after
  // MASTER_GTID_WAIT(gtid, gtid_wait) succeeds on it; otherwise the primary. Throws
  // Unavailable.
  boost::asio::awaitable<Lease> acquire_read(std::string_view ryw_gtid = {});

  // Runs `body(Lease&)` (returning awaitable<void>) on a read connection; if the
  // connection is lost mid-way, retries once on a fresh one (reads are safe to repeat, so
  // `body` must reset whatever it fills). Throws Unavailable (ConnectionLost after two
  // losses) or QueryError.
  template <class Body>
  boost::asio::awaitable<void> read(Body body, std::string_view ryw_gtid = {});

  // The GTID of the last transaction committed on this lease's connection (@@last_gtid).
  static boost::asio::awaitable<std::string> last_gtid(Lease& lease);

  // Runs `body(Lease&)` like write(), and also runs it again after a failure that leaves
  // unknown whether it committed (connection lost, statement timed out), on whichever
  // node is writable then, until `deadline`. Only for a body that is safe to repeat: one
  // keyed by an idempotency key, whose committed first run makes a repeat find the key
  // instead of writing twice. `retried` is called before each repeat. Throws Unavailable
  // (the last failure, at the deadline) or QueryError.
  template <class Body, class OnRetry>
  boost::asio::awaitable<void> write_repeatable(Body body,
                                                std::chrono::steady_clock::time_point deadline,
                                                OnRetry retried);

  // Runs `task` every `period` on this cluster's io_context while it runs (the first time
  // one period after start()); stop() ends it, and a failure is logged, not fatal. For
  // housekeeping such as deleting expired idempotency keys. Call before start().
  void every(std::chrono::milliseconds period, std::string name,
             std::function<boost::asio::awaitable<void>()> task);

  const DatabaseConfig& config() const;

  std::vector<NodeStatus> status() const;
  bool any_reachable() const;

 private:
  struct Impl;
  // The lease's node refused a write as read-only: not the writer any more, re-probe.
  void demoted(const Lease& lease);
  std::chrono::steady_clock::time_point writer_deadline() const;
  // write() and write_repeatable(): a refused (read-only) write runs again until
  // `deadline`; with `repeat_unknown`, a write whose outcome is unknown does too.
  template <class Body, class OnRetry>
  boost::asio::awaitable<void> write_loop(Body body, std::chrono::steady_clock::time_point deadline,
                                          bool repeat_unknown, OnRetry retried);
  // Shared with the prober coroutines, which keep it alive until they have finished.
  std::shared_ptr<Impl> impl_;
};

template <class Body>
boost::asio::awaitable<void> Cluster::write(Body body) {
  co_await write_loop(std::move(body), writer_deadline(), false, [] {});
}

template <class Body, class OnRetry>
boost::asio::awaitable<void> Cluster::write_repeatable(
    Body body, std::chrono::steady_clock::time_point deadline, OnRetry retried) {
  co_await write_loop(std::move(body), deadline, true, std::move(retried));
}

template <class Body, class OnRetry>
boost::asio::awaitable<void> Cluster::write_loop(Body body,
                                                 std::chrono::steady_clock::time_point deadline,
                                                 bool repeat_unknown, OnRetry retried) {
  for (bool first = true;; first = false) {
    if (!first) retried();
    Lease lease = co_await acquire_write(deadline);
    try {
      co_await body(lease);
      co_return;
    } catch (const RefusedReadOnly&) {
      // Refused before it ran: safe to run again on the new primary, keyed or not.
      if (std::chrono::steady_clock::now() >= deadline) throw;
      demoted(lease);
    } catch (const Unavailable&) {
      // Lost, timed out or cancelled: the lease's connection is broken and goes with it.
      // Whether the attempt committed is unknown; only a body whose key resolves that
      // (repeat_unknown) runs again.
      if (!repeat_unknown || std::chrono::steady_clock::now() >= deadline) throw;
    }
  }
}

template <class Body>
boost::asio::awaitable<void> Cluster::read(Body body, std::string_view ryw_gtid) {
  for (int attempt = 0;; ++attempt) {
    Lease lease = co_await acquire_read(ryw_gtid);
    try {
      co_await body(lease);
      co_return;
    } catch (const ConnectionLost&) {
      if (attempt > 0) {
        throw;
      }
      // The broken connection is discarded when `lease` goes; loop for a fresh one.
    }
  }
}

}  // namespace webstack::db
