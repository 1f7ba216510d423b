#include "db/connection.hpp"

#include <errmsg.h>
#include <mysqld_error.h>
#include <poll.h>
#include <sys/socket.h>

#include <fmt/format.h>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <stdexcept>

#include "db/routing.hpp"

namespace webstack::db {

namespace asio = boost::asio;
using boost::system::error_code;

// routing.cpp spells these codes as numbers to stay free of MariaDB headers.
static_assert(CR_CONNECTION_ERROR == 2002 && CR_SERVER_GONE_ERROR == 2006 &&
              CR_SERVER_LOST == 2013 && CR_COMMANDS_OUT_OF_SYNC == 2014 &&
              CR_SERVER_LOST_EXTENDED == 2055 && CR_ERR_NET_READ == 5013);
static_assert(ER_SERVER_SHUTDOWN == 1053 && ER_QUERY_INTERRUPTED == 1317 &&
              ER_CONNECTION_KILLED == 1927);

namespace {

constexpr int kDeadline = -1;  // wait(): our own deadline passed
constexpr int kAborted = -2;   // wait(): cancel() or the socket vanished
// Beyond this many distinct statements per connection, statements are closed after use
// (the server caps prepared statements globally: max_prepared_stmt_count).
constexpr std::size_t kMaxCachedStatements = 256;

unsigned ceil_seconds(std::chrono::milliseconds ms) {
  return static_cast<unsigned>(std::max<std::int64_t>(1, (ms.count() + 999) / 1000));
}

}  // namespace

// Marks the connection busy for one operation; an operation abandoned half-way (its
// coroutine destroyed) leaves the protocol state unknown, so the connection is broken.
class Connection::OpScope {
 public:
  explicit OpScope(Connection& c) : c_(c) {
    if (c.busy_) {
      throw std::logic_error("db: two operations at once on one connection");
    }
    if (c.broken_ || c.cancelled_ || c.mysql_ == nullptr) {
      throw ConnectionLost("db: connection is broken");
    }
    c.busy_ = true;
    c.saw_read_only_ = false;
  }
  ~OpScope() {
    c_.busy_ = false;
    if (c_.suspended_) {
      c_.broken_ = true;
    }
  }
  OpScope(const OpScope&) = delete;
  OpScope& operator=(const OpScope&) = delete;

