#include "mariadb_pair.hpp"
#include "common/text.hpp"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <future>
#include <memory>
#include <mutex>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <fmt/format.h>

#ifndef WEBSTACK_SQL_DIR
#error "WEBSTACK_SQL_DIR must name the project's sql/ directory"
#endif

namespace webstack::it {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kPollInterval = 50ms;

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  for (auto pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size())) {
    s.replace(pos, from.size(), to);
  }
}

std::string sql_dir() {
  return WEBSTACK_SQL_DIR;
}

}  // namespace

MariaDbPair& MariaDbPair::shared() {
  // Constructed on first use, destroyed (servers stopped, dirs removed) by exit(). A failed
  // start is remembered so that every later test fails fast with the same reason.
  static std::unique_ptr<MariaDbPair> pair;
  static std::string failure;
  static std::mutex mutex;
  std::lock_guard lock(mutex);
  if (!pair) {
    if (!failure.empty()) throw std::runtime_error(failure);
    try {
      pair = std::make_unique<MariaDbPair>();
    } catch (const std::exception& e) {
      failure = std::string("MariaDbPair::shared() failed to start: ") + e.what();
      throw std::runtime_error(failure);
    }
  }
  return *pair;
}

MariaDbPair::MariaDbPair() {
  sweep_stale_temp_dirs();
  app_password_ = random_token(24);
  probe_password_ = random_token(24);
  repl_password_ = random_token(24);
  try {
    // mariadb-install-db for both nodes in parallel (about a second each).
    std::array<std::future<CommandResult>, kNodes> installs;
    for (int i = 0; i < kNodes; ++i) {
      Node& n = nodes_[static_cast<std::size_t>(i)];
      n.index = i;
      n.dir = make_temp_dir(fmt::format("mariadb{}", i));
      ::mkdir((n.dir + "/tmp").c_str(), 0700);
      std::vector<std::string> args = {
          "mariadb-install-db",
          "--no-defaults",
          "--datadir=" + n.dir + "/data",
          "--auth-root-authentication-method=normal",
          "--skip-test-db",
          "--tmpdir=" + n.dir + "/tmp"};  // not the shared /tmp: two bootstraps run at once
      if (::geteuid() == 0) args.emplace_back("--user=root");
      installs[static_cast<std::size_t>(i)] =
          std::async(std::launch::async, [args] { return run_command(args); });
    }
    for (int i = 0; i < kNodes; ++i) {
      const auto r = installs[static_cast<std::size_t>(i)].get();
      if (r.exit_code != 0) {
        throw std::runtime_error(fmt::format("mariadb-install-db (node {}) failed: {}\n{}", i,
                                             r.exit_code, r.out + r.err));
      }
    }
    // Start both; a port taken between free_tcp_port() and mariadbd's bind gets a retry.
    for (auto& n : nodes_) {
      n.port = free_tcp_port();
      launch(n);
    }
    for (auto& n : nodes_) {
      for (int attempt = 1;; ++attempt) {
        try {
          wait_ready(n, 60s);
          break;
        } catch (const std::runtime_error&) {
          const bool port_taken = n.pid < 0 && error_log_tail(n.index).find(
                                                   "Address already in use") != std::string::npos;
          if (!port_taken || attempt == 3) throw;
          n.port = free_tcp_port();
          launch(n);
        }
      }
    }
    provision();
  } catch (...) {
    shutdown_all();
    throw;
  }
}

MariaDbPair::~MariaDbPair() {
  shutdown_all();
}

void MariaDbPair::shutdown_all() noexcept {
  for (auto& n : nodes_) {
    if (n.pid > 0) {
      try {
        terminate_process(n.pid, 60s);
      } catch (...) {
        ::kill(n.pid, SIGKILL);
      }
      n.pid = -1;
    }
    remove_tree(n.dir);
    n.dir.clear();
  }
}

const MariaDbPair::Node& MariaDbPair::node_at(int node) const {
  if (node < 0 || node >= kNodes) throw std::out_of_range(fmt::format("no MariaDB node {}", node));
  return nodes_[static_cast<std::size_t>(node)];
}

MariaDbPair::Node& MariaDbPair::node_at(int node) {
  return const_cast<Node&>(static_cast<const MariaDbPair*>(this)->node_at(node));
}

std::uint16_t MariaDbPair::port(int node) const {
  return node_at(node).port;
}

std::string MariaDbPair::address(int node) const {
  return fmt::format("127.0.0.1:{}", port(node));
}

std::string MariaDbPair::db_nodes() const {
  return address(kPrimary) + "," + address(kReplica);
}

