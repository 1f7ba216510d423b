// s6, the lab's supervisor: a service's state (s6-svstat) and commands to it (s6-svc).
#pragma once

#include <string>

namespace webstack::tools {

// One supervised service per `s6-svstat <dir>`.
struct ServiceState {
  std::string name;    // "nginx", ...
  bool known = false;  // s6-svstat answered
  bool up = false;
  int pid = -1;            // -1 when down or unknown
  long long seconds = -1;  // time in the current state (uptime when up)
  std::string text;        // s6-svstat's line, or "unknown: <error>"
  std::string user;        // the process's effective user ("www-data"), "" when down
  bool paused = false;     // up but stopped by SIGSTOP (`webstack pause`)
};

// Runs `s6-svstat dir` once and parses "up (pid 123) 45 seconds" / "down (exitcode 0) 3
// seconds, normally up"; the user and the paused state come from /proc/<pid>.
ServiceState service_state(const std::string& name, const std::string& dir);

// Parses one line of plain s6-svstat output into `st` (up, pid, seconds).
void parse_svstat(const std::string& line, ServiceState& st);

// `s6-svc <flag> <dir>` ("-u" up, "-d" down, "-r" restart, ...); std::runtime_error naming
// the service dir and s6's error when it refuses.
void s6_svc(const std::string& dir, const char* flag);

}  // namespace webstack::tools
