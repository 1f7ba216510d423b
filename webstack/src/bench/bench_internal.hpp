// Private to `webstack bench`: what bench.cpp (the lab, the runs) and report.cpp (the
// medians, the table and the report's files) share.
#pragma once

#include <cstdio>
#include <string>
#include <vector>

#include "bench/bench.hpp"

namespace webstack::bench::detail {

// One run's figures: wrk's for a test and an app in a round.
struct Sample {
  std::string test, app;  // app "sysbench" for the database ceiling
  int round = 0;
  WrkResult r;
};

// How the runs were made, as the report tells it.
struct RunSetup {
  std::string dir;               // the report directory
  std::string base;              // the site as the client host reaches it, http(s)://<lb>:<port>
  bool tls = false;              // HTTPS
  bool with_db_ceiling = false;  // sysbench ran beside test "db"
  std::string app_binary;        // webstack-app, for its version
};

// bench.cpp
// The time now (UTC) in strftime's `format`.
std::string now_utc(const char* format);

// report.cpp
// Prints the table of medians (webstack-app's against each other server's, and keyed
// against plain writes) on `out`, and writes results.csv, chart.dat, chart.gp, chart.png
// (gnuplot) and report.md into the report directory.
void report(const Options& o, const RunSetup& run, const std::vector<Sample>& samples,
            std::FILE* out);

}  // namespace webstack::bench::detail
