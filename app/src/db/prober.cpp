#include "db/prober.hpp"

#include <fmt/format.h>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <atomic>
#include <exception>
#include <string>
#include <string_view>
#include <vector>

#include "core/log.hpp"
#include "db/connection.hpp"

namespace webstack::db {

namespace asio = boost::asio;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;

namespace {

// Pokes (after connection errors) re-probe at once, but no more often than this.
constexpr auto kMinProbeGap = std::chrono::milliseconds(100);

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

Prober::Prober(asio::io_context& io, const DatabaseConfig& cfg, std::size_t node)
    : io_(io),
      cfg_(cfg),
      node_(cfg.nodes[node]),
      probe_account_(probe_login(cfg, cfg.probe_user, cfg.probe_password)),
      app_account_(probe_login(cfg, cfg.user, cfg.password)),
      timeout_(std::min(cfg.connect_timeout, cfg.query_timeout)),
      wake_(io) {}

Prober::~Prober() = default;

void Prober::poke() noexcept {
  poked_ = true;
  error_code ec;
  if (!probing_) {
    wake_.cancel(ec);
  }
}

void Prober::stop() noexcept {
  stopped_ = true;
  error_code ec;
  wake_.cancel(ec);
  if (conn_) {
    conn_->cancel();
  }
}

void Prober::close() noexcept {
  conn_.reset();
}

asio::awaitable<void> Prober::wait() {
  error_code ec;
  wake_.expires_at(started_at_ + (poked_ ? kMinProbeGap : cfg_.probe_interval));
  co_await wake_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  while (!stopped_ && Clock::now() < started_at_ + kMinProbeGap) {  // poked: keep a gap
    wake_.expires_at(started_at_ + kMinProbeGap);
    co_await wake_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

asio::awaitable<NodeStatus> Prober::probe(NodeStatus next) {
  started_at_ = Clock::now();
  poked_ = false;
  probing_ = true;
  next.checked_at = std::chrono::system_clock::now();
  for (int attempt = 0; attempt < 2 && !stopped_; ++attempt) {
    const bool reused = conn_ && !conn_->broken();
    bool answered = false;
    bool retry = false;
    try {
      if (!reused) {
        co_await connect();
      }
      co_await probe_once(next, answered);
    } catch (const std::exception& e) {
      next.last_error = e.what();
      next.replicating = false;
      next.lag_ms.reset();
      const bool lost = conn_->broken();
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
  probing_ = false;
  co_return next;
}

// Opens the probe connection as the probe account; as the app's account when no probe
// password is configured, or when the probe account's login is refused (a monitoring
// account must not take the site down: the app only loses replica status, if its own
// account lacks SLAVE MONITOR).
asio::awaitable<void> Prober::connect() {
  if (!cfg_.probe_password.empty()) {
    conn_ = std::make_unique<Connection>(io_, timeout_);
    login_ = &probe_account_;
    std::string refused;
    try {
      co_await conn_->connect(node_, probe_account_);
      co_return;
    } catch (const ConnectionLost&) {
      throw;  // the node, not the account
    } catch (const Unavailable& e) {
      if (stopped_) {
        throw;  // cancelled
      }
      refused = e.what();  // credentials, account locked, connection limits
    }
    if (!probe_login_refused_logged.exchange(true, std::memory_order_relaxed)) {
      log::warn(
          "db probe account refused, probing as db.user instead",
          {{"probe_user", probe_account_.user}, {"user", app_account_.user}, {"error", refused}});
    }
  }
  conn_ = std::make_unique<Connection>(io_, timeout_);
  login_ = &app_account_;
  co_await conn_->connect(node_, app_account_);
}

asio::awaitable<void> Prober::probe_once(NodeStatus& next, bool& answered) {
  Connection& conn = *conn_;
  monitor_denied_ = false;
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
    monitor_denied_ = true;
    note_monitor_denied(next, e.what());
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
void Prober::note_monitor_denied(NodeStatus& next, const char* error) {
  if (next.writable) {
    return;
  }
  next.last_error = fmt::format(
      "SHOW SLAVE STATUS refused to {}: replication state unknown, not read from as a replica",
      login_->user);
  if (!slave_monitor_denied_logged.exchange(true, std::memory_order_relaxed)) {
    const char* fix = "GRANT SLAVE MONITOR ON *.* TO db.probe_user";
    if (login_ == &app_account_) {
      fix = cfg_.probe_password.empty()
                ? "set db.probe_password (the webstack_probe account of sql/users.sql.in)"
                : "make db.probe_user's login work (see the warning before)";
    }
    log::warn("db probe cannot see replication: replicas are not read from",
              {{"user", login_->user}, {"error", error}, {"fix", fix}});
  }
}

}  // namespace webstack::db
