#include "db/cluster.hpp"

#include <fmt/format.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <exception>
#include <functional>

#include "common/gtid.hpp"
#include "core/log.hpp"
#include "db/pool.hpp"
#include "db/prober.hpp"
#include "db/routing.hpp"

namespace webstack::db {

namespace asio = boost::asio;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;

namespace {

// A write waiting for a writable node looks again this often (the probers are poked).
constexpr auto kWriterPoll = std::chrono::milliseconds(20);

}  // namespace

struct Cluster::Impl : std::enable_shared_from_this<Impl> {
  Impl(asio::io_context& io_ctx, const DatabaseConfig& config, MetricsShard& shard)
      : io(io_ctx),
        cfg(std::make_shared<const DatabaseConfig>(config)),
        metrics(shard),
        gtid_wait_sql(fmt::format("SELECT MASTER_GTID_WAIT(?, {}.{:03})",
                                  config.gtid_wait.count() / 1000,
                                  config.gtid_wait.count() % 1000)) {}

  // After make_shared: the pools call back through a weak pointer.
  void init() {
    for (std::size_t i = 0; i < cfg->nodes.size(); ++i) {
      NodeStatus status;
      status.name = cfg->nodes[i].name();
      status.last_error = "not probed yet";
      nodes.push_back(std::move(status));
      pools.push_back(std::make_shared<Pool>(io, cfg, i, metrics, [weak = weak_from_this()] {
        if (auto self = weak.lock()) {
          self->poke();
        }
      }));
      probers.push_back(std::make_unique<Prober>(io, *cfg, i));
      metrics.replica_lag(i, -1);
    }
  }

  // Something failed on a node: re-check the whole topology now (a failover may be under way).
  void poke() noexcept {
    if (stopped) {
      return;
    }
    for (auto& p : probers) {
      p->poke();
    }
  }

  // A connection to node `i` could not be opened: stop routing to it until the prober
  // says otherwise.
  void mark_lost(std::size_t i, const std::string& error) {
    NodeStatus next = nodes[i];
    next.reachable = false;
    next.writable = false;
    next.replicating = false;
    next.lag_ms.reset();
    next.last_error = error;
    next.checked_at = std::chrono::system_clock::now();
    apply(i, std::move(next));
    poke();
  }

  // Probes node `i` until stop(), installing each result.
  asio::awaitable<void> probe_loop(std::shared_ptr<Impl> self, std::size_t i) {
    (void)self;  // keeps Impl alive while this loop runs
    Prober& p = *probers[i];
    while (!stopped) {
      NodeStatus next = co_await p.probe(nodes[i]);
      if (stopped) {
        break;
      }
      apply(i, std::move(next));
      co_await p.wait();
    }
    p.close();
  }

  // Installs a probe result; logs what changed.
  void apply(std::size_t i, NodeStatus next) {
    NodeStatus& cur = nodes[i];
    const bool first = cur.checked_at == std::chrono::system_clock::time_point{};
    const bool was_reachable = cur.reachable && !first;
    const std::string& name = cur.name;
    const std::string lag = next.lag_ms ? std::to_string(*next.lag_ms) : "none";
    const char* role = next.writable ? "primary" : next.replicating ? "replica" : "read-only";
    if (!next.reachable) {
      if (was_reachable || first) {
        log::warn("db node unreachable", {{"node", name}, {"error", next.last_error}});
      }
      if (cur.reachable) {
        pools[i]->close_idle();
        // The prober's verdict, or a connection that could not be opened: reads waiting
        // on the node wait in vain (a path that is gone, a server that does not answer).
        if (const auto n = pools[i]->abandon_reads(); n > 0) {
          log::warn("db reads abandoned on an unreachable node, run again elsewhere",
                    {{"node", name}, {"reads", std::to_string(n)}});
        }
      }
    } else if (!was_reachable) {
      log::info("db node reachable", {{"node", name}, {"role", role}, {"lag_ms", lag}});
    } else {
      if (next.writable && !cur.writable) {
        log::info("db node became writable", {{"node", name}});
      }
      if (!next.writable && cur.writable) {
        log::warn("db node became read-only", {{"node", name}});
      }
      if (!next.writable && cur.replicating && !next.replicating) {
        log::warn("db replication stopped", {{"node", name}, {"error", next.last_error}});
      }
      if (!next.writable && !cur.replicating && next.replicating) {
        log::info("db replication running", {{"node", name}, {"lag_ms", lag}});
      }
    }
    // A read-only node that never was a usable replica (a refused SHOW SLAVE STATUS is
    // warned about once, in note_monitor_denied()).
    if (next.reachable && !next.writable && !next.replicating && !cur.replicating &&
        !next.last_error.empty() && next.last_error != cur.last_error &&
        !probers[i]->monitor_denied()) {
      log::warn("db node not usable as replica", {{"node", name}, {"error", next.last_error}});
    }
    cur = std::move(next);
    metrics.replica_lag(i, cur.reachable && cur.lag_ms ? *cur.lag_ms : -1);

    const auto writers = std::count_if(
        nodes.begin(), nodes.end(), [](const NodeStatus& n) { return n.reachable && n.writable; });
    if (writers > 1 && !split_brain_logged) {
      log::error("several writable db nodes: writes refused until one is read-only");
    }
    split_brain_logged = writers > 1;
  }

