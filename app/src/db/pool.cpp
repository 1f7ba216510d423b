#include "db/pool.hpp"

#include <fmt/format.h>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <exception>
#include <stdexcept>

#include "db/connection.hpp"

namespace webstack::db {

namespace asio = boost::asio;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;

namespace {

// Waiters beyond this are refused at once: the queue stays bounded under overload.
constexpr std::size_t kMaxWaiters = 4096;

}  // namespace

// ---------------------------------------------------------------------------------------
// Pool

struct Pool::Waiter {
  asio::steady_timer timer;
  std::unique_ptr<Connection> conn;  // handed over by release()
  bool slot = false;                 // a connection closed: room to open one
};

// Leaves the queue however the wait ends (also when the coroutine is destroyed).
struct Pool::WaiterGuard {
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

Pool::Pool(asio::io_context& io, std::shared_ptr<const DatabaseConfig> cfg, std::size_t index,
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

Pool::~Pool() = default;

asio::awaitable<Lease> Pool::lease(ReadPath path, bool read) {
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

std::size_t Pool::abandon_reads() {
  ++abandoned_epoch_;
  for (Connection* conn : reading_) {
    conn->abandon();
  }
  return reading_.size();
}

void Pool::release(std::unique_ptr<Connection> conn) noexcept {
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

void Pool::close_idle() {
  open_ -= static_cast<unsigned>(idle_.size());
  idle_.clear();
  publish();
}

void Pool::stop() {
  stopped_ = true;
  close_idle();
  while (!waiters_.empty()) {
    Waiter* w = waiters_.front();
    waiters_.pop_front();
    error_code ec;
    w->timer.cancel(ec);
  }
}

asio::awaitable<std::unique_ptr<Connection>> Pool::acquire() {
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
      throw Unavailable(
          fmt::format("db: no free connection to {} within {} ms", name_, cfg_->pool_wait.count()));
    }
  }
}

void Pool::give_slot() {
  if (waiters_.empty()) {
    return;
  }
  Waiter* w = waiters_.front();
  waiters_.pop_front();
  w->slot = true;
  error_code ec;
  w->timer.cancel(ec);
}

void Pool::publish() {
  metrics_.pool_in_use(index_, in_use_);
  metrics_.pool_open(index_, open_);
}

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

}  // namespace webstack::db
