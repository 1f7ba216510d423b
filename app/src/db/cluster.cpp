#include "db/cluster.hpp"

#include <fmt/format.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <atomic>
#include <deque>
#include <exception>
#include <functional>

#include "common/gtid.hpp"
#include "core/log.hpp"
#include "db/connection.hpp"
#include "db/routing.hpp"

namespace webstack::db {

namespace asio = boost::asio;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;

namespace {

// Waiters beyond this are refused at once: the queue stays bounded under overload.
constexpr std::size_t kMaxWaiters = 4096;
// Pokes (after connection errors) re-probe at once, but no more often than this.
constexpr auto kMinProbeGap = std::chrono::milliseconds(100);
// A write waiting for a writable node looks again this often (the probers are poked).
constexpr auto kWriterPoll = std::chrono::milliseconds(20);

// Every prober of every thread meets the same account problem: one warning per process.
std::atomic<bool> probe_login_refused_logged{false};
std::atomic<bool> slave_monitor_denied_logged{false};

// The prober's login: `user`/`password`, and no schema (the probe account has none, and the
// prober reads no table).
DatabaseConfig probe_login(const DatabaseConfig& cfg, const std::string& user,
                           const std::string& password) {
  DatabaseConfig login = cfg;
  login.user = user;
  login.password = password;
  login.database.clear();
  return login;
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Pool: the connections of one I/O thread to one node. Single-threaded, no locks.

class Pool : public std::enable_shared_from_this<Pool> {
 public:
  Pool(asio::io_context& io, std::shared_ptr<const DatabaseConfig> cfg, std::size_t index,
       MetricsShard& metrics, std::function<void()> on_trouble)
      : io_(io),
        cfg_(std::move(cfg)),
        node_(cfg_->nodes[index]),
        name_(node_.name()),
        index_(index),
        metrics_(metrics),
        on_trouble_(std::move(on_trouble)) {
    idle_.reserve(cfg_->pool_size);  // release() must not allocate
    reading_.reserve(cfg_->pool_size);
  }

  const std::string& name() const { return name_; }

  // `read`: the lease serves a read, which abandon_reads() may cut short.
  asio::awaitable<Lease> lease(ReadPath path, bool read) {
    auto self = shared_from_this();
    Lease lease;
    lease.pool_ = self;
    lease.path_ = path;
    const auto epoch = abandoned_epoch_;
    lease.conn_.reset((co_await acquire()).release());
    if (read) {
      reading_.push_back(lease.conn_.get());
      if (abandoned_epoch_ != epoch) {
        // The node was found unreachable while this read waited for a connection (one
        // handed over by release(), or just opened): it would wait there in vain too.
        lease.conn_->abandon();
      }
    }
    co_return lease;
  }

  // The node is unreachable: reads on loan stop waiting for it (ConnectionLost, so
  // Cluster::read runs them again elsewhere). Writes run on: whether one ran is unknown
  // either way, and the query timeout ends it. Returns how many reads were cut short.
  std::size_t abandon_reads() {
    ++abandoned_epoch_;
    for (Connection* conn : reading_) {
      conn->abandon();
    }
    return reading_.size();
  }

  // Back from a Lease. A broken connection is closed (its slot freed for a waiter) and the
  // prober is poked; a healthy one goes to the first waiter, else to the idle stack.
  void release(std::unique_ptr<Connection> conn) noexcept {
    std::erase(reading_, conn.get());
    const bool lost = conn->broken();
    if (lost || conn->saw_read_only()) {
      on_trouble_();
    }
    if (lost || stopped_) {
      conn.reset();
      --open_;
      --in_use_;
      publish();
      if (!stopped_) {
        give_slot();
      }
      return;
    }
    if (!waiters_.empty()) {
      Waiter* w = waiters_.front();
      waiters_.pop_front();
      w->conn = std::move(conn);  // stays in use
      error_code ec;
      w->timer.cancel(ec);
      return;
    }
    --in_use_;
    idle_.push_back(std::move(conn));
    publish();
  }

  // The node went away: its idle connections are dead or about to be.
  void close_idle() {
    open_ -= static_cast<unsigned>(idle_.size());
    idle_.clear();
    publish();
  }

  void stop() {
    stopped_ = true;
    close_idle();
    while (!waiters_.empty()) {
      Waiter* w = waiters_.front();
      waiters_.pop_front();
      error_code ec;
      w->timer.cancel(ec);
    }
  }

 private:
  struct Waiter {
    asio::steady_timer timer;
    std::unique_ptr<Connection> conn;  // handed over by release()
    bool slot = false;                 // a connection closed: room to open one
  };
  // Leaves the queue however the wait ends (also when the coroutine is destroyed).
  struct WaiterGuard {
    Pool& pool;
    Waiter& w;
    ~WaiterGuard() {
      auto it = std::find(pool.waiters_.begin(), pool.waiters_.end(), &w);
      if (it != pool.waiters_.end()) {
        pool.waiters_.erase(it);
      }
      if (w.conn) {
        pool.release(std::move(w.conn));
      }
    }
  };

  asio::awaitable<std::unique_ptr<Connection>> acquire() {
    const auto deadline = Clock::now() + cfg_->pool_wait;
    bool counted = false;
    for (;;) {
      if (stopped_) {
        throw Unavailable("db: shutting down");
      }
      while (!idle_.empty()) {
        std::unique_ptr<Connection> conn = std::move(idle_.back());
        idle_.pop_back();
        if (conn->idle_alive()) {
          ++in_use_;
          publish();
          co_return conn;
        }
        // Died while idle (KILL, server restart, wait_timeout): replace it.
        conn.reset();
        --open_;
        publish();
        on_trouble_();
      }
      if (open_ < cfg_->pool_size) {
        ++open_;
        ++in_use_;
        publish();
        auto conn = std::make_unique<Connection>(io_, cfg_->query_timeout);
        std::exception_ptr error;
        try {
          co_await conn->connect(node_, *cfg_);
        } catch (...) {
          error = std::current_exception();
        }
        if (!error) {
          co_return conn;
        }
        conn.reset();
        --open_;
        --in_use_;
        publish();
        give_slot();
        std::rethrow_exception(error);
      }
      if (waiters_.size() >= kMaxWaiters) {
        metrics_.pool_wait_timeout(index_);
        throw Unavailable(fmt::format("db: pool for {} overloaded", name_));
      }
      if (!counted) {
        metrics_.pool_wait(index_);
        counted = true;
      }
      Waiter w{asio::steady_timer(io_, deadline), nullptr, false};
      waiters_.push_back(&w);
      WaiterGuard guard{*this, w};
      error_code ec;
      co_await w.timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (w.conn) {
        co_return std::move(w.conn);
      }
      if (w.slot) {
        continue;
      }
      if (stopped_) {
        throw Unavailable("db: shutting down");
      }
      if (Clock::now() >= deadline) {
        metrics_.pool_wait_timeout(index_);
        throw Unavailable(fmt::format("db: no free connection to {} within {} ms", name_,
                                      cfg_->pool_wait.count()));
      }
    }
  }

  void give_slot() {
    if (waiters_.empty()) {
      return;
    }
    Waiter* w = waiters_.front();
    waiters_.pop_front();
    w->slot = true;
    error_code ec;
    w->timer.cancel(ec);
  }

  void publish() {
    metrics_.pool_in_use(index_, in_use_);
    metrics_.pool_open(index_, open_);
  }

  asio::io_context& io_;
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

// ---------------------------------------------------------------------------------------
// Lease

void Lease::ConnectionDeleter::operator()(Connection* conn) const noexcept {
  delete conn;
}

Lease::Lease(Lease&& other) noexcept
    : pool_(std::move(other.pool_)), conn_(std::move(other.conn_)), path_(other.path_) {}

Lease& Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    if (conn_) {
      pool_->release(std::unique_ptr<Connection>(conn_.release()));
    }
    pool_ = std::move(other.pool_);
    conn_ = std::move(other.conn_);
    path_ = other.path_;
  }
  return *this;
}

Lease::~Lease() {
  if (conn_) {
    pool_->release(std::unique_ptr<Connection>(conn_.release()));
  }
}

asio::awaitable<Result> Lease::execute(std::string_view sql, Params params) {
  if (!conn_) {
    throw std::logic_error("db: execute on an empty lease");
  }
  co_return co_await conn_->execute(sql, params.span());
}

asio::awaitable<Result> Lease::execute_span(std::string_view sql, std::span<const Param> params) {
  if (!conn_) {
    throw std::logic_error("db: execute on an empty lease");
  }
  co_return co_await conn_->execute(sql, params);
}

asio::awaitable<Result> Lease::query(std::string_view sql) {
  if (!conn_) {
    throw std::logic_error("db: query on an empty lease");
  }
  co_return co_await conn_->query(sql);
}

asio::awaitable<std::vector<Result>> Lease::query_multi(std::string_view sql) {
  if (!conn_) {
    throw std::logic_error("db: query on an empty lease");
  }
  co_return co_await conn_->query_multi(sql);
}

void Lease::discard() {
  if (conn_) {
    conn_->discard();
  }
}

const std::string& Lease::node_name() const {
  static const std::string none;
  return pool_ ? pool_->name() : none;
}

// ---------------------------------------------------------------------------------------
// Cluster

struct Cluster::Impl : std::enable_shared_from_this<Impl> {
  struct Prober {
    explicit Prober(asio::io_context& io) : wake(io) {}
    std::unique_ptr<Connection> conn;       // dedicated, not from the pool
    const DatabaseConfig* login = nullptr;  // the account `conn` logged in as
    asio::steady_timer wake;
    bool probing = false;
    bool poked = false;
    bool monitor_denied = false;  // the last probe's SHOW SLAVE STATUS was refused
  };