  // Read-your-writes on a replica: waits there for the client's last write (gtid_wait);
  // if it does not arrive, the read goes to the primary instead.
  asio::awaitable<void> replica_or_primary(Lease& lease, std::string_view ryw_gtid) {
    bool caught_up = false;
    try {
      const Result r = co_await lease.execute(gtid_wait_sql, {ryw_gtid});
      const auto* v =
          r.rows.empty() || r.rows[0].empty() ? nullptr : std::get_if<std::int64_t>(&r.rows[0][0]);
      caught_up = v != nullptr && *v == 0;  // -1: timed out, NULL: not a replica
    } catch (const std::exception& e) {
      log::debug("db gtid wait failed", {{"node", lease.node_name()}, {"error", e.what()}});
    }
    metrics.read_your_writes(caught_up ? RywOutcome::CaughtUp : RywOutcome::Behind);
    if (caught_up) {
      co_return;
    }
    lease = Lease{};  // back to its pool, or closed if it broke
    const auto writer = choose_writer(nodes);
    if (!writer) {
      throw Unavailable("db: replica behind and no primary for read-your-writes");
    }
    std::string lost;
    try {
      lease = co_await pools[*writer]->lease(ReadPath::Primary, true);
    } catch (const ConnectionLost& e) {
      lost = e.what();
    }
    if (!lease) {
      mark_lost(*writer, lost);
      throw ConnectionLost(lost);
    }
  }

  // No single writer (a failover under way): the node read from, whichever answered,
  // may lack the client's last write (a replica behind, or one the old primary never
  // reached). Its position must hold it, or the read is refused (503), never stale.
  asio::awaitable<void> check_position(Lease& lease, std::string_view ryw_gtid) {
    std::string have, failed;
    try {
      const Result r = co_await lease.query("SELECT @@GLOBAL.gtid_current_pos");
      if (!r.rows.empty() && !r.rows[0].empty()) {
        if (const auto* s = std::get_if<std::string>(&r.rows[0][0])) have = *s;
      }
    } catch (const std::exception& e) {
      failed = e.what();
      log::warn("db gtid position failed", {{"node", lease.node_name()}, {"error", failed}});
    }
    const bool holds = failed.empty() && gtid_covers(have, std::string(ryw_gtid));
    metrics.read_your_writes(holds ? RywOutcome::CaughtUp : RywOutcome::Behind);
    if (!holds) {
      throw Unavailable(failed.empty() ? "db: no primary, and " + lease.node_name() +
                                             " lacks the client's last write (read-your-writes)"
                                       : "db: no primary, and the position of " +
                                             lease.node_name() + " could not be read");
    }
  }

  asio::io_context& io;
  std::shared_ptr<const DatabaseConfig> cfg;
  MetricsShard& metrics;
  std::string gtid_wait_sql;
  std::vector<NodeStatus> nodes;
  std::vector<std::shared_ptr<Pool>> pools;
  std::vector<std::unique_ptr<Prober>> probers;
  std::uint64_t rr = 0;
  bool started = false;
  bool stopped = false;
  struct Periodic {
    Periodic(asio::io_context& io, std::chrono::milliseconds p, std::string n,
             std::function<asio::awaitable<void>()> t)
        : timer(io), period(p), name(std::move(n)), task(std::move(t)) {}
    asio::steady_timer timer;
    std::chrono::milliseconds period;
    std::string name;
    std::function<asio::awaitable<void>()> task;
  };
  std::vector<std::unique_ptr<Periodic>> periodic;

