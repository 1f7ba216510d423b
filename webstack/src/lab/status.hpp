// What a running lab looks like right now (`webstack status`): whether its s6-svscan is
// alive, each host's namespace and address (lab/network.hpp), each supervised service per
// s6-svstat, each load balancer's `web` backend per its HAProxy stats socket
// (run/<host>/haproxy.sock, "show stat"), and the databases' replication state (mariadb
// on run/<host>/mysqld.sock). Nothing is changed; a piece that cannot be read is reported
// with an error, never thrown.
#pragma once

#include <cstdio>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "lab/monitoring.hpp"
#include "tools/haproxy.hpp"
#include "tools/s6.hpp"
#include "topology/topology.hpp"

namespace webstack::lab {

using tools::LbServer;
using tools::ServiceState;

struct HostReport {
  std::string name;
  std::string address;
  bool namespace_ok = false;  // the namespace exists and eth0 holds the address
  bool link_up = false;       // eth0 up (`webstack link HOST down` takes it down)
  std::vector<ServiceState> services;
  std::string firewall;        // `nft list ruleset` in the host's namespace ("": none)
  std::string firewall_error;  // nft could not be asked
};

// "input drop, output drop" from a ruleset's base chains ("none" for an empty ruleset).
std::string firewall_summary(const std::string& ruleset);

struct LbReport {
  std::string host;
  std::vector<LbServer> servers;  // backend `web`, in HAProxy's order
  std::string error;              // "" when the stats socket answered
};

struct ReplicaReport {
  std::string host;
  bool io_running = false;
  bool sql_running = false;
  std::optional<long long> lag_s;  // Seconds_Behind_Master; empty when NULL
  std::string last_error;
  std::string error;  // "" when mariadb answered
};

struct PrimaryReport {
  std::string host;
  bool read_only = true;
  std::string gtid_binlog_pos;
  // "on" (commits wait for a replica's acknowledgement), "off" (enabled but fallen back
  // to asynchronous), "disabled" (asynchronous by configuration).
  std::string semi_sync;
  std::string error;
};

struct LabStatus {
  std::string lab;
  std::string state_dir;
  bool up = false;  // s6-svscan alive per run/s6-svscan.pid
  int svscan_pid = -1;
  std::vector<HostReport> hosts;   // topology order
  std::vector<ServiceState> edge;  // the edge's services (root namespace)
  std::vector<LbReport> load_balancers;
  std::optional<PrimaryReport> primary;
  std::vector<ReplicaReport> replication;
  // Each of the site's virtual addresses and the load balancer(s) holding it now.
  std::vector<std::pair<std::string, std::vector<std::string>>> virtual_addresses;
  // From the monitor host's Prometheus and Alertmanager, when the topology has one.
  bool monitored = false;
  std::string monitoring_error;                            // they did not answer
  std::map<std::string, monitoring::HostFigures> figures;  // by host name
  std::vector<monitoring::Alert> alerts;                   // firing
  // The failover manager's state (its JSON), when failover is automatic.
  bool failover = false;
  std::string failover_state, failover_error;
  // <state>/errant/*.sql: what `webstack db rebuild` saved of nodes that diverged (the
  // transactions the primary never had), oldest first, for someone to look at.
  std::vector<std::string> errant_files;
};

// SHOW SLAVE STATUS of database host `host`, and the primary's read_only and
// gtid_binlog_pos, as root over the host's socket (run/<host>/mysqld.sock); a server that
// does not answer is reported in `error`.
ReplicaReport replica_report(const std::string& state_dir, const std::string& host);
PrimaryReport primary_report(const std::string& state_dir, const std::string& host);

// The servers of backend `web` of load balancer `lb_host`, read from its stats socket now
// (run/<lb_host>/haproxy.sock). Throws std::runtime_error when the socket does not answer.
std::vector<LbServer> lb_servers(const std::string& state_dir, const std::string& lb_host);

// The lab's s6-svscan per <state_dir>/run/s6-svscan.pid (alive, not a zombie, and its
// command line names <state_dir>/service), or -1.
int lab_svscan_pid(const std::string& state_dir);

// The failover manager's state (its JSON), asked from the monitor host. Throws
// std::runtime_error when the site has no monitor host or the manager does not answer.
std::string failover_state(const topo::Topology& t);
// Throws std::runtime_error "lab NAME is not up (...): `webstack up` first" unless
// lab_svscan_pid finds the lab's s6-svscan: the guard of every command that needs a lab.
void require_up(const topo::Topology& t, const std::string& state_dir);

// The load balancers that hold `address` on eth0 now (one, unless VRRP is split).
std::vector<std::string> address_holders(const topo::Topology& t, const std::string& address);

// Everything above. When the lab is down only `lab`, `state_dir` and `up` are filled.
LabStatus lab_status(const topo::Topology& t, const std::string& state_dir);

// The status as one JSON object (Boost.JSON):
// {"lab","up","state_dir","hosts":[{"name","address","namespace_ok","services":[{"name","up",
// "pid","uptime_s","user","paused"}],"firewall"}],"edge":{"services":[...]},"load_balancers":[{"host","servers":[{"name",
// "status","check","sessions"}]}],"primary":{...},"replication":[{"host","io_running",
// "sql_running","lag_s","last_error"}]}
// With `rulesets` false, each host's "firewall" (its full nft ruleset) is left out.
std::string to_json(const LabStatus& s, bool rulesets = true);

// A compact table; with `rulesets`, each host's firewall in full after it.
void print_status(const LabStatus& s, std::FILE* out, bool rulesets = false);

// The service table `up` prints after bringing the lab up: per host its address, namespace and
// each service's s6-svstat line; `services` are (host, name, dir) with host "" for the edge.
struct ServiceRef {
  std::string host;
  std::string name;
  std::string dir;
};
void print_services(const topo::Topology& t, const std::vector<ServiceRef>& services,
                    std::FILE* out);

// The lab's services as found in <state_dir>/service (each entry a symlink to
// <state_dir>/hosts/<host>/s6/<name>, or hosts/s6/<name> for the edge).
std::vector<ServiceRef> scan_services(const std::string& state_dir);

}  // namespace webstack::lab
