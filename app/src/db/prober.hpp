// The topology prober of one node: on a connection of its own (not from the pool) it
// reads @@read_only and SHOW SLAVE STATUS into a NodeStatus, every db.probe_interval, or
// at once when poked after a failure. The Cluster runs it and installs what it finds.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstddef>
#include <memory>

#include "core/config.hpp"
#include "db/routing.hpp"  // NodeStatus

namespace webstack::db {

class Connection;

class Prober {
 public:
  // Probes node `node` of `cfg`, which must outlive the prober.
  Prober(boost::asio::io_context& io, const DatabaseConfig& cfg, std::size_t node);
  ~Prober();
  Prober(const Prober&) = delete;
  Prober& operator=(const Prober&) = delete;

  // One probe: `next` (the node's status so far) as the node answers now, or with the
  // error that kept it from answering. A reused connection found broken is replaced once
  // before the node is judged. Returns at once after stop().
  boost::asio::awaitable<NodeStatus> probe(NodeStatus next);
  // Until the next probe is due: db.probe_interval after the last one began, or, when
  // poked meanwhile, as soon as a minimum gap after it has passed.
  boost::asio::awaitable<void> wait();
  // Something failed on a node: probe again at once (a failover may be under way).
  void poke() noexcept;
  // Ends the wait and the probe in progress; nothing is probed after it.
  void stop() noexcept;
  // Closes the probe connection (the prober's loop has ended).
  void close() noexcept;

  // The last probe's SHOW SLAVE STATUS was refused.
  bool monitor_denied() const { return monitor_denied_; }

 private:
  boost::asio::awaitable<void> connect();
  boost::asio::awaitable<void> probe_once(NodeStatus& next, bool& answered);
  void note_monitor_denied(NodeStatus& next, const char* error);

  boost::asio::io_context& io_;
  const DatabaseConfig& cfg_;
  const DbNode& node_;
  const DatabaseConfig probe_account_;  // db.probe_user, no schema
  const DatabaseConfig app_account_;    // db.user, no schema: the prober's fallback
  const std::chrono::milliseconds timeout_;
  std::unique_ptr<Connection> conn_;       // dedicated, not from the pool
  const DatabaseConfig* login_ = nullptr;  // the account `conn_` logged in as
  boost::asio::steady_timer wake_;
  std::chrono::steady_clock::time_point started_at_{};  // when the last probe began
  bool probing_ = false;
  bool poked_ = false;
  bool monitor_denied_ = false;  // the last probe's SHOW SLAVE STATUS was refused
  bool stopped_ = false;
};

}  // namespace webstack::db
