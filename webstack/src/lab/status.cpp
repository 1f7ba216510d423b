#include "lab/status.hpp"

#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <fmt/format.h>
#include <boost/json.hpp>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>

#include "common/process.hpp"
#include "common/text.hpp"
#include "failover/sql_session.hpp"
#include "lab/network.hpp"
#include "lab/paths.hpp"
#include "lab/recorded.hpp"
#include "tools/mariadb.hpp"

namespace webstack::lab {

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using topo::Role;
using topo::Topology;

std::string first_line(const std::string& s) {
  return text::trim(s.substr(0, s.find('\n')));
}

}  // namespace

ReplicaReport replica_report(const std::string& state_dir, const std::string& host) {
  ReplicaReport r;
  r.host = host;
  const auto res = tools::MariaDbRoot(StatePaths(state_dir).mysqld_socket(host))
                       .query("SHOW SLAVE STATUS\\G", 10s, true);
  if (!res.ok) {
    r.error = fmt::format("mariadb failed ({}): {}", res.exit_code, first_line(res.err));
    return r;
  }
  const auto kv = tools::parse_vertical(res.out);
  if (kv.empty()) {
    r.error = "not a replica (SHOW SLAVE STATUS is empty)";
    return r;
  }
  auto get = [&](const char* k) {
    const auto it = kv.find(k);
    return it == kv.end() ? std::string() : it->second;
  };
  r.io_running = get("Slave_IO_Running") == "Yes";
  r.sql_running = get("Slave_SQL_Running") == "Yes";
  const auto lag = get("Seconds_Behind_Master");
  if (!lag.empty() && lag != "NULL") r.lag_s = text::to_ll(lag, -1);
  r.last_error = get("Last_Error");
  if (r.last_error.empty()) r.last_error = get("Last_IO_Error");
  return r;
}

PrimaryReport primary_report(const std::string& state_dir, const std::string& host) {
  PrimaryReport p;
  p.host = host;
  const auto res = tools::MariaDbRoot(StatePaths(state_dir).mysqld_socket(host))
                       .query(
                           "SELECT @@GLOBAL.read_only, @@GLOBAL.gtid_binlog_pos, "
                           "@@GLOBAL.rpl_semi_sync_master_enabled, " +
                               failover::global_status("RPL_SEMI_SYNC_MASTER_STATUS"),
                           10s);
  if (!res.ok) {
    p.error = fmt::format("mariadb failed ({}): {}", res.exit_code, first_line(res.err));
    return p;
  }
  const auto f = text::split(first_line(res.out), '\t');
  p.read_only = f.empty() || f[0] != "0";
  if (f.size() > 1) p.gtid_binlog_pos = f[1];
  if (f.size() > 3) p.semi_sync = f[2] != "1" ? "disabled" : f[3] == "ON" ? "on" : "off";
  return p;
}

std::vector<ServiceRef> scan_services(const std::string& state_dir) {
  const StatePaths paths(state_dir);
  const std::string hosts = paths.hosts + "/";
  std::vector<ServiceRef> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(paths.service, ec)) {
    if (e.path().filename().string().starts_with(".")) continue;
    std::error_code ec2;
    const auto target = fs::read_symlink(e.path(), ec2).string();
    if (ec2 || !target.starts_with(hosts)) continue;
    // <host>/s6/<name> or s6/<name> (the edge)
    const auto rel = target.substr(hosts.size());
    const auto s6 = rel.find("s6/");
    if (s6 == std::string::npos) continue;
    ServiceRef s;
    s.host = s6 == 0 ? "" : rel.substr(0, s6 - 1);
    s.name = rel.substr(s6 + 3);
    s.dir = e.path().string();
    out.push_back(std::move(s));
  }
  std::sort(out.begin(), out.end(),
            [](const ServiceRef& a, const ServiceRef& b) { return a.dir < b.dir; });
  return out;
}

std::vector<LbServer> lb_servers(const std::string& state_dir, const std::string& lb_host) {
  return tools::haproxy_servers(StatePaths(state_dir).haproxy_socket(lb_host), "web");
}

void require_up(const Topology& t, const std::string& state_dir) {
  if (lab_svscan_pid(state_dir) <= 0) {
    throw std::runtime_error(fmt::format(
        "lab {} is not up (no s6-svscan running for {}): `webstack up` first", t.name, state_dir));
  }
}

int lab_svscan_pid(const std::string& state_dir) {
  const auto text = text::trim(read_text_or_empty(StatePaths(state_dir).svscan_pid()));
  const int pid = static_cast<int>(text::to_ll(text, -1));
  if (!alive(pid)) return -1;
  auto cmd = read_text_or_empty(fmt::format("/proc/{}/cmdline", pid));
  std::replace(cmd.begin(), cmd.end(), '\0', ' ');
  if (cmd.find("s6-svscan") == std::string::npos ||
      cmd.find(StatePaths(state_dir).service) == std::string::npos) {
    return -1;
  }
  return pid;
}

