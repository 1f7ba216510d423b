// The databases of `webstack up`: mariadb-install-db for empty datadirs, then each
// database answering, the one-time bootstrap (users, schema, seed, GTID replication),
// replication caught up, and the accounts of the exporters and the failover manager.
#include <fmt/format.h>

#include <filesystem>
#include <future>
#include <stdexcept>
#include <thread>
#include <utility>

#include "common/gtid.hpp"
#include "common/process.hpp"
#include "common/text.hpp"
#include "lab/paths.hpp"
#include "lab/recorded.hpp"
#include "lab/site_internal.hpp"
#include "lab/status.hpp"
#include "lab/tls.hpp"
#include "render/render.hpp"
#include "tools/mariadb.hpp"

namespace webstack::lab {

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using topo::Role;
using topo::Topology;

using detail::read_text;
using detail::tail;
using detail::write_secret;

tools::MariaDbRoot root_of(const StatePaths& p, const std::string& host) {
  return tools::MariaDbRoot(p.mysqld_socket(host));
}

std::string root_sql(const StatePaths& p, const std::string& host, const std::string& sql,
                     std::chrono::milliseconds timeout = 60s) {
  auto r = root_of(p, host).query(sql, timeout);
  if (!r.ok) {
    throw std::runtime_error(fmt::format("SQL on {} failed ({}): {} [{}]", host, r.exit_code, r.err,
                                         sql.substr(0, 200)));
  }
  return std::move(r.out);
}

// Runs a file of SQL as root on `host`.
void root_sql_file(const StatePaths& p, const std::string& host, const std::string& path) {
  const auto r = root_of(p, host).script(read_text(path), 120s);
  if (!r.ok) {
    throw std::runtime_error(fmt::format("{} on {} failed ({}): {}", path, host, r.exit_code,
                                         tools::mariadb_errors(r.err)));
  }
}

// SQL holding a secret: on stdin, never on a command line.
void root_sql_secret(const StatePaths& p, const std::string& host, const std::string& sql) {
  const auto r = root_of(p, host).script(sql, 120s);
  if (!r.ok) {
    throw std::runtime_error(
        fmt::format("SQL on {} failed ({}): {}", host, r.exit_code, tools::mariadb_errors(r.err)));
  }
}

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  for (std::size_t pos = 0; (pos = s.find(from, pos)) != std::string::npos; pos += to.size()) {
    s.replace(pos, from.size(), to);
  }
}

bool dir_empty_or_missing(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return true;
  return fs::is_empty(path, ec);
}

void wait_db(const StatePaths& p, const std::string& host, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  std::string last;
  for (;;) {
    const auto r = root_of(p, host).query("SELECT 1", 5s);
    if (r.ok) return;
    last = r.err;
    if (Clock::now() > deadline) {
      throw std::runtime_error(fmt::format(
          "MariaDB on {} does not answer after {} ms: {}\n{}:\n{}", host, timeout.count(), last,
          p.log + "/" + host + "/mariadb/current", tail(p.log + "/" + host + "/mariadb/current")));
    }
    std::this_thread::sleep_for(200ms);
  }
}

// prometheus-mysqld-exporter logs in over the socket as the OS user prometheus: no
// password anywhere. SLAVE MONITOR is all it needs (SHOW SLAVE STATUS); global status
// and variables need no privilege. Made on the primary, it replicates.
constexpr const char* kExporterAccount =
    "CREATE USER IF NOT EXISTS 'prometheus'@'localhost' IDENTIFIED VIA unix_socket "
    "WITH MAX_USER_CONNECTIONS 3; GRANT SLAVE MONITOR ON *.* TO 'prometheus'@'localhost';";

