// `webstack dashboard`: the lab live in a browser, and its faults on buttons. An HTTP
// server on loopback only (root namespace) serving the page (dashboard/: plain HTML, CSS
// and JavaScript, read once at start) and a small JSON API over the Hub:
//   GET  /api/state             the lab's status, the load generator, actions, events
//   GET  /api/requests?after=N  the load generator's requests as the client saw them
//   POST /api/action            a fault, a promotion, a deploy, the load generator
// Guards, since a browser runs whatever pages it is shown: a Host header other than the
// loopback name and port is refused (DNS rebinding); POST needs the token printed at
// start (X-Dashboard-Token; the page keeps it from its URL's fragment) and, when the
// browser sends an Origin, this server's own; no framing (CSP frame-ancestors, DENY).
// Beast and Asio stay in server.cpp.
#pragma once

#include <cstdint>
#include <string>

#include "topology/topology.hpp"

namespace webstack::dashboard {

struct DashboardOptions {
  std::string state_dir;      // the lab's
  std::string topology_file;  // "" : the embedded default
  std::string cli_path;       // this webstack binary (actions run it)
  std::string www_dir;        // dashboard/ (index.html, dashboard.js, dashboard.css)
  std::string bind = "127.0.0.1";
  std::uint16_t port = 8090;  // 0: any free port
  std::string token;          // "" : 32 random hex digits
};

// Serves until SIGINT or SIGTERM; prints the URL with its token first (one line on
// stdout: "dashboard: http://127.0.0.1:PORT/#token=..."). Throws std::runtime_error
// before serving when the lab is not up, the port is taken, the bind address is not a
// loopback one, or a page file is missing.
void run_dashboard(const topo::Topology& t, const DashboardOptions& o);

}  // namespace webstack::dashboard
