// The connections of one I/O thread to one node (Pool), and the Lease by which one of
// them is on loan. Handlers use Lease through db/cluster.hpp; Pool is private to db/.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/config.hpp"
#include "core/metrics.hpp"  // ReadPath, MetricsShard
#include "db/statement.hpp"

namespace webstack::db {

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

// The connections of one I/O thread to one node: at most db.pool_size, opened lazily,
// LIFO when idle, FIFO waiters for at most db.pool_wait. Single-threaded, no locks.
class Pool : public std::enable_shared_from_this<Pool> {
 public:
  // `on_trouble` is called when a connection broke or met a read-only node: the
  // topology may have changed (the Cluster re-probes).
  Pool(boost::asio::io_context& io, std::shared_ptr<const DatabaseConfig> cfg, std::size_t index,
       MetricsShard& metrics, std::function<void()> on_trouble);
  ~Pool();

  const std::string& name() const { return name_; }

  // `read`: the lease serves a read, which abandon_reads() may cut short.
  boost::asio::awaitable<Lease> lease(ReadPath path, bool read);

  // The node is unreachable: reads on loan stop waiting for it (ConnectionLost, so
  // Cluster::read runs them again elsewhere). Writes run on: whether one ran is unknown
  // either way, and the query timeout ends it. Returns how many reads were cut short.
  std::size_t abandon_reads();

  // Back from a Lease. A broken connection is closed (its slot freed for a waiter) and the
  // prober is poked; a healthy one goes to the first waiter, else to the idle stack.
  void release(std::unique_ptr<Connection> conn) noexcept;

  // The node went away: its idle connections are dead or about to be.
  void close_idle();

  void stop();

 private:
  struct Waiter;
  struct WaiterGuard;

  boost::asio::awaitable<std::unique_ptr<Connection>> acquire();
  void give_slot();
  void publish();

  boost::asio::io_context& io_;
  std::shared_ptr<const DatabaseConfig> cfg_;
  DbNode node_;
  std::string name_;
  std::size_t index_;
  MetricsShard& metrics_;
  std::function<void()> on_trouble_;
  std::vector<std::unique_ptr<Connection>> idle_;  // LIFO: the warmest first
  std::vector<Connection*> reading_;               // on loan to reads (not owned)
  std::uint64_t abandoned_epoch_ = 0;              // abandon_reads() calls so far
  std::deque<Waiter*> waiters_;                    // FIFO
  unsigned open_ = 0;                              // idle + in use + connecting
  unsigned in_use_ = 0;
  bool stopped_ = false;
};

}  // namespace webstack::db