// The failover manager's account, from the monitor host only, over TLS: it reads every
// node's state, stops and points replication, and sets read_only. No data access.
std::string failover_account_sql(const Topology& t, const StatePaths& p) {
  const std::string user = fmt::format("'webstack_failover'@'{}'", t.monitor()->address);
  const std::string password = text::trim(read_text(p.failover_password()));
  return fmt::format(
      "CREATE USER IF NOT EXISTS {0} IDENTIFIED BY '{1}'; "
      "ALTER USER {0} IDENTIFIED BY '{1}' REQUIRE SSL; "
      "GRANT RELOAD, READ_ONLY ADMIN, REPLICATION SLAVE ADMIN, REPLICATION MASTER ADMIN, "
      "SLAVE MONITOR, BINLOG MONITOR ON *.* TO {0};\n",
      user, password);
}

void bootstrap(const Topology& t, const StatePaths& p, const SiteOptions& o) {
  const auto& primary = t.primary();
  std::string users = read_text(o.sql_dir + "/users.sql.in");
  replace_all(users, "@APP_PASSWORD@", text::trim(read_text(p.app_password())));
  replace_all(users, "@REPL_PASSWORD@", text::trim(read_text(p.repl_password())));
  replace_all(users, "@PROBE_PASSWORD@", text::trim(read_text(p.probe_password())));
  replace_all(users, "@HOST@", "%");
  // Replication over TLS only (hardened): the repl account may not connect without it.
  if (o.profile == render::Profile::Hardened) users += "\nALTER USER 'repl'@'%' REQUIRE SSL;\n";
  root_sql_secret(p, primary.name, users);
  root_sql_file(p, primary.name, o.sql_dir + "/schema.sql");
  root_sql_file(p, primary.name, o.sql_dir + "/seed.sql");
  for (const auto* r : t.replicas()) {
    root_sql_secret(
        p, r->name,
        "STOP SLAVE; " +
            tools::change_master_sql(
                primary.address, t.db_port, text::trim(read_text(p.repl_password())),
                o.profile == render::Profile::Hardened ? lab_ca_path(p.state) : std::string(),
                "slave_pos") +
            "; START SLAVE;\n");
  }
  const auto pos = root_sql(p, primary.name, "SELECT @@GLOBAL.gtid_binlog_pos");
  const auto rows = root_sql(p, primary.name, "SELECT COUNT(*) FROM webstack.World");
  const double secs = static_cast<double>(o.db_timeout.count()) / 1000.0;
  for (const auto* r : t.replicas()) {
    const auto res =
        root_sql(p, r->name, fmt::format("SELECT MASTER_GTID_WAIT('{}', {:.3f})", pos, secs),
                 o.db_timeout + 10s);
    const auto got = root_sql(p, r->name, "SELECT COUNT(*) FROM webstack.World");
    if (res != "0" || got != rows) {
      std::string st;
      try {
        st = root_sql(p, r->name, "SHOW SLAVE STATUS\\G");
      } catch (const std::exception& e) {
        st = e.what();
      }
      throw std::runtime_error(fmt::format(
          "replica {} did not catch up with the primary (GTID {}, World rows {} of {})\n{}",
          r->name, pos, got, rows, st));
    }
  }
}

// Every replica's replication threads run and it has applied what the primary had when
// asked. On every up, not only after the bootstrap: a lab brought up again must be
// replicating too.
void wait_replicas(const Topology& t, const StatePaths& p, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  const auto pos = root_sql(p, t.primary().name, "SELECT @@GLOBAL.gtid_binlog_pos");
  for (const auto* r : t.replicas()) {
    for (;;) {
      const auto rep = replica_report(p.state, r->name);
      if (rep.error.empty() && rep.io_running && rep.sql_running) break;
      if (Clock::now() > deadline) {
        throw std::runtime_error(fmt::format(
            "replication on {} is not running after {} ms (io={} sql={}): {}", r->name,
            timeout.count(), rep.io_running ? "Yes" : "No", rep.sql_running ? "Yes" : "No",
            rep.error.empty() ? rep.last_error : rep.error));
      }
      std::this_thread::sleep_for(100ms);
    }
    // gtid_current_pos, not MASTER_GTID_WAIT: a former primary's own transactions are in
    // its binlog, never in its gtid_slave_pos, which MASTER_GTID_WAIT waits on.
    for (;;) {
      const auto have = root_sql(p, r->name, "SELECT @@GLOBAL.gtid_current_pos");
      if (gtid_covers(have, pos)) break;
      if (Clock::now() > deadline) {
        throw std::runtime_error(
            fmt::format("replica {} has not applied the primary's GTID {} within {} ms (it has {})",
                        r->name, pos, timeout.count(), have));
      }
      std::this_thread::sleep_for(50ms);  // poll interval
    }
  }
}

}  // namespace