std::string MariaDbPair::socket_path(int node) const {
  return node_at(node).dir + "/mysqld.sock";
}
std::string MariaDbPair::datadir(int node) const {
  return node_at(node).dir + "/data";
}
std::string MariaDbPair::error_log_path(int node) const {
  return node_at(node).dir + "/error.log";
}
pid_t MariaDbPair::pid(int node) const {
  return node_at(node).pid;
}
bool MariaDbPair::running(int node) const {
  return node_at(node).pid > 0;
}

std::string MariaDbPair::error_log_tail(int node, std::size_t max_bytes) const {
  return tail_file(error_log_path(node), max_bytes);
}

std::vector<std::string> MariaDbPair::server_args(const Node& n) const {
  std::vector<std::string> a = {
      "mariadbd",
      "--no-defaults",
      "--datadir=" + n.dir + "/data",
      "--socket=" + n.dir + "/mysqld.sock",
      "--pid-file=" + n.dir + "/mysqld.pid",
      "--log-error=" + n.dir + "/error.log",
      "--tmpdir=" + n.dir + "/tmp",
      "--bind-address=127.0.0.1",
      fmt::format("--port={}", n.port),
      "--skip-name-resolve",
      fmt::format("--server-id={}", n.index + 1),
      "--log-bin=mysql-bin",
      "--relay-log=relay-bin",
      "--binlog-format=ROW",
      "--gtid-strict-mode=ON",
      "--log-slave-updates=ON",
      "--sync-binlog=0",
      "--innodb-buffer-pool-size=64M",
      "--innodb-flush-log-at-trx-commit=2",
      "--performance-schema=OFF",
      "--character-set-server=utf8mb4",
      "--collation-server=utf8mb4_unicode_ci",
      "--max-connections=1000",
      "--slave-net-timeout=10",
  };
  if (::geteuid() == 0) a.emplace_back("--user=root");
  if (n.index != kPrimary) a.emplace_back("--read-only=ON");
  return a;
}

void MariaDbPair::launch(Node& n) {
  n.pid = spawn_daemon({.argv = server_args(n), .env = {}, .output_path = n.dir + "/stdout.log"});
}

std::vector<std::string> MariaDbPair::client_args(const Node& n) const {
  return {"mariadb",           "--no-defaults",
          "--protocol=SOCKET", "--socket=" + n.dir + "/mysqld.sock",
          "--user=root",       "--default-character-set=utf8mb4",
          "--batch",           "--skip-column-names"};
}

void MariaDbPair::wait_ready(Node& n, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  auto args = client_args(n);
  args.insert(args.end(), {"--connect-timeout=2", "-e", "SELECT 1"});
  std::string last_error;
  for (;;) {
    if (auto status = wait_for_exit(n.pid, 0ms)) {
      n.pid = -1;
      throw std::runtime_error(fmt::format("mariadbd node {} exited during startup ({}); {}:\n{}",
                                           n.index, describe_wait_status(*status),
                                           error_log_path(n.index), error_log_tail(n.index)));
    }
    const auto r = run_command(args, {}, 10s);
    if (r.exit_code == 0) return;
    last_error = r.err;
    if (Clock::now() >= deadline) break;
    std::this_thread::sleep_for(kPollInterval);
  }
  throw std::runtime_error(fmt::format("mariadbd node {} not ready after {} ms: {}\n{}:\n{}",
                                       n.index, timeout.count(), webstack::text::trim(last_error),
                                       error_log_path(n.index), error_log_tail(n.index)));
}

void MariaDbPair::provision() {
  // Everything goes through the primary's binlog; the replica replays it from the start.
  root_sql(kPrimary, users_sql());
  root_sql_file(kPrimary, sql_dir() + "/schema.sql");
  root_sql_file(kPrimary, sql_dir() + "/seed.sql");

  root_sql(kReplica, fmt::format("CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={}, "
                                 "MASTER_USER='repl', MASTER_PASSWORD='{}', "
                                 "MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1; "
                                 "START SLAVE;",
                                 port(kPrimary), repl_password_));
  wait_replica_caught_up(60s);
  const auto rows = webstack::text::trim(root_sql(kReplica, "SELECT COUNT(*) FROM webstack.World"));
  if (rows != "10000") {
    throw std::runtime_error("replica has " + rows + " World rows after catching up");
  }
}

std::string MariaDbPair::users_sql() const {
  std::string users = read_file(sql_dir() + "/users.sql.in");
  replace_all(users, "@APP_PASSWORD@", app_password_);
  replace_all(users, "@PROBE_PASSWORD@", probe_password_);
  replace_all(users, "@REPL_PASSWORD@", repl_password_);
  replace_all(users, "@HOST@", "%");
  // A placeholder left in would become a password anyone can read in the file.
  std::smatch left;
  if (std::regex_search(users, left, std::regex("@[A-Z_]+@"))) {
    throw std::runtime_error("sql/users.sql.in: the fixture does not fill " + left.str());
  }
  return users;
}

