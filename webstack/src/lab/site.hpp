// The whole lab on this machine: the network (lab/network.hpp), the rendered configs, one
// s6-svscan supervising every service, the databases bootstrapped once (users, schema,
// seed, GTID replication), and the site checked from the client host.
//
// The state directory's layout (default /var/lib/webstack/<lab>): lab/paths.hpp.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lab/recorded.hpp"
#include "render/render.hpp"
#include "topology/topology.hpp"

namespace webstack::lab {

struct SiteOptions {
  render::Profile profile = render::Profile::Hardened;  // up: what to build (see render.hpp)
  std::vector<std::string> peers;  // up: benchmark peers beside each web host's app
  std::string peers_dir;           // bench/peers
  std::string state_dir;           // absolute
  std::string templates_dir;       // the repository's templates/
  std::string www_dir;             // static files
  std::string app_binary;          // webstack-app
  std::string failover_binary;     // webstack-failover
  std::string cli_binary;          // this webstack: the failover manager's `db rebuild` ("": none)
  std::string topology_file;       // the topology's file, absolute ("": the built-in one)
  std::string sql_dir;             // schema.sql, seed.sql, users.sql.in
  std::chrono::milliseconds db_timeout{60000};    // each database answers / replica catches up
  std::chrono::milliseconds site_timeout{60000};  // the site answers through the lb
};

// Brings the lab up (see the file comment); prints each step and a summary on stdout.
// Already up: says so and returns. On failure tears down what it started (processes and
// namespaces; the state directory stays) and throws std::runtime_error.
void site_up(const topo::Topology& t, const SiteOptions& o);

// Stops every process of the lab (s6-svscan, supervisors, services; found by the pid file,
// by their command line or working directory under the state dir, and by the lab's
// namespaces), deletes the namespaces, removes pid files and sockets; `purge` also removes
// the state directory. Works after a crash of webstack or s6. Throws std::runtime_error if
// something could not be stopped or removed.
void site_down(const topo::Topology& t, const SiteOptions& o, bool purge);

// Renders the database hosts' my.cnf again from the roles as they are now (after a
// promotion): a restarted former primary then comes back read-only, never writable.
void rerender_database_configs(const topo::Topology& t, const SiteOptions& o);

// Runs argv inside the host's namespace with this process's stdio (exec: does not return
// on success). Throws std::invalid_argument for an unknown host, std::runtime_error when
// the exec fails.
[[noreturn]] void exec_in_host(const topo::Topology& t, std::string_view host,
                               const std::vector<std::string>& argv);

// Pids of the lab's processes still alive (for checks and tests).
std::vector<int> site_processes(const topo::Topology& t, const std::string& state_dir);

}  // namespace webstack::lab
