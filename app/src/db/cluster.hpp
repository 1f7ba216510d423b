// The database as the application sees it: every configured MariaDB node, which one is
// writable, how far each replica lags, and per-node connection pools. One Cluster per
// I/O thread (shared-nothing): it is used only from its own io_context.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>

#include <array>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "core/config.hpp"
#include "core/metrics.hpp"
#include "db/routing.hpp"  // NodeStatus

namespace webstack::db {

// The database could not serve the request: no writable node, no reachable node,
// pool wait timed out, connection lost during a write. Handlers answer 503.
class Unavailable : public std::runtime_error {
  using std::runtime_error::runtime_error;
};
// The connection broke (server gone, killed, network error): it was closed and will be
// replaced. A kind of Unavailable; Cluster::read retries once on it.
class ConnectionLost : public Unavailable {
  using Unavailable::Unavailable;
};
// A write reached a node that is read-only now (demoted since the last probe): the
// statement did not run, so Cluster::write may run it again on the new primary.
class RefusedReadOnly : public Unavailable {
  using Unavailable::Unavailable;
};
// The server refused a statement (syntax, constraint, deadlock...). Handlers answer 500.
class QueryError : public std::runtime_error {
 public:
  explicit QueryError(const std::string& what, unsigned code = 0)
      : std::runtime_error(what), code_(code) {}
  unsigned code() const { return code_; }  // the server's ER_* number; 0 if not from it
  // The statement lost a lock conflict and was rolled back: running it again is safe.
  bool retryable() const {
    return code_ == 1213 /* ER_LOCK_DEADLOCK */ || code_ == 1205 /* ER_LOCK_WAIT_TIMEOUT */;
  }

 private:
  unsigned code_;
};

using Param = std::variant<std::nullptr_t, std::int64_t, std::string_view>;
using Field =
    std::variant<std::monostate, std::int64_t, double, std::string>;  // NULL, ints, floats, text
using Row = std::vector<Field>;

// Statement parameters as a braced list: `{id}`, `{name, body}` (up to kMax; beyond, use a
// std::vector<Param>). Not a std::initializer_list: g++ 12 rejects a braced
// initializer_list temporary inside a co_await expression ("array used as initializer").
// Held by value, so a not-yet-awaited execute() does not dangle.
class Params {
 public:
  static constexpr std::size_t kMax = 16;
  Params() = default;
  template <class... P>
  requires(sizeof...(P) >= 1 && sizeof...(P) <= kMax && (std::convertible_to<P, Param> && ...))
      Params(P&&... params)  // NOLINT(google-explicit-constructor): braced lists are the point
      : values_{Param(std::forward<P>(params))...}, size_(sizeof...(P)) {}
  std::span<const Param> span() const { return {values_.data(), size_}; }

 private:
  std::array<Param, kMax> values_{};
  std::size_t size_ = 0;
};

// `lease.execute(sql, db::params(id, name))`: the same as a braced list, spelled as a call.
template <class... P>
Params params(P&&... values) {
  return Params(std::forward<P>(values)...);
}

struct Result {
  std::vector<Row> rows;
  std::uint64_t affected_rows = 0;
  std::uint64_t insert_id = 0;
};

// One MariaDB connection, driven by the Connector/C non-blocking API on Asio.
// One operation in flight at a time (the pool guarantees it).
class Connection;
class Pool;

// A pooled connection on loan; returning it to the pool is automatic. If the connection
// broke, it is closed and replaced instead of being returned.
class Lease {
 public:
  Lease() = default;
  Lease(Lease&&) noexcept;
  Lease& operator=(Lease&&) noexcept;
  ~Lease();

  // Server-side prepared statement, prepared once per connection and cached by text.
  // Written `co_await lease.execute(sql, {id, name})`, or with a named std::vector<Param>.
  // String params and the SQL text must stay alive until the co_await completes.
  boost::asio::awaitable<Result> execute(std::string_view sql, Params params = {});
  template <class V>
  requires std::same_as<V, std::vector<Param>>  // a template so that `{...}` means Params
      boost::asio::awaitable<Result> execute(std::string_view sql, const V& params) {
    return execute_span(sql, std::span<const Param>(params));
  }
  // Text protocol, for statements that are not hot (topology, GTID).
  boost::asio::awaitable<Result> query(std::string_view sql);
  // Statements separated by ';', sent in one round trip, one Result each: for batches
  // the app builds itself (request input only as hex literals, never as SQL text). A
  // failed statement ends the batch (the rest do not run) and throws.
  boost::asio::awaitable<std::vector<Result>> query_multi(std::string_view sql);

  // The session's state is unknown (a transaction may be open, a ROLLBACK failed): the
  // connection is closed when the lease ends instead of going back to the pool.
  void discard();

  const std::string& node_name() const;    // "host:port" of the node that answers
  ReadPath path() const { return path_; }  // for reads: how this node was chosen
  explicit operator bool() const { return conn_ != nullptr; }

 private:
  friend class Cluster;
  friend class Pool;
  boost::asio::awaitable<Result> execute_span(std::string_view sql, std::span<const Param> params);

  // Defined where Connection is complete, so Lease works with Connection incomplete.
  struct ConnectionDeleter {
    void operator()(Connection* conn) const noexcept;
  };
  // The pool is shared so that a lease outliving its Cluster still returns safely.
  std::shared_ptr<Pool> pool_;
  std::unique_ptr<Connection, ConnectionDeleter> conn_;
  ReadPath path_ = ReadPath::Primary;
};

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