// Automatic failover runs in this lab (render.cpp decides the same way).
bool detail::failover_on(const Topology& t, const SiteOptions& o) {
  return o.profile == render::Profile::Hardened && t.automatic_failover();
}

// mariadb-install-db for each database host whose datadir is empty, in parallel; true
// when any was.
bool detail::install_databases(const Topology& t, const StatePaths& p) {
  bool fresh_db = false;
  std::vector<std::pair<std::string, std::future<ProcessResult>>> jobs;
  for (const auto* h : t.with_role(Role::Database)) {
    if (!dir_empty_or_missing(p.datadir(h->name))) continue;
    fresh_db = true;
    // root@localhost authenticates by the unix socket's peer: only the machine's root
    // (webstack itself) is MariaDB's root, and never over the network.
    std::vector<std::string> args = {"mariadb-install-db",
                                     "--no-defaults",
                                     "--datadir=" + p.datadir(h->name),
                                     "--user=mysql",
                                     "--auth-root-authentication-method=socket",
                                     "--skip-test-db",
                                     "--tmpdir=" + p.run + "/" + h->name + "/mysql-tmp"};
    jobs.emplace_back(h->name, std::async(std::launch::async, [args] { return run(args, 120s); }));
  }
  for (auto& [host, job] : jobs) {
    const auto r = job.get();
    if (r.exit_code != 0) {
      std::error_code ec;
      fs::remove_all(p.datadir(host), ec);  // no half-made datadir for the next up
      throw std::runtime_error(fmt::format("mariadb-install-db for {} failed ({}): {}", host,
                                           r.exit_code, text::trim(r.out + r.err)));
    }
  }
  return fresh_db;
}

// The databases answer, the primary takes writes, the data is there (bootstrapped once)
// and replicated, and the accounts of the exporters and the failover manager exist.
void detail::up_databases(const Topology& t, const SiteOptions& o, const StatePaths& p,
                          bool fresh_db, StepPrinter& step) {
  for (const auto* h : t.with_role(Role::Database)) {
    step("mariadb on " + h->name + " answers", [&] { wait_db(p, h->name, o.db_timeout); });
  }
  if (failover_on(t, o)) {
    // Every node starts read-only (my.cnf): the primary takes writes once `up` (or,
    // later, the failover manager) says so.
    step("primary " + t.primary().name + " writable",
         [&] { root_sql(p, t.primary().name, "SET GLOBAL read_only = OFF"); });
  }
  if (fresh_db || !fs::exists(p.bootstrap_marker())) {
    step("bootstrap: users, schema, seed, replication", [&] {
      bootstrap(t, p, o);
      write_secret(p.bootstrap_marker(), "done\n", 0, 0, 0644);
    });
  }
  if (!t.replicas().empty()) {
    step("replication running and caught up", [&] { wait_replicas(t, p, o.db_timeout); });
  }
  if (t.monitor() != nullptr) {
    // On every up (a lab made before its topology had a monitor host gets it too).
    step("database account of the metrics exporters",
         [&] { root_sql(p, t.primary().name, kExporterAccount); });
  }
  if (failover_on(t, o)) {
    step("database account of the failover manager",
         [&] { root_sql_secret(p, t.primary().name, failover_account_sql(t, p)); });
  }
}

}  // namespace webstack::lab