std::vector<std::string> address_holders(const Topology& t, const std::string& address) {
  std::vector<std::string> out;
  for (const auto* lb : t.with_role(Role::LoadBalancer)) {
    const auto r = run(in_host(t, lb->name, {"ip", "-o", "-4", "addr", "show", "dev", "eth0"}), 5s);
    if (r.exit_code == 0 && r.out.find(" " + address + "/") != std::string::npos) {
      out.push_back(lb->name);
    }
  }
  return out;
}

namespace {

HostReport host_report(const Topology& t, const topo::Host& h, const std::vector<HostStatus>& net,
                       const std::vector<ServiceRef>& services) {
  HostReport hr;
  hr.name = h.name;
  hr.address = h.address;
  for (const auto& n : net) {
    if (n.host != h.name) continue;
    hr.namespace_ok = n.ns_exists && n.address_ok;
    hr.link_up = n.link_up;
  }
  for (const auto& sv : services)
    if (sv.host == h.name) hr.services.push_back(tools::service_state(sv.name, sv.dir));
  if (hr.namespace_ok) {
    const auto r = run(in_host(t, h.name, {"nft", "list", "ruleset"}), 5s);
    if (r.exit_code == 0) {
      hr.firewall = r.out;
    } else {
      hr.firewall_error = fmt::format("nft failed ({}): {}", r.exit_code, first_line(r.err));
    }
  }
  return hr;
}

// What `webstack db rebuild` saved (<state>/errant/*.sql), sorted.
std::vector<std::string> saved_errant_files(const std::string& state_dir) {
  std::vector<std::string> files;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(StatePaths(state_dir).errant(), ec)) {
    if (e.path().extension() == ".sql") files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());  // HOST-<UTC time>.sql
  return files;
}

}  // namespace

LabStatus lab_status(const Topology& topology, const std::string& state_dir) {
  const Topology t = with_current_primary(topology, state_dir);
  LabStatus s;
  s.lab = t.name;
  s.state_dir = state_dir;
  s.svscan_pid = lab_svscan_pid(state_dir);
  s.up = s.svscan_pid > 0;
  if (!s.up) return s;

  const auto services = scan_services(state_dir);
  const auto net = network_status(t);
  for (const auto& h : t.hosts) s.hosts.push_back(host_report(t, h, net, services));
  for (const auto& sv : services)
    if (sv.host.empty()) s.edge.push_back(tools::service_state(sv.name, sv.dir));

  for (const auto* lb : t.with_role(Role::LoadBalancer)) {
    LbReport r;
    r.host = lb->name;
    try {
      r.servers = lb_servers(state_dir, lb->name);
    } catch (const std::exception& e) {
      r.error = e.what();
    }
    s.load_balancers.push_back(std::move(r));
  }
  for (const auto* db : t.with_role(Role::Database)) {
    if (db->db == topo::DbRole::Primary) {
      s.primary = primary_report(state_dir, db->name);
    } else {
      s.replication.push_back(replica_report(state_dir, db->name));
    }
  }
  for (const auto& vip : t.virtual_addresses) {
    s.virtual_addresses.emplace_back(vip, address_holders(t, vip));
  }
  s.errant_files = saved_errant_files(state_dir);
  if (t.automatic_failover() &&
      std::any_of(services.begin(), services.end(),
                  [](const ServiceRef& r) { return r.name == "failover-manager"; })) {
    s.failover = true;
    try {
      s.failover_state = failover_state(t);
    } catch (const std::exception& e) {
      s.failover_error = e.what();
    }
  }
  if (t.monitor() != nullptr) {
    s.monitored = true;
    try {
      s.figures = monitoring::host_figures(t);
      s.alerts = monitoring::firing_alerts(t);
    } catch (const std::exception& e) {
      s.monitoring_error = e.what();
    }
  }
  return s;
}

std::string failover_state(const topo::Topology& t) {
  const auto* mon = t.monitor();
  if (mon == nullptr) throw std::runtime_error("the site has no monitor host");
  const auto r =
      run(in_host(t, mon->name,
                  {"curl", "-sS", "--max-time", "2", fmt::format("http://{}:9096/", mon->address)}),
          10s);
  if (r.exit_code != 0) {
    throw std::runtime_error("the failover manager on " + mon->name +
                             " does not answer: " + text::trim(r.err));
  }
  return text::trim(r.out);
}

}  // namespace webstack::lab
