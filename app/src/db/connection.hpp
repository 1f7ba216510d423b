// One MariaDB connection driven by the Connector/C non-blocking API on Asio. Private to
// db/: handlers see it only through Lease.
#pragma once

#include <mysql.h>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/config.hpp"
#include "db/statement.hpp"
#include "net/deadline.hpp"

namespace webstack::db {

class Connection {
 public:
  using Clock = std::chrono::steady_clock;

  // `op_timeout` bounds every execute/query (prepare + execute + fetch).
  Connection(boost::asio::io_context& io, std::chrono::milliseconds op_timeout);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Resolves the host off-thread, then connects. Throws ConnectionLost (network, timeout)
  // or Unavailable (refused by the server: credentials, unknown database).
  boost::asio::awaitable<void> connect(const DbNode& node, const DatabaseConfig& cfg);

  // Throw ConnectionLost (connection now broken), Unavailable (timeout, node turned
  // read-only) or QueryError.
  boost::asio::awaitable<Result> execute(std::string_view sql, std::span<const Param> params);
  boost::asio::awaitable<Result> query(std::string_view sql,
                                       std::vector<std::string>* columns = nullptr);
  // Several statements separated by ';' in one round trip (text protocol): one Result
  // per statement, in order. Only for SQL the app builds itself, never from input.
  boost::asio::awaitable<std::vector<Result>> query_multi(std::string_view sql);

  // Must not go back to a pool.
  bool broken() const { return broken_; }
  // The last statement failed because the node is read-only: the topology changed.
  bool saw_read_only() const { return saw_read_only_; }
  // An idle connection has nothing to read; anything readable (EOF after KILL or a server
  // restart, an error packet) means it died while pooled. A zero-timeout poll, no I/O.
  bool idle_alive() const;
  // Aborts the operation in flight (shutdown); the connection becomes broken.
  void cancel();
  // Its session state is unknown (a transaction may be open): closed when released,
  // never pooled again.
  void discard() { broken_ = true; }
  // The node was found unreachable while this connection is on loan: the operation in
  // flight, or the next one, ends at once with ConnectionLost instead of waiting out the
  // query timeout on a dead path (a read is then retried on another node). Broken after.
  void abandon();

 private:
  struct Stmt {
    MYSQL_STMT* handle = nullptr;
    unsigned long param_count = 0;
  };
  struct StringHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  class OpScope;
  enum class Outcome { Done, TimedOut, Aborted };

  template <class Start, class Cont>
  boost::asio::awaitable<void> drive(Start start, Cont cont, Clock::time_point deadline,
                                     const char* what, bool connecting);
  boost::asio::awaitable<int> wait(int status, Clock::time_point deadline);
  boost::asio::awaitable<int> wait_with_library_timer(
      boost::asio::posix::descriptor_base::wait_type type, int ready_bits, int io_events,
      Clock::time_point expiry);
  boost::asio::awaitable<std::vector<std::string>> resolve(const DbNode& node,
                                                           Clock::time_point deadline);
  void init_handle(const DatabaseConfig& cfg);
  boost::asio::awaitable<Stmt> prepared(std::string_view sql, Clock::time_point deadline,
                                        bool& cached);
  boost::asio::awaitable<void> close_stmt(MYSQL_STMT* handle, Clock::time_point deadline);
  // fetch.cpp: the rows of a stored result (no I/O).
  Result fetch_binary(MYSQL_STMT* handle);
  Result read_text_rows(MYSQL_RES* res, std::vector<std::string>* columns);
  boost::asio::awaitable<void> send_query(std::string_view sql, Clock::time_point deadline);
  boost::asio::awaitable<Result> read_text_result(Clock::time_point deadline,
                                                  std::vector<std::string>* columns);
  void track_socket();
  void close_handle() noexcept;
  [[noreturn]] void fail(const char* what);
  [[noreturn]] void fail_stmt(MYSQL_STMT* handle, const char* what);
  [[noreturn]] void fail_code(unsigned code, const char* what, const char* message);

  boost::asio::io_context& io_;
  std::chrono::milliseconds op_timeout_;
  MYSQL* mysql_ = nullptr;
  // Non-owning: Connector/C owns the socket; released before mysql_close.
  boost::asio::posix::stream_descriptor socket_;
  boost::asio::steady_timer timer_;  // Connector/C's own timeouts (connect)
  struct CancelSocket {
    boost::asio::posix::stream_descriptor* socket;
    void operator()() const {
      boost::system::error_code ignored;
      socket->cancel(ignored);
    }
  };
  net::Deadline<CancelSocket> op_deadline_;  // our per-operation deadline, lazily re-armed
  int fd_ = -1;
  bool broken_ = false;
  bool busy_ = false;       // an operation is running (one at a time)
  bool suspended_ = false;  // Connector/C is suspended mid-operation
  bool cancelled_ = false;
  bool abandoned_ = false;  // cancelled by abandon(): ConnectionLost, not Unavailable
  bool saw_read_only_ = false;
  std::unordered_map<std::string, Stmt, StringHash, std::equal_to<>> stmts_;
};

}  // namespace webstack::db
