// The command line's parts: what every command shares (Context), and one function per
// command group that adds its commands to the CLI and says how each runs. main.cpp only
// assembles them.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

#include "lab/site.hpp"
#include "topology/topology.hpp"

namespace webstack::cli {

// Options every command shares, and where the lab's pieces are (an option, else the
// environment, else this build's source tree): resolved here, once.
struct Context {
  std::string file;       // -f: the topology file ("": the embedded default)
  std::string state_dir;  // --state-dir ("": /var/lib/webstack/<lab>)
  std::string templates_dir, www_dir, app_binary;  // --templates, --www, --app-binary
  std::vector<std::string> peers;                  // --peers
  std::string profile;                             // --profile

  topo::Topology topology() const;
  // The lab's state directory.
  std::string lab_dir(const topo::Topology& t) const;
  std::string templates() const;
  std::string www() const;
  std::string source_path(const char* env, const std::string& relative) const;
  // Every piece a lab operation needs, for the state directory `lab_state`.
  lab::SiteOptions site_options(const std::string& lab_state) const;
  // --peers, each checked.
  std::vector<std::string> checked_peers() const;
};

std::string absolute(const std::string& p);
// An explicit option, else the environment variable, else `built_in`.
std::string resource(const std::string& option, const char* env, const std::string& built_in);

inline constexpr const char* kFileHelp = "Topology file (default: the embedded seed site)";
inline constexpr const char* kStateDirHelp = "State directory (default: /var/lib/webstack/<lab>)";
inline constexpr const char* kProfileHelp =
    "hardened (default: HTTPS, firewalls, replication over TLS) or seed (the seed's design: "
    "plain HTTP, no firewall)";
inline constexpr const char* kPeersHelp =
    "Benchmark peers every web host runs beside its app, served as <kind>.bench: webstack, "
    "php, node (comma-separated)";
// -f and --state-dir, as most commands take them.
void add_lab_options(CLI::App* cmd, Context& ctx, const char* state_dir_help = kStateDirHelp);

// A command: its CLI node and what it does once parsed (the topology loaded first,
// unless it needs none). Returns the exit status.
struct Command {
  CLI::App* app = nullptr;
  std::function<int(const topo::Topology&)> run;
  bool needs_topology = true;
};
using Commands = std::vector<Command>;

// init, validate, render
void add_topology_commands(CLI::App& cli, Context& ctx, Commands& out);
// up, down, status, exec, link, cert, logs, alerts, and the service controls (stop,
// start, restart, kill, pause, resume, reload)
void add_lab_commands(CLI::App& cli, Context& ctx, Commands& out);
// deploy: the lab's rolling restart, or --target hosts (Ansible on real servers)
void add_deploy_command(CLI::App& cli, Context& ctx, Commands& out);
// db promote|rejoin|rebuild, failover pause|resume|status
void add_database_commands(CLI::App& cli, Context& ctx, Commands& out);
// machines up|down|ssh
void add_machines_commands(CLI::App& cli, Context& ctx, Commands& out);
// dashboard, bench
void add_tool_commands(CLI::App& cli, Context& ctx, Commands& out);

}  // namespace webstack::cli
