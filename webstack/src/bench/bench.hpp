// `webstack bench`: the stack against its peers and ceilings, side by side in one run.
// wrk runs on the client host through the load balancer (HTTPS in the hardened profile,
// the same path a user's request takes); each application server is picked by name on
// the web hosts' Nginx (Host: <app>.bench, see templates/nginx), so every app sits behind
// the same HAProxy, TLS and Nginx, and runs are interleaved (round 1: A, B, C; round 2:
// A, B, C ...) so that the machine's drift hits all of them alike. The ceilings: Nginx's
// `return 200` through the same path (nginx.bench), and sysbench oltp_point_select
// against the replica from a web host at the same concurrency.
#pragma once

#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "lab/site.hpp"
#include "topology/topology.hpp"

namespace webstack::bench {

// One wrk run, as wrk --latency prints it.
struct WrkResult {
  double requests_per_s = 0;
  double p50_ms = 0, p99_ms = 0;
  long long requests = 0;
  long long non_2xx = 0;        // "Non-2xx or 3xx responses"
  long long socket_errors = 0;  // connect + read + write + timeout
};
// Parses wrk's output; std::runtime_error when "Requests/sec" is missing.
WrkResult parse_wrk(const std::string& out);

// Median of `v` (the mean of the middle two for an even count); 0 for none.
double median(std::vector<double> v);

struct Options {
  std::vector<std::string> apps = {"webstack", "php", "node"};
  std::vector<std::string> tests = {"plaintext", "json", "db", "queries", "fortunes", "updates"};
  std::chrono::seconds duration{10};
  int connections = 64;
  int threads = 2;
  int rounds = 3;
  bool ceilings = true;  // nginx return 200, sysbench point-select
  std::string out_dir;   // report directory; default <state>/bench/<UTC time>
};

// The URL path of a test ("queries" -> "/queries?queries=20"); throws
// std::invalid_argument naming the known tests.
std::string test_path(const std::string& test);

// Brings the lab up with the apps as peers when it is down (refuses when it is up without
// them), runs everything, prints the table, writes report.md, results.csv and chart.png
// (gnuplot) into the report directory. Returns that directory.
std::string run_bench(const topo::Topology& t, lab::SiteOptions site, const Options& o,
                      std::FILE* out);

// `webstack bench --lab`: cold up (new data), warm up (after down, data kept), down, and
// down --purge of a throwaway copy of the topology (its own name, subnet, state, edge
// port), `rounds` times; prints medians.
void run_lab_bench(const topo::Topology& t, const lab::SiteOptions& site, int rounds,
                   std::FILE* out);

}  // namespace webstack::bench
