// MariaDbPair: a real MariaDB primary (node 0) and replica (node 1) on 127.0.0.1 for the
// integration tests.
//
//   auto& db = webstack::it::MariaDbPair::shared();   // started once per test binary
//   db.port(MariaDbPair::kPrimary);                   // TCP port on 127.0.0.1
//   db.db_nodes();                                    // "127.0.0.1:P0,127.0.0.1:P1"
//   db.root_sql(MariaDbPair::kPrimary, "UPDATE webstack.World SET randomNumber = 1 WHERE id = 1");
//   db.wait_replica_caught_up();                      // replica applied all of the primary
//   db.root_sql(MariaDbPair::kReplica, "SELECT randomNumber FROM webstack.World WHERE id = 1");
//                                                     // -> "1\n" (--batch, no column names)
//   db.stop(MariaDbPair::kReplica);  ...  db.start(MariaDbPair::kReplica);
//
// Each node is a mariadbd child process with its own datadir, unix socket and port under
// /tmp/webstack-it-<pid>-mariadb<N>-XXXXXX (mariadb-install-db --no-defaults). Both nodes run
// with log-bin, binlog_format=ROW, gtid_strict_mode=ON, log_slave_updates (so the replica can
// be promoted), skip-name-resolve, a 64M buffer pool and innodb_flush_log_at_trx_commit=2.
// The replica also runs with read_only=ON (given on its command line, so start() after a
// promotion brings it back read-only) and replicates with MASTER_USE_GTID=slave_pos and
// MASTER_CONNECT_RETRY=1 from an empty gtid_slave_pos, i.e. it replays the primary's whole
// binlog: users (sql/users.sql.in, random passwords), sql/schema.sql and sql/seed.sql are all
// executed on the primary only.
//
// Accounts: root@localhost without password over the unix socket (root_sql); app_user()
// ("webstack": SELECT/INSERT/UPDATE/DELETE on webstack.*), probe_user() ("webstack_probe":
// SLAVE MONITOR, for the topology probe's SHOW SLAVE STATUS) and repl (REPLICATION SLAVE),
// all @'%', as in sql/users.sql.in.
//
// Lifetime: shared() starts the pair on first use and stops it at normal exit (SIGTERM +
// waitpid, then rm -rf of the temp dirs), also when tests fail. mariadbd runs with
// PR_SET_PDEATHSIG=SIGKILL, so it dies with the test binary on a crash; temp dirs left by a
// killed binary are removed by the next run (sweep_stale_temp_dirs). A MariaDbPair can also be
// constructed directly for a test that needs a private pair (e.g. destructive failover tests);
// its destructor stops it. Tests that stop(), promote or otherwise change the shared pair must
// put it back as they found it (start(), read_only, replication) for the tests after them.
//
// Methods are not meant to be called concurrently on the same node.
#pragma once

#include <sys/types.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "subprocess.hpp"

namespace webstack::it {

class MariaDbPair {
 public:
  static constexpr int kPrimary = 0;
  static constexpr int kReplica = 1;
  static constexpr int kNodes = 2;

  // The pair for this test binary: started on first call (throws std::runtime_error if it
  // cannot start), stopped at exit.
  static MariaDbPair& shared();

  // Starts a new, private pair (a few seconds). Throws std::runtime_error on failure, after
  // cleaning up what it started.
  MariaDbPair();
  ~MariaDbPair();
  MariaDbPair(const MariaDbPair&) = delete;
  MariaDbPair& operator=(const MariaDbPair&) = delete;

  std::uint16_t port(int node) const;
  std::string host() const { return "127.0.0.1"; }
  std::string address(int node) const;  // "127.0.0.1:<port>"
  std::string db_nodes() const;         // for --set db.nodes=: "127.0.0.1:P0,127.0.0.1:P1"
  std::string socket_path(int node) const;
  std::string datadir(int node) const;
  std::string error_log_path(int node) const;
  pid_t pid(int node) const;  // -1 while stopped
  bool running(int node) const;

  const std::string& app_user() const { return app_user_; }
  const std::string& app_password() const { return app_password_; }
  const std::string& database() const { return database_; }
  const std::string& probe_user() const { return probe_user_; }
  const std::string& probe_password() const { return probe_password_; }
  const std::string& repl_password() const { return repl_password_; }
  // sql/users.sql.in with this pair's passwords and host '%', as provisioned.
  std::string users_sql() const;

  // Runs `sql` (one or more ';'-separated statements) as root over the node's unix socket with
  // `mariadb --batch --skip-column-names -e`; returns stdout (tab-separated columns, one line
  // per row, NULL as "NULL"). Throws std::runtime_error with the client's stderr on failure.
  std::string root_sql(int node, std::string_view sql,
                       std::chrono::milliseconds timeout = 60s) const;
  // Same, executing a file (e.g. WEBSTACK_SQL_DIR "/seed.sql").
  std::string root_sql_file(int node, const std::string& path,
                            std::chrono::milliseconds timeout = 120s) const;
  // Runs `sql` over TCP as `user`; never throws on SQL errors: inspect exit_code and err
  // (e.g. "ERROR 1142 (42000) ... command denied"). Default user: the app user. Default
  // schema: `database`, by default the app's; "" for none (the probe and repl accounts have
  // no schema, so naming one refuses their login).
  CommandResult user_sql(int node, std::string_view sql, const std::string& user = {},
                         const std::string& password = {},
                         const std::optional<std::string>& database = std::nullopt) const;

  // SIGTERM and wait for a clean shutdown (SIGKILL after `grace`). No-op if stopped.
  void stop(int node, std::chrono::milliseconds grace = 60s);
  // SIGKILL: a crash, InnoDB recovers on the next start(). No-op if stopped.
  void kill_hard(int node);
  // Restarts a stopped node with the same datadir, port, socket and options, and waits until
  // it accepts connections. The replica resumes replication by itself. No-op if running.
  void start(int node, std::chrono::milliseconds timeout = 60s);

  // SHOW SLAVE STATUS on `node` as field -> value ("Slave_IO_Running" -> "Yes"); empty when
  // the node is not a replica.
  std::map<std::string, std::string> slave_status(int node = kReplica) const;

  // Waits until the replica has applied everything in the primary's binlog (MASTER_GTID_WAIT
  // of the primary's @@gtid_binlog_pos). Throws with SHOW SLAVE STATUS on timeout.
  void wait_replica_caught_up(std::chrono::milliseconds timeout = 30s) const;

  // Last bytes of a node's error log, for failure messages.
  std::string error_log_tail(int node, std::size_t max_bytes = 4096) const;

 private:
  struct Node {
    int index = 0;
    std::string dir;  // temp dir: data/, mysqld.sock, error.log, tmp/
    std::uint16_t port = 0;
    pid_t pid = -1;
  };

  const Node& node_at(int node) const;
  Node& node_at(int node);
  std::vector<std::string> server_args(const Node& n) const;
  void launch(Node& n);
  void wait_ready(Node& n, std::chrono::milliseconds timeout);
  std::vector<std::string> client_args(const Node& n) const;
  void provision();
  void shutdown_all() noexcept;

  std::array<Node, kNodes> nodes_;
  std::string app_user_ = "webstack";
  std::string app_password_;
  std::string probe_user_ = "webstack_probe";
  std::string probe_password_;
  std::string repl_password_;
  std::string database_ = "webstack";
};

}  // namespace webstack::it