  Impl(asio::io_context& io_ctx, const DatabaseConfig& config, MetricsShard& shard)
      : io(io_ctx),
        cfg(std::make_shared<const DatabaseConfig>(config)),
        probe_account(probe_login(config, config.probe_user, config.probe_password)),
        app_account(probe_login(config, config.user, config.password)),
        metrics(shard),
        probe_timeout(std::min(config.connect_timeout, config.query_timeout)),
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
      probers.push_back(std::make_unique<Prober>(io));
      metrics.replica_lag(i, -1);
    }
  }

  // Something failed on a node: re-check the whole topology now (a failover may be under way).
  void poke() noexcept {
    if (stopped) {
      return;
    }
    for (auto& p : probers) {
      p->poked = true;
      error_code ec;
      if (!p->probing) {
        p->wake.cancel(ec);
      }
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

  asio::awaitable<void> probe_loop(std::shared_ptr<Impl> self, std::size_t i) {
    (void)self;  // keeps Impl alive while this loop runs
    Prober& p = *probers[i];
    while (!stopped) {
      const auto started_at = Clock::now();
      p.poked = false;
      p.probing = true;
      co_await probe(i);
      p.probing = false;
      if (stopped) {
        break;
      }
      error_code ec;
      p.wake.expires_at(started_at + (p.poked ? kMinProbeGap : cfg->probe_interval));
      co_await p.wake.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      while (!stopped && Clock::now() < started_at + kMinProbeGap) {  // poked: keep a gap
        p.wake.expires_at(started_at + kMinProbeGap);
        co_await p.wake.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      }
    }
    p.conn.reset();
  }

  asio::awaitable<void> probe(std::size_t i) {
    Prober& p = *probers[i];
    NodeStatus next = nodes[i];
    next.checked_at = std::chrono::system_clock::now();
    for (int attempt = 0; attempt < 2 && !stopped; ++attempt) {
      const bool reused = p.conn && !p.conn->broken();
      bool answered = false;
      bool retry = false;
      try {
        if (!reused) {
          co_await connect_prober(i);
        }
        co_await probe_once(p, next, answered);
      } catch (const std::exception& e) {
        next.last_error = e.what();
        next.replicating = false;
        next.lag_ms.reset();
        const bool lost = p.conn->broken();
        if (lost || !answered) {  // else: reachable, but SHOW SLAVE STATUS failed
          next.reachable = false;
          next.writable = false;
        }
        // A long-lived probe connection may have been killed or timed out server-side:
        // one fresh connection decides, rather than flapping the node.
        retry = lost && reused;
      }
      if (!retry) {
        break;
      }
    }
    if (!stopped) {
      apply(i, std::move(next));
    }
  }

  // Opens prober i's connection as the probe account; as the app's account when no probe
  // password is configured, or when the probe account's login is refused (a monitoring
  // account must not take the site down: the app only loses replica status, if its own
  // account lacks SLAVE MONITOR).
  asio::awaitable<void> connect_prober(std::size_t i) {
    Prober& p = *probers[i];
    if (!cfg->probe_password.empty()) {
      p.conn = std::make_unique<Connection>(io, probe_timeout);
      p.login = &probe_account;
      std::string refused;
      try {
        co_await p.conn->connect(cfg->nodes[i], probe_account);
        co_return;
      } catch (const ConnectionLost&) {
        throw;  // the node, not the account
      } catch (const Unavailable& e) {
        if (stopped) {
          throw;  // cancelled
        }
        refused = e.what();  // credentials, account locked, connection limits
      }
      if (!probe_login_refused_logged.exchange(true, std::memory_order_relaxed)) {
        log::warn(
            "db probe account refused, probing as db.user instead",
            {{"probe_user", probe_account.user}, {"user", app_account.user}, {"error", refused}});
      }
    }
    p.conn = std::make_unique<Connection>(io, probe_timeout);
    p.login = &app_account;
    co_await p.conn->connect(cfg->nodes[i], app_account);
  }

  asio::awaitable<void> probe_once(Prober& p, NodeStatus& next, bool& answered) {
    Connection& conn = *p.conn;
    p.monitor_denied = false;
    const Result ro = co_await conn.query("SELECT @@read_only");
    const auto* flag =
        ro.rows.empty() || ro.rows[0].empty() ? nullptr : std::get_if<std::int64_t>(&ro.rows[0][0]);
    if (flag == nullptr) {
      throw QueryError("db: unexpected answer to SELECT @@read_only");
    }
    answered = true;
    next.reachable = true;
    next.writable = *flag == 0;
    next.replicating = false;
    next.lag_ms.reset();
    next.last_error.clear();

    std::vector<std::string> columns;
    Result ss;
    try {
      ss = co_await conn.query("SHOW SLAVE STATUS", &columns);
    } catch (const QueryError& e) {
      if (e.code() != 1227 /* ER_SPECIFIC_ACCESS_DENIED_ERROR */) {
        throw;
      }
      p.monitor_denied = true;
      note_monitor_denied(p, next, e.what());
      co_return;
    }
    if (ss.rows.empty()) {
      co_return;  // not a replica
    }
    const Row& row = ss.rows[0];
    auto text = [&](std::string_view column) -> std::string {
      for (std::size_t c = 0; c < columns.size() && c < row.size(); ++c) {
        if (columns[c] != column) {
          continue;
        }
        if (const auto* s = std::get_if<std::string>(&row[c])) {
          return *s;
        }
        if (const auto* v = std::get_if<std::int64_t>(&row[c])) {
          return std::to_string(*v);
        }
      }
      return {};
    };
    next.replicating = text("Slave_IO_Running") == "Yes" && text("Slave_SQL_Running") == "Yes";
    const std::string lag = text("Seconds_Behind_Master");  // NULL when the SQL thread is stopped
    if (!lag.empty() && lag.size() < 12 &&
        std::all_of(lag.begin(), lag.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      next.lag_ms = std::stoll(lag) * 1000;
    }
    if (!next.replicating) {
      std::string why = text("Last_SQL_Error");
      if (why.empty()) {
        why = text("Last_IO_Error");
      }
      next.last_error = why.empty() ? "replication threads not running" : why;
    }
  }

  // The account lacks SLAVE MONITOR. A writable node is still the primary; a read-only one
  // might be a replica, but whether it replicates and how far behind is unknown, so it is
  // not read from (reads go to the primary; with none, to any reachable node).
  void note_monitor_denied(const Prober& p, NodeStatus& next, const char* error) {
    if (next.writable) {
      return;
    }
    next.last_error = fmt::format(
        "SHOW SLAVE STATUS refused to {}: replication state unknown, not read from as a replica",
        p.login->user);
    if (!slave_monitor_denied_logged.exchange(true, std::memory_order_relaxed)) {
      const char* fix = "GRANT SLAVE MONITOR ON *.* TO db.probe_user";
      if (p.login == &app_account) {
        fix = cfg->probe_password.empty()
                  ? "set db.probe_password (the webstack_probe account of sql/users.sql.in)"
                  : "make db.probe_user's login work (see the warning before)";
      }
      log::warn("db probe cannot see replication: replicas are not read from",
                {{"user", p.login->user}, {"error", error}, {"fix", fix}});
    }
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
        !probers[i]->monitor_denied) {
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

  asio::io_context& io;
  std::shared_ptr<const DatabaseConfig> cfg;
  const DatabaseConfig probe_account;  // db.probe_user, no schema
  const DatabaseConfig app_account;    // db.user, no schema: the prober's fallback
  MetricsShard& metrics;
  std::chrono::milliseconds probe_timeout;
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
    error_code ec;
    p->wake.cancel(ec);
    if (p->conn) {
      p->conn->cancel();
    }
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
      bool caught_up = false;
      try {
        const Result r = co_await lease.execute(impl->gtid_wait_sql, {ryw_gtid});
        const auto* v = r.rows.empty() || r.rows[0].empty()
                            ? nullptr
                            : std::get_if<std::int64_t>(&r.rows[0][0]);
        caught_up = v != nullptr && *v == 0;  // -1: timed out, NULL: not a replica
      } catch (const std::exception& e) {
        log::debug("db gtid wait failed", {{"node", lease.node_name()}, {"error", e.what()}});
      }
      impl->metrics.read_your_writes(caught_up ? RywOutcome::CaughtUp : RywOutcome::Behind);
      if (!caught_up) {
        lease = Lease{};  // back to its pool, or closed if it broke
        const auto writer = choose_writer(impl->nodes);
        if (!writer) {
          throw Unavailable("db: replica behind and no primary for read-your-writes");
        }
        try {
          lease = co_await impl->pools[*writer]->lease(ReadPath::Primary, true);
        } catch (const ConnectionLost& e) {
          lost = e.what();
        }
        if (!lease) {
          impl->mark_lost(*writer, lost);
          throw ConnectionLost(lost);
        }
      }
    }
    // No single writer (a failover under way): the node read from, whichever answered,
    // may lack the client's last write (a replica behind, or one the old primary never
    // reached). Its position must hold it, or the read is refused (503), never stale.
    // (A read from the writer needs no check: it holds every acknowledged write.)
    if (ryw && choice.path == ReadPath::Fallback && choose_writer(impl->nodes) != node) {
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
      impl->metrics.read_your_writes(holds ? RywOutcome::CaughtUp : RywOutcome::Behind);
      if (!holds) {
        throw Unavailable(failed.empty() ? "db: no primary, and " + lease.node_name() +
                                               " lacks the client's last write (read-your-writes)"
                                         : "db: no primary, and the position of " +
                                               lease.node_name() + " could not be read");
      }
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
