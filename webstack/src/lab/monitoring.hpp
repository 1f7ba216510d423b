// The lab's monitoring as `webstack` reads it: the monitor host's Prometheus (scrape
// targets, queries) and Alertmanager (the alerts that fire). Both are asked from inside
// the monitor host's namespace with curl: their APIs are not exposed beyond the edge, and
// no lab traffic leaves the root namespace.
#pragma once

#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "topology/topology.hpp"

namespace webstack::lab::monitoring {

struct ScrapeTarget {
  std::string job;     // "haproxy", "webstack-app", "node" ...
  std::string host;    // the topology's host name (the target's `host` label)
  std::string url;     // what Prometheus fetches
  std::string health;  // "up", "down", "unknown"
  std::string error;   // the last scrape's error, "" when up
};

struct Alert {
  std::string name;      // alertname
  std::string host;      // the `host` label ("" when the alert has none)
  std::string severity;  // "warning", "critical"
  std::string summary;   // annotation
  std::string since;     // startsAt, RFC 3339
  std::map<std::string, std::string> labels;
};

// A host's headline figures, from Prometheus; a figure that has no series is absent
// (negative). Rates are per second over the last 10 s in the lab.
struct HostFigures {
  double requests_per_s = -1;  // web: webstack-app; lb: HAProxy's site frontend
  double errors_5xx_per_s = -1;
  double p99_s = -1;              // web: webstack-app's 99th percentile latency
  double p50_s = -1;              // web: its median
  double replication_lag_s = -1;  // replica: Seconds_Behind_Master
  int alerts = 0;                 // firing alerts with this host's label
};

// Throw std::runtime_error when the lab has no monitor host or its server does not
// answer (the message names the host and what failed).
std::vector<ScrapeTarget> scrape_targets(const topo::Topology& t);
std::vector<Alert> firing_alerts(const topo::Topology& t);
// An instant query: every series' value by its `host` label ("" without one).
std::map<std::string, double> query_by_host(const topo::Topology& t, const std::string& promql);
std::map<std::string, HostFigures> host_figures(const topo::Topology& t);

// `webstack alerts --json`: an array of objects, each alert's labels plus summary, since.
std::string alerts_json(const std::vector<Alert>& alerts);
// `webstack alerts`: one line per firing alert (or "no alerts firing").
void print_alerts(const std::vector<Alert>& alerts, std::FILE* out);

}  // namespace webstack::lab::monitoring
