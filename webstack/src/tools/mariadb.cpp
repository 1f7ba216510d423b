#include "tools/mariadb.hpp"

#include <fmt/format.h>

#include <sstream>
#include <stdexcept>
#include <string_view>
#include <vector>

#include "common/process.hpp"
#include "common/text.hpp"

namespace webstack::tools {

namespace {

std::vector<std::string> client_argv(const std::string& socket) {
  return {"mariadb",
          "--no-defaults",
          "--socket=" + socket,
          "-uroot",
          "--protocol=SOCKET",
          "--connect-timeout=3",
          "--batch",
          "--default-character-set=utf8mb4"};
}

SqlResult result_of(const ProcessResult& r) {
  return {r.exit_code == 0, r.exit_code, text::trim(r.out), text::trim(r.err)};
}

}  // namespace

SqlResult MariaDbRoot::query(const std::string& sql, std::chrono::milliseconds timeout,
                             bool named) const {
  auto argv = client_argv(socket_);
  if (!named) argv.emplace_back("--skip-column-names");
  argv.insert(argv.end(), {"-e", sql});
  return result_of(run(argv, timeout));
}

std::string MariaDbRoot::query_checked(const std::string& what, const std::string& sql,
                                       std::chrono::milliseconds timeout, bool named) const {
  auto r = query(sql, timeout, named);
  if (!r.ok) throw std::runtime_error(fmt::format("{}: {}: {}", what, sql.substr(0, 80), r.err));
  return std::move(r.out);
}

SqlResult MariaDbRoot::script(const std::string& sql, std::chrono::milliseconds timeout) const {
  return result_of(
      run(client_argv(socket_), RunOptions{.timeout = timeout, .input = sql, .env = {}}));
}

std::string mariadb_errors(const std::string& err) {
  std::string out;
  std::istringstream lines(err);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("ERROR", 0) != 0) continue;
    // A syntax error quotes the statement from where it failed on ("... near '...'").
    if (const auto near = line.find(" near '"); near != std::string::npos) line.erase(near);
    if (!out.empty()) out += "; ";
    out += line;
  }
  if (!out.empty()) return out;
  // No client error (the shell's, say): its first line, unless it is a statement.
  const std::string first = text::trim(err.substr(0, err.find('\n')));
  const bool statement = first.find("PASSWORD") != std::string::npos ||
                         first.find("IDENTIFIED") != std::string::npos ||
                         first.rfind("---", 0) == 0;
  return first.empty() || statement ? "(no error message)" : first;
}

std::map<std::string, std::string> parse_vertical(const std::string& out) {
  std::map<std::string, std::string> kv;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with("***")) continue;
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    kv[text::trim(line.substr(0, colon))] = text::trim(line.substr(colon + 1));
  }
  return kv;
}

std::string change_master_sql(const std::string& primary_address, int port,
                              const std::string& repl_password, const std::string& ca_file,
                              std::string_view gtid_mode) {
  return fmt::format(
      "CHANGE MASTER TO MASTER_HOST='{}', MASTER_PORT={}, MASTER_USER='repl', "
      "MASTER_PASSWORD='{}', MASTER_USE_GTID={}, MASTER_CONNECT_RETRY=1{}",
      primary_address, port, repl_password, gtid_mode,
      ca_file.empty() ? std::string()
                      : fmt::format(", MASTER_SSL=1, MASTER_SSL_CA='{}', "
                                    "MASTER_SSL_VERIFY_SERVER_CERT=1",
                                    ca_file));
}

}  // namespace webstack::tools
