// The HTTP/1.1 server: one io_context per thread, each with its own SO_REUSEPORT
// acceptor, database cluster view and App (shared-nothing: no lock on the request path).
// Beast and Asio stay inside server.cpp.
#pragma once

#include <cstdint>
#include <memory>

#include "core/config.hpp"

namespace webstack::http {

class Server {
 public:
  // Binds every acceptor (so a busy port fails here, before anything runs). Throws
  // std::runtime_error naming the address on failure.
  explicit Server(const Config& cfg);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  std::uint16_t port() const;  // the bound port (useful with server.port = 0 in tests)

  void start();  // starts the I/O threads
  // Graceful shutdown: stop accepting, /readyz 503, finish in-flight requests, answer
  // keep-alive connections with Connection: close, close idle ones after the grace
  // period, and everything at shutdown_deadline. Thread-safe, idempotent.
  // drain() waits out server.shutdown_lameduck_ms first (/readyz 503, still serving).
  void drain();
  // Ends the lame duck now (drain() first): the operator wants it down, not drained from
  // a load balancer (`webstack down`). Thread-safe, idempotent.
  void end_lameduck();
  void wait();  // blocks until every I/O thread has finished

  // start(), then wait for a signal: SIGTERM drains (with the lame duck); SIGINT, or a
  // second signal, drains without it. wait(). Returns the exit code.
  int run();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace webstack::http
