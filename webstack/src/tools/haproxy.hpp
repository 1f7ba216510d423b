// HAProxy's runtime API over its stats socket (a unix socket, admin level): what the lab
// reads (`show stat`) and changes (`set server`) on a running balancer without a reload.
#pragma once

#include <string>
#include <vector>

namespace webstack::tools {

struct LbServer {
  std::string name;              // svname
  std::string status;            // "UP", "DOWN", "MAINT", "UP 1/3", ...
  std::string check;             // check_status: "L7OK", "L4CON", ...
  long long sessions = 0;        // scur
  long long sessions_total = 0;  // stot: requests sent to it so far
};

// Sends `command` (ending in a newline) and returns everything HAProxy answers; it closes
// the connection after a non-interactive command. std::runtime_error when the socket
// cannot be reached, naming it.
std::string haproxy_command(const std::string& socket_path, const std::string& command);

// The servers of `backend` in a `show stat` CSV, in HAProxy's order.
std::vector<LbServer> parse_show_stat(const std::string& csv, const std::string& backend);
// `show stat`, parsed for `backend`.
std::vector<LbServer> haproxy_servers(const std::string& socket_path, const std::string& backend);

// `set server <backend/server> state <ready|drain|maint>`; HAProxy answers nothing when it
// accepts it, and std::runtime_error carries what it answered otherwise.
void set_server_state(const std::string& socket_path, const std::string& server,
                      const std::string& state);

}  // namespace webstack::tools
