// The database ceiling of `webstack bench` (see bench/sysbench.hpp): sysbench's account,
// table and options file, and its point-select run against the replica.
#include "bench/sysbench.hpp"

#include <sys/stat.h>

#include <fmt/format.h>

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "common/process.hpp"
#include "common/text.hpp"
#include "lab/network.hpp"
#include "lab/paths.hpp"
#include "tools/mariadb.hpp"

namespace webstack::bench {

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using topo::Role;

std::string random_password() {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  std::random_device rd;
  std::uniform_int_distribution<std::size_t> pick(0, sizeof kAlphabet - 2);
  std::string s;
  for (int i = 0; i < 24; ++i) s += kAlphabet[pick(rd)];
  return s;
}

// A file only root reads (secrets: passwords for sysbench's account and its options).
void write_private(const std::string& path, const std::string& content) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    ::chmod(tmp.c_str(), 0600);
    out << content;
  }
  fs::rename(tmp, path);
}

std::string mysql_root(const std::string& state, const std::string& host, const std::string& sql) {
  return tools::MariaDbRoot(lab::StatePaths(state).mysqld_socket(host))
      .query_checked(host, sql, 60s);
}

}  // namespace

// The database ceiling's account, table and options file (made once, kept).
std::string detail::prepare_sysbench(const topo::Topology& t, const std::string& state) {
  std::string cfg = lab::StatePaths(state).secret("sysbench.cfg");
  const auto& primary = t.primary();
  if (!fs::exists(cfg)) {
    const std::string pw = random_password();
    const auto r =
        tools::MariaDbRoot(lab::StatePaths(state).mysqld_socket(primary.name))
            .script(fmt::format("CREATE DATABASE IF NOT EXISTS sbtest;\n"
                                "CREATE USER IF NOT EXISTS 'sbtest'@'%' IDENTIFIED BY '{0}';\n"
                                "ALTER USER 'sbtest'@'%' IDENTIFIED BY '{0}';\n"
                                "GRANT ALL PRIVILEGES ON sbtest.* TO 'sbtest'@'%';\n",
                                pw),
                    60s);
    if (!r.ok) throw std::runtime_error("sysbench account: " + tools::mariadb_errors(r.err));
    write_private(cfg, fmt::format("db-driver=mysql\nmysql-user=sbtest\nmysql-password={}\n"
                                   "mysql-db=sbtest\nmysql-port={}\ntables=1\ntable-size=10000\n",
                                   pw, t.db_port));
  }
  const auto have = text::trim(
      mysql_root(state, primary.name,
                 "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'sbtest' AND "
                 "table_name = 'sbtest1'"));
  if (have != "1") {
    // From the primary's own host (its firewall lets a database host reach 3306).
    run_checked(lab::in_host(t, primary.name,
                             {"sysbench", "--config-file=" + cfg, "--mysql-host=" + primary.address,
                              "oltp_point_select", "prepare"}),
                120s);
  }
  // The replica has it all before it is measured.
  const auto pos = text::trim(mysql_root(state, primary.name, "SELECT @@GLOBAL.gtid_binlog_pos"));
  for (const auto* r : t.replicas()) {
    const auto res = text::trim(
        mysql_root(state, r->name, fmt::format("SELECT MASTER_GTID_WAIT('{}', 60)", pos)));
    if (res != "0")
      throw std::runtime_error("replica " + r->name + " did not catch up with sbtest");
  }
  return cfg;
}

// sysbench point-select against the first replica (else the primary) from a web host.
WrkResult detail::run_sysbench(const topo::Topology& t, const std::string& cfg, const Options& o) {
  const auto replicas = t.replicas();
  const auto& target = replicas.empty() ? t.primary() : *replicas.front();
  const topo::Host* from = nullptr;
  for (const auto* w : t.with_role(Role::Web))
    if (w->name != target.name && from == nullptr) from = w;
  if (from == nullptr) from = t.with_role(Role::Web).front();
  const auto r =
      run(lab::in_host(t, from->name,
                       {"sysbench", "--config-file=" + cfg, "--mysql-host=" + target.address,
                        fmt::format("--threads={}", o.connections),
                        fmt::format("--time={}", o.duration.count()), "--percentile=99",
                        "--histogram=on", "oltp_point_select", "run"}),
          o.duration + 60s);
  if (r.exit_code != 0) {
    throw std::runtime_error("sysbench run failed: " + text::trim(r.err + r.out).substr(0, 500));
  }
  WrkResult w;
  std::smatch m;
  if (std::regex_search(r.out, m, std::regex(R"(queries:\s+(\d+)\s+\((\d+(?:\.\d+)?) per sec)"))) {
    w.requests = std::stoll(m[1]);
    w.requests_per_s = std::stod(m[2]);
  }
  if (std::regex_search(r.out, m, std::regex(R"(99th percentile:\s+(\d+(?:\.\d+)?))"))) {
    w.p99_ms = std::stod(m[1]);
  }
  if (std::regex_search(r.out, m, std::regex(R"(ignored errors:\s+(\d+))"))) {
    w.socket_errors = std::stoll(m[1]);
  }
  // p50 from the histogram ("value |*** count" lines, increasing values).
  std::vector<std::pair<double, long long>> hist;
  std::istringstream lines(r.out.substr(r.out.find("Latency histogram") == std::string::npos
                                            ? r.out.size()
                                            : r.out.find("Latency histogram")));
  long long total = 0;
  for (std::string line; std::getline(lines, line);) {
    if (std::regex_match(line, m, std::regex(R"(\s*(\d+(?:\.\d+)?)\s*\|\**\s+(\d+)\s*)"))) {
      hist.emplace_back(std::stod(m[1]), std::stoll(m[2]));
      total += std::stoll(m[2]);
    }
  }
  long long seen = 0;
  for (const auto& [value, count] : hist) {
    seen += count;
    if (seen * 2 >= total) {
      w.p50_ms = value;
      break;
    }
  }
  return w;
}

}  // namespace webstack::bench