  asio::awaitable<void> periodic_loop(std::shared_ptr<Impl> self, Periodic& p) {
    (void)self;  // keeps Impl (and `p`) alive while this loop runs
    while (!stopped) {
      p.timer.expires_after(p.period);
      error_code ec;
      co_await p.timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (stopped) break;
      try {
        co_await p.task();
      } catch (const std::exception& e) {
        log::warn("db housekeeping failed", {{"task", p.name}, {"error", e.what()}});
      }
    }
  }
  bool split_brain_logged = false;
};

Cluster::Cluster(asio::io_context& io, const DatabaseConfig& cfg, MetricsShard& metrics)
    : impl_(std::make_shared<Impl>(io, cfg, metrics)) {
  impl_->init();
}

Cluster::~Cluster() {
  stop();
}

void Cluster::start() {
  if (impl_->started || impl_->stopped) {
    return;
  }
  impl_->started = true;
  for (auto& p : impl_->periodic) {
    asio::co_spawn(impl_->io, impl_->periodic_loop(impl_, *p), asio::detached);
  }
  for (std::size_t i = 0; i < impl_->nodes.size(); ++i) {
    asio::co_spawn(impl_->io, impl_->probe_loop(impl_, i),
                   [node = impl_->nodes[i].name](const std::exception_ptr& e) {
                     if (!e) {
                       return;
                     }
                     try {
                       std::rethrow_exception(e);
                     } catch (const std::exception& ex) {
                       log::error("db prober failed", {{"node", node}, {"error", ex.what()}});
                     } catch (...) {
                       log::error("db prober failed", {{"node", node}});
                     }
                   });
  }
}

void Cluster::stop() {
  if (!impl_ || impl_->stopped) {
    return;
  }
  impl_->stopped = true;
  for (auto& p : impl_->periodic) {
    error_code ec;
    p->timer.cancel(ec);
  }
  for (auto& p : impl_->probers) {
    p->stop();
  }
  for (auto& pool : impl_->pools) {
    pool->stop();
  }
}

void Cluster::every(std::chrono::milliseconds period, std::string name,
                    std::function<asio::awaitable<void>()> task) {
  impl_->periodic.push_back(
      std::make_unique<Impl::Periodic>(impl_->io, period, std::move(name), std::move(task)));
}

const DatabaseConfig& Cluster::config() const {
  return *impl_->cfg;
}

Clock::time_point Cluster::writer_deadline() const {
  return Clock::now() + impl_->cfg->writer_wait;
}

asio::awaitable<Lease> Cluster::acquire_write() {
  co_return co_await acquire_write(writer_deadline());
}

asio::awaitable<Lease> Cluster::acquire_write(Clock::time_point deadline) {
  auto impl = impl_;  // this Cluster may go away while we wait; the Impl may not
  for (;;) {
    if (impl->stopped) {
      throw Unavailable("db: shutting down");
    }
    const auto writer = choose_writer(impl->nodes);
    if (!writer) {
      // A promotion may be under way: the prober (poked) finds the new primary, or the
      // deadline passes. Nothing was sent anywhere, so waiting is safe for any write.
      if (Clock::now() >= deadline) {
        throw Unavailable(
            fmt::format("db: no writable node within {} ms", impl->cfg->writer_wait.count()));
      }
      impl->poke();
      asio::steady_timer pause(impl->io, std::min(deadline, Clock::now() + kWriterPoll));
      error_code ec;
      co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    std::string lost;
    try {
      co_return co_await impl->pools[*writer]->lease(ReadPath::Primary, false);
    } catch (const ConnectionLost& e) {
      lost = e.what();
    }
    // No connection could be opened (nothing was sent): route around the node and wait
    // for a writer, as above.
    impl->mark_lost(*writer, lost);
    if (Clock::now() >= deadline) {
      throw ConnectionLost(lost);
    }
  }
}

void Cluster::demoted(const Lease& lease) {
  const auto& name = lease.node_name();
  for (std::size_t i = 0; i < impl_->nodes.size(); ++i) {
    if (impl_->nodes[i].name != name || !impl_->nodes[i].writable) continue;
    NodeStatus next = impl_->nodes[i];
    next.writable = false;
    impl_->apply(i, std::move(next));
  }
  impl_->poke();
}

asio::awaitable<Lease> Cluster::acquire_read(std::string_view ryw_gtid) {
  auto impl = impl_;
  const bool ryw = valid_gtid(ryw_gtid);  // an invalid GTID is ignored
  for (int attempt = 0;; ++attempt) {
    if (impl->stopped) {
      throw Unavailable("db: shutting down");
    }
    const ReadChoice choice = choose_reader(impl->nodes, impl->cfg->max_replica_lag, impl->rr++);
    if (!choice.node) {
      throw Unavailable("db: no readable node");
    }
    const std::size_t node = *choice.node;
    Lease lease;
    std::string lost;
    try {
      lease = co_await impl->pools[node]->lease(choice.path, true);
    } catch (const ConnectionLost& e) {
      if (attempt > 0) {
        throw;
      }
      lost = e.what();
    }
    if (!lease) {  // could not connect: route around the node and try once more
      impl->mark_lost(node, lost);
      continue;
    }

    if (choice.path == ReadPath::Replica && ryw) {
      co_await impl->replica_or_primary(lease, ryw_gtid);
    }
    // No single writer: the node read from must hold the client's last write. (A read
    // from the writer needs no check: it holds every acknowledged write.)
    if (ryw && choice.path == ReadPath::Fallback && choose_writer(impl->nodes) != node) {
      co_await impl->check_position(lease, ryw_gtid);
    }
    impl->metrics.read_path(lease.path());
    co_return lease;
  }
}

asio::awaitable<std::string> Cluster::last_gtid(Lease& lease) {
  const Result r = co_await lease.query("SELECT @@last_gtid");
  if (!r.rows.empty() && !r.rows[0].empty()) {
    if (const auto* s = std::get_if<std::string>(&r.rows[0][0])) {
      co_return *s;
    }
  }
  co_return std::string{};
}

std::vector<NodeStatus> Cluster::status() const {
  return impl_->nodes;
}

bool Cluster::any_reachable() const {
  return std::any_of(impl_->nodes.begin(), impl_->nodes.end(),
                     [](const NodeStatus& n) { return n.reachable; });
}

}  // namespace webstack::db
