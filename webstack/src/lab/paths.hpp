// The layout of a lab's state directory (default /var/lib/webstack/<lab>), in one place:
// every part of the lab, the dashboard and the tests name a file through this type.
//
//   hosts/<host>/...      the rendered configs and s6 service dirs (hosts/s6/edge, hosts/edge)
//   service/<host>-<svc>  the scan directory: one symlink per service dir ("edge" for the edge)
//   run/<host>/ data/<host>/   sockets and pids, MariaDB datadirs
//   log/<host>/<service>/ each service's s6-log (current + rotated), log/edge/edge/ the edge's
//   run/s6-svscan.pid     the lab's s6-svscan; log/s6-svscan.log its own output
//   secrets/              db-app-password, db-probe-password (root:www-data 0640: the app
//                         reads them), db-repl-password, haproxy-stats-password (0600)
//   data/bootstrap-done   the databases were bootstrapped (users, schema, seed, replication)
//   profile, peers        what the lab was made with (fixed until purge)
//   primary               the database primary's name, after a promotion
//   tls/, secrets/tls/, data/<db>/tls/   certificates and keys (lab/tls.hpp), hardened only
#pragma once

#include <string>

namespace webstack::lab {

struct StatePaths {
  explicit StatePaths(std::string state_dir)
      : state(std::move(state_dir)),
        hosts(state + "/hosts"),
        service(state + "/service"),
        run(state + "/run"),
        log(state + "/log"),
        data(state + "/data"),
        secrets(state + "/secrets") {}

  std::string state;
  std::string hosts, service, run, log, data, secrets;

  // Files of the whole lab.
  std::string svscan_pid() const { return run + "/s6-svscan.pid"; }
  std::string svscan_log() const { return log + "/s6-svscan.log"; }
  std::string bootstrap_marker() const { return data + "/bootstrap-done"; }
  std::string profile() const { return state + "/profile"; }
  std::string peers() const { return state + "/peers"; }
  std::string primary() const { return state + "/primary"; }
  std::string errant() const { return state + "/errant"; }
  std::string failover_paused() const { return state + "/failover-paused"; }
  std::string async_gtid() const { return state + "/async-gtid"; }
  std::string secret(const std::string& name) const { return secrets + "/" + name; }
  std::string app_password() const { return secret("db-app-password"); }
  std::string repl_password() const { return secret("db-repl-password"); }
  std::string probe_password() const { return secret("db-probe-password"); }
  std::string stats_password() const { return secret("haproxy-stats-password"); }
  std::string failover_password() const { return secret("db-failover-password"); }

  // Files of one host.
  std::string host_dir(const std::string& host) const { return hosts + "/" + host; }
  std::string run_dir(const std::string& host) const { return run + "/" + host; }
  std::string data_dir(const std::string& host) const { return data + "/" + host; }
  std::string log_dir(const std::string& host, const std::string& service_name) const {
    return log + "/" + host + "/" + service_name;
  }
  std::string my_cnf(const std::string& host) const { return host_dir(host) + "/mariadb/my.cnf"; }
  std::string datadir(const std::string& host) const { return data_dir(host) + "/mysql"; }
  std::string mysqld_socket(const std::string& host) const {
    return run_dir(host) + "/mysqld.sock";
  }
  std::string haproxy_socket(const std::string& host) const {
    return run_dir(host) + "/haproxy.sock";
  }
  std::string service_link(const std::string& host, const std::string& service_name) const {
    return service + "/" + host + "-" + service_name;
  }
};

}  // namespace webstack::lab