std::string MariaDbPair::root_sql(int node, std::string_view sql,
                                  std::chrono::milliseconds timeout) const {
  auto args = client_args(node_at(node));
  args.insert(args.end(), {"-e", std::string(sql)});
  const auto r = run_command(args, {}, timeout);
  if (r.exit_code != 0) {
    throw std::runtime_error(fmt::format(
        "SQL on node {} failed ({}): {}\nSQL: {}", node, r.exit_code, webstack::text::trim(r.err),
        sql.size() > 500 ? std::string(sql.substr(0, 500)) + "..." : sql));
  }
  return r.out;
}

std::string MariaDbPair::root_sql_file(int node, const std::string& path,
                                       std::chrono::milliseconds timeout) const {
  const auto r = run_command(client_args(node_at(node)), read_file(path), timeout);
  if (r.exit_code != 0) {
    throw std::runtime_error(fmt::format("{} on node {} failed ({}): {}", path, node, r.exit_code,
                                         webstack::text::trim(r.err)));
  }
  return r.out;
}

CommandResult MariaDbPair::user_sql(int node, std::string_view sql, const std::string& user,
                                    const std::string& password,
                                    const std::optional<std::string>& database) const {
  const bool app = user.empty();
  std::vector<std::string> args = {"mariadb",
                                   "--no-defaults",
                                   "--protocol=TCP",
                                   "--host=127.0.0.1",
                                   fmt::format("--port={}", port(node)),
                                   "--user=" + (app ? app_user_ : user),
                                   "--password=" + (app ? app_password_ : password),
                                   "--default-character-set=utf8mb4",
                                   "--batch",
                                   "--skip-column-names"};
  const std::string schema = database.value_or(database_);
  if (!schema.empty()) args.push_back("--database=" + schema);
  args.insert(args.end(), {"-e", std::string(sql)});
  return run_command(args, {}, 60s);
}

void MariaDbPair::stop(int node, std::chrono::milliseconds grace) {
  Node& n = node_at(node);
  if (n.pid < 0) return;
  terminate_process(n.pid, grace);
  n.pid = -1;
}

void MariaDbPair::kill_hard(int node) {
  Node& n = node_at(node);
  if (n.pid < 0) return;
  ::kill(n.pid, SIGKILL);
  terminate_process(n.pid, 60s);
  n.pid = -1;
}

void MariaDbPair::start(int node, std::chrono::milliseconds timeout) {
  Node& n = node_at(node);
  if (n.pid > 0) return;
  launch(n);
  wait_ready(n, timeout);
}

std::map<std::string, std::string> MariaDbPair::slave_status(int node) const {
  auto args = client_args(node_at(node));
  args.erase(std::remove(args.begin(), args.end(), "--skip-column-names"), args.end());
  args.insert(args.end(), {"--vertical", "-e", "SHOW SLAVE STATUS"});
  const auto r = run_command(args, {}, 30s);
  if (r.exit_code != 0) {
    throw std::runtime_error(fmt::format("SHOW SLAVE STATUS on node {} failed: {}", node, r.err));
  }
  // "*** 1. row ***" then "      Slave_IO_State: Waiting for master to send event" lines.
  std::map<std::string, std::string> status;
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);) {
    const auto colon = line.find(": ");
    if (colon == std::string::npos || line.rfind("***", 0) == 0) continue;
    status[webstack::text::trim(line.substr(0, colon))] = line.substr(colon + 2);
  }
  return status;
}

void MariaDbPair::wait_replica_caught_up(std::chrono::milliseconds timeout) const {
  const auto pos = webstack::text::trim(root_sql(kPrimary, "SELECT @@GLOBAL.gtid_binlog_pos"));
  if (pos.empty()) return;
  const auto result =
      webstack::text::trim(root_sql(kReplica,
                                    fmt::format("SELECT MASTER_GTID_WAIT('{}', {:.3f})", pos,
                                                static_cast<double>(timeout.count()) / 1e3),
                                    timeout + 30s));
  if (result != "0") {
    std::string status;
    try {
      for (const auto& [k, v] : slave_status(kReplica)) status += fmt::format("  {}: {}\n", k, v);
    } catch (const std::exception& e) {
      status = e.what();
    }
    throw std::runtime_error(fmt::format(
        "replica did not reach primary GTID position {} within {} ms (MASTER_GTID_WAIT: {}, "
        "replica gtid_slave_pos: {})\n{}",
        pos, timeout.count(), result,
        webstack::text::trim(root_sql(kReplica, "SELECT @@GLOBAL.gtid_slave_pos")), status));
  }
}

}  // namespace webstack::it
