// One service of a running lab, by name: `webstack stop|start|restart|reload|kill|pause|resume
// HOST/SERVICE` and `webstack logs HOST/SERVICE`. Services are s6 services (lab/site.hpp);
// every command acts through s6 or on the process group s6 started, then waits (with a
// deadline) until the service is in the state asked for.
#pragma once

#include <chrono>
#include <cstdio>
#include <string>
#include <string_view>

#include "topology/topology.hpp"

namespace webstack::lab {

// "web-01/nginx" resolved against the topology and the running lab. SERVICE "app" means
// webstack-app; the edge is "edge" or "edge/edge".
struct ServiceTarget {
  std::string host;     // "web-01"; "edge" for the edge
  std::string service;  // "nginx"
  std::string dir;      // <state>/service/<host>-<service> (or <state>/service/edge)
  std::string log_dir;  // <state>/log/<host>/<service>
  std::string label() const { return host + "/" + service; }
};

// Throws std::invalid_argument naming what is wrong: not HOST/SERVICE, an unknown host
// (with the topology's hosts), a service the host does not run (with the ones it does).
ServiceTarget resolve_service(const topo::Topology& t, const std::string& state_dir,
                              std::string_view spec);

enum class ServiceAction {
  Stop,     // s6-svc -d: SIGTERM, stays down; waits until down
  Start,    // s6-svc -u; waits until up
  Restart,  // s6-svc -r: SIGTERM, s6 starts it again; waits for the new pid
  Kill,     // SIGKILL to the service's process group (a crash); waits for s6's new pid
  Pause,    // SIGSTOP to the process group (a hung service)
  Resume,   // SIGCONT to the process group
  // A new config without a restart and without dropping a connection: HAProxy (master-
  // worker: SIGUSR2, a new worker takes the listeners, the old one finishes its
  // connections; waits until the new worker answers on the stats socket), Nginx,
  // keepalived, Prometheus, Alertmanager (SIGHUP). Others: std::invalid_argument.
  Reload,
};

// Parses "stop", "start", ...; throws std::invalid_argument otherwise.
ServiceAction parse_action(std::string_view name);

// What control_service did.
struct ServiceChange {
  std::string summary;  // one line: "web-01/nginx restarted (SIGTERM) pid 12; s6 started ..."
  int old_pid = -1;     // the service's pid before (-1: it was down)
  int new_pid = -1;     // after a start, restart or kill
  std::string old_worker, new_worker;  // HAProxy's worker pids around a reload
  double ms = 0;                       // how long the action took
};

// Does `action` on the service. Throws std::runtime_error when the lab is not up, s6
// refuses, or the service does not reach the state asked for within `timeout`.
ServiceChange control_service(const topo::Topology& t, const std::string& state_dir,
                              std::string_view spec, ServiceAction action,
                              std::chrono::milliseconds timeout = std::chrono::seconds(20));

// `webstack link HOST down|up`: sets the host's network link (eth0 in its namespace) down
// or up, as a pulled cable would; prints one line. Throws std::invalid_argument for an
// unknown host or state, std::runtime_error when `ip` fails.
void set_link(const topo::Topology& t, std::string_view host, std::string_view state,
              std::FILE* out);

// The service's current log file (<log_dir>/current); throws std::runtime_error when the
// service has not logged yet.
std::string service_log_file(const topo::Topology& t, const std::string& state_dir,
                             std::string_view spec);

}  // namespace webstack::lab
