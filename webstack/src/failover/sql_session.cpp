#include "failover/sql_session.hpp"

#include <mysql.h>

#include <stdexcept>

namespace webstack::failover {

std::string global_status(const std::string& name) {
  return "(SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = '" +
         name + "')";
}

SqlSession::SqlSession(Endpoint e) : e_(std::move(e)) {}

SqlSession::~SqlSession() {
  drop();
}

void SqlSession::drop() {
  if (db_ != nullptr) mysql_close(db_);
  db_ = nullptr;
}

void SqlSession::connect() {
  db_ = mysql_init(nullptr);
  if (db_ == nullptr) throw std::runtime_error("mysql_init: out of memory");
  const unsigned secs = static_cast<unsigned>(std::max<long long>(1, e_.timeout.count() / 1000));
  mysql_optionsv(db_, MYSQL_OPT_CONNECT_TIMEOUT, &secs);
  mysql_optionsv(db_, MYSQL_OPT_READ_TIMEOUT, &secs);
  mysql_optionsv(db_, MYSQL_OPT_WRITE_TIMEOUT, &secs);
  if (!e_.address.empty() && !e_.ssl_ca.empty()) {
    const my_bool verify = 1;
    mysql_optionsv(db_, MYSQL_OPT_SSL_CA, e_.ssl_ca.c_str());
    mysql_optionsv(db_, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &verify);
  }
  const bool tcp = !e_.address.empty();
  if (!tcp) {
    const unsigned protocol = MYSQL_PROTOCOL_SOCKET;
    mysql_optionsv(db_, MYSQL_OPT_PROTOCOL, &protocol);
  }
  if (mysql_real_connect(db_, tcp ? e_.address.c_str() : nullptr, e_.user.c_str(),
                         e_.password.empty() ? nullptr : e_.password.c_str(), nullptr,
                         tcp ? static_cast<unsigned>(e_.port) : 0,
                         tcp ? nullptr : e_.socket.c_str(), CLIENT_MULTI_STATEMENTS) == nullptr) {
    last_error_ = mysql_error(db_);
    last_errno_ = mysql_errno(db_);
    drop();
    throw std::runtime_error(last_error_);
  }
}

std::vector<Row> SqlSession::query(const std::string& statement) {
  // A connection kept from an earlier round may have died with its server (a restart):
  // such a failure before any answer gets one more try on a new connection.
  const bool reused = db_ != nullptr;
  try {
    return run(statement);
  } catch (const std::runtime_error&) {
    if (!reused || (last_errno_ != 2006 && last_errno_ != 2013 && last_errno_ != 2026)) throw;
  }
  return run(statement);
}

std::vector<Row> SqlSession::run(const std::string& statement) {
  if (db_ == nullptr) connect();
  const auto fail = [&]() -> std::runtime_error {
    last_error_ = mysql_error(db_);
    last_errno_ = mysql_errno(db_);
    drop();
    return std::runtime_error(last_error_);
  };
  if (mysql_real_query(db_, statement.data(), statement.size()) != 0) throw fail();
  std::vector<Row> rows;
  for (;;) {
    MYSQL_RES* res = mysql_store_result(db_);
    if (res != nullptr) {
      rows.clear();
      const unsigned n = mysql_num_fields(res);
      const MYSQL_FIELD* fields = mysql_fetch_fields(res);
      while (MYSQL_ROW r = mysql_fetch_row(res)) {
        const unsigned long* lengths = mysql_fetch_lengths(res);
        Row row;
        for (unsigned i = 0; i < n; ++i) {
          row[fields[i].name] = r[i] == nullptr ? std::string() : std::string(r[i], lengths[i]);
        }
        rows.push_back(std::move(row));
      }
      mysql_free_result(res);
    } else if (mysql_field_count(db_) != 0) {
      throw fail();
    }
    const int next = mysql_next_result(db_);
    if (next > 0) throw fail();
    if (next < 0) break;
  }
  return rows;
}

std::string SqlSession::scalar(const std::string& statement) {
  const auto rows = query(statement);
  if (rows.empty() || rows.front().empty()) return "";
  return rows.front().begin()->second;
}

}  // namespace webstack::failover
