// The failover processes' small HTTP/1.0 wire: the manager's state port and each fencing
// agent's port serve one short answer per connection; agents and the manager ask each
// other with http_get. Plain sockets and poll(): a handful of requests a second, each
// bounded in time, so neither side ever waits on a stuck peer.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <optional>
#include <string>

namespace webstack::failover {

struct Reply {
  std::string content_type = "application/json";
  std::string body;
};

class StateServer {
 public:
  // Binds address:port (throws "cannot listen on ...").
  StateServer(const std::string& address, int port);
  ~StateServer();
  StateServer(const StateServer&) = delete;
  StateServer& operator=(const StateServer&) = delete;

  // Until `stop` is non-zero or `serving` false: answers whoever connects with
  // handler(request head, the client's IPv4 address). Never blocks on one client: each gets
  // 200 ms to send its head. An exception from the handler answers 500 with its message.
  using Handler = std::function<Reply(const std::string& request, const std::string& peer)>;
  void run(const Handler& handler, const std::atomic<int>& stop, const std::atomic<bool>& serving);

 private:
  int fd_ = -1;
};

// GET http://address:port/path within `timeout` (connect, send, read to the end). The body
// of a 200 answer; std::nullopt and `error` otherwise.
std::optional<std::string> http_get(const std::string& address, int port, const std::string& path,
                                    std::chrono::milliseconds timeout, std::string& error);

// The value of `key` in a request line's query ("GET /vouch?for=web-01 HTTP/1.0").
std::string query_value(const std::string& request, const std::string& key);

}  // namespace webstack::failover
