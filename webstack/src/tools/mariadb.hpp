// MariaDB as root over a server's unix socket, through the `mariadb` client: what the lab
// does to its database hosts (bootstrap, promotion, rebuild, status). No network: it works
// while the host's link is down. SQL holding a secret goes through stdin, never a command
// line where `ps` would show it.
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <string_view>

namespace webstack::tools {

struct SqlResult {
  bool ok = false;
  int exit_code = -1;
  std::string out;  // trimmed
  std::string err;  // trimmed
};

class MariaDbRoot {
 public:
  explicit MariaDbRoot(std::string socket_path) : socket_(std::move(socket_path)) {}

  // One statement (or several, `;`-separated) on the command line: no secrets. Values
  // only, unless `named`: a statement ending in \G then gives "Name: value" lines
  // (--skip-column-names would drop the names from vertical output too).
  SqlResult query(const std::string& sql, std::chrono::milliseconds timeout,
                  bool named = false) const;
  // query(), and on failure std::runtime_error "<what>: <first 80 chars>: <error>".
  std::string query_checked(const std::string& what, const std::string& sql,
                            std::chrono::milliseconds timeout, bool named = false) const;
  // A script on stdin (a file's content, or statements holding a password).
  SqlResult script(const std::string& sql, std::chrono::milliseconds timeout) const;

  const std::string& socket() const { return socket_; }

 private:
  std::string socket_;
};

// The mariadb client's ERROR lines of `err` only, each cut before the statement it quotes
// ("near '...'"): a statement read from stdin that fails is echoed whole between dashes,
// and it may hold a password (CHANGE MASTER, CREATE USER). Without one, the first line
// unless that is a statement.
std::string mariadb_errors(const std::string& err);

// CHANGE MASTER ... MASTER_USE_GTID=<gtid_mode> to `primary_address`, over TLS verified
// with `ca_file` when it is not empty (the hardened profile's REQUIRE SSL account).
std::string change_master_sql(const std::string& primary_address, int port,
                              const std::string& repl_password, const std::string& ca_file,
                              std::string_view gtid_mode);

// "Name: value" lines of a vertical (\G) result.
std::map<std::string, std::string> parse_vertical(const std::string& out);

}  // namespace webstack::tools