 private:
  Connection& c_;
};

Connection::Connection(asio::io_context& io, std::chrono::milliseconds op_timeout)
    : io_(io),
      op_timeout_(op_timeout),
      socket_(io),
      timer_(io),
      op_deadline_(socket_.get_executor(), CancelSocket{&socket_}) {}

Connection::~Connection() {
  close_handle();
  for (auto& entry : stmts_) {
    mysql_stmt_close(entry.second.handle);  // detached: local
  }
}

void Connection::close_handle() noexcept {
  // Connector/C owns the fd: unregister it from the reactor without closing it.
  if (socket_.is_open()) {
    socket_.release();
  }
  if (mysql_ != nullptr) {
    // mysql_close() sends COM_QUIT. On a dead or half-used connection, make that write fail
    // at once rather than wait on the peer.
    if ((broken_ || suspended_) && fd_ >= 0) {
      ::shutdown(fd_, SHUT_RDWR);
    }
    mysql_close(mysql_);  // detaches this connection's statements
    mysql_ = nullptr;
  }
  fd_ = -1;
  broken_ = false;
  suspended_ = false;
}

void Connection::cancel() {
  cancelled_ = true;
  error_code ec;
  timer_.cancel(ec);
  op_deadline_.cancel();
  if (socket_.is_open()) {
    socket_.cancel(ec);
  }
}

void Connection::abandon() {
  abandoned_ = true;
  broken_ = true;  // back from its lease it is closed, never handed to a waiting write
  cancel();
}

bool Connection::idle_alive() const {
  if (broken_ || cancelled_ || fd_ < 0) {
    return false;
  }
  pollfd p{fd_, POLLIN, 0};
  return ::poll(&p, 1, 0) == 0;
}

// Follows the socket Connector/C uses right after each call into it, before anything
// else can run on this thread: a socket it closed is unregistered before its number can
// be reused by another connection.
void Connection::track_socket() {
  const int fd = mysql_ != nullptr ? static_cast<int>(mysql_get_socket(mysql_)) : -1;
  if (fd == fd_) {
    return;
  }
  if (socket_.is_open()) {
    socket_.release();
  }
  fd_ = -1;
  if (fd >= 0) {
    error_code ec;
    socket_.assign(fd, ec);
    if (!ec) {
      fd_ = fd;
    }
  }
}

// Waits for what Connector/C asked for; returns the MYSQL_WAIT_* bits that happened, or
// kDeadline / kAborted. libmariadb asks for READ or WRITE, never both (no TLS here).
asio::awaitable<int> Connection::wait(int status, Clock::time_point deadline) {
  if (cancelled_) {
    co_return kAborted;
  }
  auto expiry = deadline;
  bool library_timer = false;
  if ((status & MYSQL_WAIT_TIMEOUT) != 0) {
    const auto t = Clock::now() + std::chrono::milliseconds(mysql_get_timeout_value_ms(mysql_));
    if (t < expiry) {
      expiry = t;
      library_timer = true;
    }
  }
  const int io_events = status & (MYSQL_WAIT_READ | MYSQL_WAIT_WRITE | MYSQL_WAIT_EXCEPT);
  error_code ec;
  if (io_events == 0) {
    timer_.expires_at(expiry);
    co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (cancelled_) {
      co_return kAborted;
    }
    co_return library_timer ? MYSQL_WAIT_TIMEOUT : kDeadline;
  }
  if (!socket_.is_open()) {
    co_return kAborted;
  }

  const auto type = (io_events & MYSQL_WAIT_READ) != 0 ? asio::posix::descriptor_base::wait_read
                    : (io_events & MYSQL_WAIT_WRITE) != 0
                        ? asio::posix::descriptor_base::wait_write
                        : asio::posix::descriptor_base::wait_error;
  const auto ready_bits = type == asio::posix::descriptor_base::wait_read    ? MYSQL_WAIT_READ
                          : type == asio::posix::descriptor_base::wait_write ? MYSQL_WAIT_WRITE
                                                                             : MYSQL_WAIT_EXCEPT;
  if (!library_timer) {
    // The common case (every query): only our own deadline, which costs no timer work
    // per wait.
    op_deadline_.expire_at(expiry);
    co_await socket_.async_wait(type, asio::redirect_error(asio::use_awaitable, ec));
    const bool fired = op_deadline_.fired();
    op_deadline_.clear();
    if (!ec) {
      co_return ready_bits;
    }
    if (cancelled_) {
      co_return kAborted;
    }
    if (fired) {
      co_return kDeadline;
    }
    if (ec == asio::error::operation_aborted) {
      co_return kAborted;
    }
    co_return io_events;
  }

  co_return co_await wait_with_library_timer(type, ready_bits, io_events, expiry);
}

// wait() where Connector/C's own timer comes first: the timer cancels the socket wait.
// `state` tells a late timer handler that the wait is over (and this frame possibly gone),
// even if this coroutine is destroyed suspended.
asio::awaitable<int> Connection::wait_with_library_timer(
    asio::posix::descriptor_base::wait_type type, int ready_bits, int io_events,
    Clock::time_point expiry) {
  error_code ec;
  struct TimerState {
    bool done = false;
    bool fired = false;
  };
  auto state = std::make_shared<TimerState>();
  struct Done {
    TimerState& s;
    ~Done() { s.done = true; }
  } done{*state};
  timer_.expires_at(expiry);
  timer_.async_wait([state, this](const error_code& timer_ec) {
    if (timer_ec || state->done) {
      return;
    }
    state->fired = true;
    error_code ignored;
    socket_.cancel(ignored);
  });

  co_await socket_.async_wait(type, asio::redirect_error(asio::use_awaitable, ec));
  state->done = true;
  error_code ignored;
  timer_.cancel(ignored);

  if (!ec) {
    co_return ready_bits;
  }
  if (cancelled_) {
    co_return kAborted;
  }
  if (state->fired) {
    co_return MYSQL_WAIT_TIMEOUT;  // only Connector/C's timer is set here
  }
  if (ec == asio::error::operation_aborted) {
    co_return kAborted;
  }
  co_return io_events;  // a socket error: let Connector/C find and report it
}

// Runs one non-blocking Connector/C call to completion: start(), then cont(ready) each
// time the socket is ready, within `deadline`.
template <class Start, class Cont>
asio::awaitable<void> Connection::drive(Start start, Cont cont, Clock::time_point deadline,
                                        const char* what, bool connecting) {
  int status = start();
  track_socket();
  while (status != 0) {
    suspended_ = true;
    const int ready = co_await wait(status, deadline);
    if (ready == kDeadline || ready == kAborted) {
      // Make Connector/C fail the operation so that its state unwinds; the connection is
      // then unusable and must be closed.
      broken_ = true;
      if (fd_ >= 0) {
        ::shutdown(fd_, SHUT_RDWR);
      }
      for (int i = 0; i < 8 && status != 0; ++i) {
        status = cont(MYSQL_WAIT_TIMEOUT);
        track_socket();
      }
      suspended_ = status != 0;
      if (ready == kAborted && abandoned_) {
        throw ConnectionLost(fmt::format("db: {} abandoned: the node is unreachable", what));
      }
      if (ready == kAborted) {
        throw Unavailable(fmt::format("db: {} cancelled", what));
      }
      // A connect timeout says the node is unreachable; a slow query does not, and is not
      // worth repeating on a node that is already slow.
      if (connecting) {
        throw ConnectionLost(fmt::format("db: {} timed out", what));
      }
      throw Unavailable(fmt::format("db: {} timed out", what));
    }
    status = cont(ready);
    track_socket();
  }
  suspended_ = false;
}

void Connection::fail(const char* what) {
  fail_code(mysql_errno(mysql_), what, mysql_error(mysql_));
}

void Connection::fail_stmt(MYSQL_STMT* handle, const char* what) {
  fail_code(mysql_stmt_errno(handle), what, mysql_stmt_error(handle));
}

void Connection::fail_code(unsigned code, const char* what, const char* message) {
  std::string msg = fmt::format("db: {} failed ({}): {}", what, code, message);
  if (is_connection_error(code)) {
    broken_ = true;
    throw ConnectionLost(msg);
  }
  // A write reached a node that was demoted since the last probe: re-probe; the write
  // did not run (Cluster::write runs it again on the new primary, else 503).
  if (code == ER_OPTION_PREVENTS_STATEMENT) {
    saw_read_only_ = true;
    throw RefusedReadOnly(msg);
  }
  throw QueryError(msg, code);
}

// The numeric addresses of `node.host`, by Asio's resolver (on its own thread), within
// `deadline`.
asio::awaitable<std::vector<std::string>> Connection::resolve(const DbNode& node,
                                                              Clock::time_point deadline) {
  std::vector<std::string> addresses;
  error_code ec;
  auto resolver = std::make_shared<asio::ip::tcp::resolver>(io_);
  asio::steady_timer guard(io_, deadline);
  guard.async_wait([weak = std::weak_ptr(resolver)](const error_code& timer_ec) {
    if (auto r = weak.lock(); r && !timer_ec) {
      r->cancel();
    }
  });
  auto results = co_await resolver->async_resolve(node.host, std::to_string(node.port),
                                                  asio::redirect_error(asio::use_awaitable, ec));
  guard.cancel();
  for (const auto& entry : results) {
    std::string a = entry.endpoint().address().to_string();
    if (std::find(addresses.begin(), addresses.end(), a) == addresses.end()) {
      addresses.push_back(std::move(a));
    }
  }
  if (ec || addresses.empty()) {
    broken_ = true;
    throw ConnectionLost(fmt::format("db: cannot resolve {}: {}", node.host,
                                     ec ? ec.message() : std::string("no address")));
  }
  co_return addresses;
}

// A new Connector/C handle, non-blocking, with the connection's options.
void Connection::init_handle(const DatabaseConfig& cfg) {
  // Connector/C's own timeouts back up ours (MYSQL_WAIT_TIMEOUT). Never MYSQL_OPT_RECONNECT:
  // a silent reconnect would lose session state and hide failures from the pool.
  const unsigned connect_s = ceil_seconds(cfg.connect_timeout);
  const unsigned io_s = ceil_seconds(op_timeout_);
  const unsigned protocol = MYSQL_PROTOCOL_TCP;
  const unsigned no_local_infile = 0;
  mysql_ = mysql_init(nullptr);
  if (mysql_ == nullptr) {
    throw Unavailable("db: mysql_init failed");
  }
  mysql_options(mysql_, MYSQL_OPT_NONBLOCK, nullptr);
  mysql_options(mysql_, MYSQL_OPT_CONNECT_TIMEOUT, &connect_s);
  mysql_options(mysql_, MYSQL_OPT_READ_TIMEOUT, &io_s);
  mysql_options(mysql_, MYSQL_OPT_WRITE_TIMEOUT, &io_s);
  mysql_options(mysql_, MYSQL_OPT_PROTOCOL, &protocol);
  mysql_options(mysql_, MYSQL_OPT_LOCAL_INFILE, &no_local_infile);
  mysql_options(mysql_, MYSQL_SET_CHARSET_NAME, "utf8mb4");
}

asio::awaitable<void> Connection::connect(const DbNode& node, const DatabaseConfig& cfg) {
  if (mysql_ != nullptr || busy_) {
    throw std::logic_error("db: connect() on a used connection");
  }
  busy_ = true;
  struct Idle {
    bool& busy;
    ~Idle() { busy = false; }
  } idle{busy_};
  const auto deadline = Clock::now() + cfg.connect_timeout;

  // Connector/C would call getaddrinfo() on this thread; Asio's resolver runs it on its own
  // thread (resolve()), and Connector/C then gets numeric addresses, tried in order.
  std::vector<std::string> addresses;
  error_code ec;
  asio::ip::make_address(node.host, ec);
  if (!ec) {
    addresses.push_back(node.host);
  } else {
    addresses = co_await resolve(node, deadline);
  }

  const char* db = cfg.database.empty() ? nullptr : cfg.database.c_str();
  for (std::size_t i = 0; i < addresses.size(); ++i) {
    if (mysql_ != nullptr) {
      close_handle();  // the previous address failed
    }
    init_handle(cfg);

    MYSQL* ret = nullptr;
    const std::string& address = addresses[i];
    co_await drive(
        [&] {
          return mysql_real_connect_start(&ret, mysql_, address.c_str(), cfg.user.c_str(),
                                          cfg.password.c_str(), db, node.port, nullptr,
                                          CLIENT_MULTI_STATEMENTS);
        },
        [&](int ready) { return mysql_real_connect_cont(&ret, mysql_, ready); }, deadline,
        "connect", true);
    if (ret != nullptr) {
      co_return;
    }
    broken_ = true;
    const unsigned code = mysql_errno(mysql_);
    std::string msg = fmt::format("db: connect to {} ({}) failed ({}): {}", node.name(), address,
                                  code, mysql_error(mysql_));
    if (!is_connection_error(code)) {
      throw Unavailable(msg);  // credentials, database
    }
    if (i + 1 == addresses.size()) {
      throw ConnectionLost(msg);
    }
  }
}

asio::awaitable<Connection::Stmt> Connection::prepared(std::string_view sql,
                                                       Clock::time_point deadline, bool& cached) {
  if (auto it = stmts_.find(sql); it != stmts_.end()) {
    cached = true;
    co_return it->second;
  }
  MYSQL_STMT* handle = mysql_stmt_init(mysql_);
  if (handle == nullptr) {
    fail("mysql_stmt_init");
  }
  std::unique_ptr<MYSQL_STMT, decltype(&mysql_stmt_close)> guard(handle, &mysql_stmt_close);
  // Lets mysql_stmt_store_result() record each column's longest value, to size buffers.
  const my_bool update_max_length = 1;
  mysql_stmt_attr_set(handle, STMT_ATTR_UPDATE_MAX_LENGTH, &update_max_length);
  int rc = 0;
  co_await drive([&] { return mysql_stmt_prepare_start(&rc, handle, sql.data(), sql.size()); },
                 [&](int ready) { return mysql_stmt_prepare_cont(&rc, handle, ready); }, deadline,
                 "prepare", false);
  if (rc != 0) {
    fail_stmt(handle, "prepare");
  }
  const Stmt stmt{guard.release(), mysql_stmt_param_count(handle)};
  cached = stmts_.size() < kMaxCachedStatements;
  if (cached) {
    stmts_.emplace(std::string(sql), stmt);
  }
  co_return stmt;
}

asio::awaitable<Result> Connection::execute(std::string_view sql, std::span<const Param> params) {
  OpScope op(*this);
  const auto deadline = Clock::now() + op_timeout_;
  bool cached = false;
  const Stmt stmt = co_await prepared(sql, deadline, cached);
  MYSQL_STMT* const handle = stmt.handle;
  // An uncached statement is closed after use: COM_STMT_CLOSE has no reply, and the send
  // buffer is empty between round trips, so this write does not wait.
  std::unique_ptr<MYSQL_STMT, decltype(&mysql_stmt_close)> once(cached ? nullptr : handle,
                                                                &mysql_stmt_close);

  if (params.size() != stmt.param_count) {
    throw QueryError(fmt::format("db: statement takes {} parameters, {} given", stmt.param_count,
                                 params.size()));
  }
  std::vector<MYSQL_BIND> binds(params.size());
  std::vector<long long> ints(params.size());
  std::vector<unsigned long> lengths(params.size());
  static char empty[1] = {0};
  for (std::size_t i = 0; i < params.size(); ++i) {
    MYSQL_BIND& b = binds[i];
    if (const auto* v = std::get_if<std::int64_t>(&params[i])) {
      ints[i] = *v;
      b.buffer_type = MYSQL_TYPE_LONGLONG;
      b.buffer = &ints[i];
    } else if (const auto* s = std::get_if<std::string_view>(&params[i])) {
      lengths[i] = s->size();
      b.buffer_type = MYSQL_TYPE_STRING;
      b.buffer = s->empty() ? empty : const_cast<char*>(s->data());  // only read
      b.buffer_length = s->size();
      b.length = &lengths[i];
    } else {
      b.buffer_type = MYSQL_TYPE_NULL;
    }
  }
  if (!binds.empty() && mysql_stmt_bind_param(handle, binds.data()) != 0) {
    fail_stmt(handle, "bind");
  }

  int rc = 0;
  co_await drive([&] { return mysql_stmt_execute_start(&rc, handle); },
                 [&](int ready) { return mysql_stmt_execute_cont(&rc, handle, ready); }, deadline,
                 "execute", false);
  if (rc != 0) {
    fail_stmt(handle, "execute");
  }
  Result result;
  if (mysql_stmt_field_count(handle) > 0) {
    co_await drive([&] { return mysql_stmt_store_result_start(&rc, handle); },
                   [&](int ready) { return mysql_stmt_store_result_cont(&rc, handle, ready); },
                   deadline, "fetch", false);
    if (rc != 0) {
      fail_stmt(handle, "fetch");
    }
    result = fetch_binary(handle);
  } else {
    result.affected_rows = mysql_stmt_affected_rows(handle);
    result.insert_id = mysql_stmt_insert_id(handle);
  }
  // Further result sets (CALL) are not read: the protocol state is not reusable.
  if (mysql_stmt_more_results(handle)) {
    broken_ = true;
  }
  co_return result;
}

asio::awaitable<Result> Connection::query(std::string_view sql, std::vector<std::string>* columns) {
  OpScope op(*this);
  const auto deadline = Clock::now() + op_timeout_;
  co_await send_query(sql, deadline);
  Result result = co_await read_text_result(deadline, columns);
  if (mysql_more_results(mysql_)) {
    broken_ = true;
  }
  co_return result;
}

asio::awaitable<std::vector<Result>> Connection::query_multi(std::string_view sql) {
  OpScope op(*this);
  const auto deadline = Clock::now() + op_timeout_;
  co_await send_query(sql, deadline);
  std::vector<Result> results;
  int rc = 0;
  for (;;) {
    results.push_back(co_await read_text_result(deadline, nullptr));
    if (!mysql_more_results(mysql_)) break;
    // rc 0: another result follows; > 0: a later statement failed (the rest did not run).
    co_await drive([&] { return mysql_next_result_start(&rc, mysql_); },
                   [&](int ready) { return mysql_next_result_cont(&rc, mysql_, ready); }, deadline,
                   "next result", false);
    if (rc > 0) {
      fail("query");
    }
    if (rc < 0) break;
  }
  co_return results;
}

asio::awaitable<void> Connection::send_query(std::string_view sql, Clock::time_point deadline) {
  int rc = 0;
  co_await drive([&] { return mysql_real_query_start(&rc, mysql_, sql.data(), sql.size()); },
                 [&](int ready) { return mysql_real_query_cont(&rc, mysql_, ready); }, deadline,
                 "query", false);
  if (rc != 0) {
    fail("query");
  }
}

asio::awaitable<Result> Connection::read_text_result(Clock::time_point deadline,
                                                     std::vector<std::string>* columns) {
  Result result;
  if (mysql_field_count(mysql_) > 0) {
    MYSQL_RES* res = nullptr;
    co_await drive([&] { return mysql_store_result_start(&res, mysql_); },
                   [&](int ready) { return mysql_store_result_cont(&res, mysql_, ready); },
                   deadline, "fetch", false);
    if (res == nullptr) {
      fail("fetch");
    }
    // A stored result: fetching rows and freeing it are local.
    std::unique_ptr<MYSQL_RES, decltype(&mysql_free_result)> guard(res, &mysql_free_result);
    result = read_text_rows(res, columns);
  } else {
    result.affected_rows = mysql_affected_rows(mysql_);
    result.insert_id = mysql_insert_id(mysql_);
  }
  co_return result;
}

}  // namespace webstack::db
