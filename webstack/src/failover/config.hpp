// The failover manager's and agent's config files (TOML, rendered by `webstack` from
// templates/failover/): what they watch, how often, and how long before they act.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace webstack::failover {

struct DbNode {
  std::string name, address;
  int port = 3306;
};

struct AppEndpoint {
  std::string name, url;  // url: the web host's /api/info through its Nginx
};

struct ManagerConfig {
  std::string listen;  // the manager's own address: its vote for the agents, and its state
  int port = 9096;
  std::chrono::milliseconds interval{250};
  std::chrono::milliseconds failover_after{3000};
  std::chrono::milliseconds timeout{1000};  // per question to a node or an app
  std::string user = "webstack_failover";
  std::string password_file, repl_password_file, ssl_ca;
  std::string primary;       // the site's primary when the config was rendered
  std::string primary_file;  // where the current primary's name is kept ("": nowhere)
  std::string pause_file;    // while it exists, no promotion
  // The primary's lease (failover/lease.hpp): after deposing a primary, the manager waits
  // this long plus one interval before it promotes another node.
  std::chrono::milliseconds lease{1000};
  int agent_port = 9097;  // each database host's fencing agent, on the node's address
  // The command that rebuilds a diverged node from the primary ("{host}" is the node's
  // name), run by the manager in the background; empty: nobody rebuilds it automatically
  // (real servers: docs/high-availability.md says how by hand).
  std::vector<std::string> rebuild_command;
  std::string rebuild_lock;  // the command's lock file ("{host}": the node), tested, never taken
  std::string errant_dir;    // where rebuilds save the transactions they discard ("": none)
  std::vector<DbNode> db;
  std::vector<AppEndpoint> apps;
};

struct AgentConfig {
  std::string host;
  std::string listen;  // this host's address: the other agents and the manager ask here
  int port = 9097;
  std::string socket, pid_file;  // the local MariaDB
  int db_port = 3306;            // the port the gate opens and closes
  bool gate = true;              // false: no nftables gate (the lease is then advisory)
  std::chrono::milliseconds interval{250};
  std::chrono::milliseconds lease{1000};
  std::chrono::milliseconds timeout{250};  // per question to a voter
  // Commits waiting this long for a replica: semi-sync off, while holding the lease.
  std::chrono::milliseconds semi_sync_fallback{3000};
  DbNode manager;             // the failover manager's state port
  std::vector<DbNode> peers;  // the other database hosts' agents
};

// Throw std::runtime_error "FILE: KEY: WHY" on a missing or malformed key.
ManagerConfig load_manager_config(const std::string& path);
AgentConfig load_agent_config(const std::string& path);

}  // namespace webstack::failover
