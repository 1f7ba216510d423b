// A blocking MariaDB session (libmariadb) with short timeouts, for the failover manager
// and agent: they ask a few questions per round and must never hang on a dead node.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

struct st_mysql;

namespace webstack::failover {

// "(SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME =
// 'NAME')": one status variable as a subquery (NAME upper case, e.g.
// RPL_SEMI_SYNC_MASTER_STATUS), for a statement that asks several things at once.
std::string global_status(const std::string& name);

struct Endpoint {
  std::string address;  // TCP; empty: `socket`
  int port = 3306;
  std::string socket;
  std::string user;
  std::string password;
  std::string ssl_ca;  // TCP over TLS, the server's certificate verified against it
  std::chrono::milliseconds timeout{1000};  // connect, read and write
};

using Row = std::map<std::string, std::string>;  // column name -> value ("" for NULL)

class SqlSession {
 public:
  explicit SqlSession(Endpoint e);
  ~SqlSession();
  SqlSession(const SqlSession&) = delete;
  SqlSession& operator=(const SqlSession&) = delete;

  // Runs `statement` (several, ';'-separated, are allowed), connecting first if needed;
  // returns the rows of the last result set. Throws std::runtime_error with the server's
  // message; the connection is dropped then, and made again next time.
  std::vector<Row> query(const std::string& statement);
  // The first row's first column, "" when there is none.
  std::string scalar(const std::string& statement);
  // The server's error of the last failure, e.g. "Can't connect to server on ... (111)".
  const std::string& last_error() const { return last_error_; }

 private:
  void connect();
  void drop();
  std::vector<Row> run(const std::string& statement);
  Endpoint e_;
  st_mysql* db_ = nullptr;
  std::string last_error_;
  unsigned last_errno_ = 0;  // CR_SERVER_GONE_ERROR 2006, CR_SERVER_LOST 2013, CR_SSL 2026...
};

}  // namespace webstack::failover
