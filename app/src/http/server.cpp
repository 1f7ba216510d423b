#include "http/server.hpp"

#include <fmt/format.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include <unistd.h>
#include <ctime>
#include <list>
#include <random>
#include <stdexcept>
#include <thread>

#include "core/log.hpp"
#include "core/text.hpp"
#include "db/cluster.hpp"
#include "db/library.hpp"
#include "handlers/app.hpp"

namespace webstack::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

namespace {

// The Date header, formatted again only when the second changes.
class DateCache {
 public:
  std::string_view now() {
    std::time_t t = std::time(nullptr);
    if (t != last_) {
      std::tm tm{};
      gmtime_r(&t, &tm);
      len_ = std::strftime(buf_, sizeof buf_, "%a, %d %b %Y %H:%M:%S GMT", &tm);
      last_ = t;
    }
    return {buf_, len_};
  }

 private:
  std::time_t last_ = 0;
  char buf_[40]{};
  std::size_t len_ = 0;
};

// One connection's socket and its deadline. Shared so that the deadline handler can
// tell whether the connection still exists when it fires.
struct Conn {
  Conn(tcp::socket s) : socket(std::move(s)), timer(socket.get_executor()) {}
  tcp::socket socket;
  asio::steady_timer timer;
  bool fired = false;  // the current deadline passed and cancelled the socket's operations
  bool idle = true;    // waiting for the first byte of a request

  void arm(std::chrono::steady_clock::duration d) {
    fired = false;
    timer.expires_after(d);
    timer.async_wait([weak = weak_from_this_()](boost::system::error_code ec) {
      if (ec) return;
      if (auto conn = weak.lock()) {
        conn->fired = true;
        boost::system::error_code ignored;
        conn->socket.cancel(ignored);
      }
    });
  }
  void disarm() { timer.cancel(); }

  std::weak_ptr<Conn> self;
  std::weak_ptr<Conn> weak_from_this_() const { return self; }
};

}  // namespace

struct Worker {
  Worker(const Config& config, Shared& shared_state, MetricsShard& shard, unsigned index)
      : io(1),
        acceptor(io),
        cluster(io, config.db, shard),
        app(shared_state, cluster, shard, std::random_device{}() ^ index),
        metrics(shard),
        cfg(config),
        shared(shared_state),
        rng(std::random_device{}() + index) {}

  asio::io_context io;
  tcp::acceptor acceptor;
  db::Cluster cluster;
  App app;
  MetricsShard& metrics;
  const Config& cfg;
  Shared& shared;
  DateCache date;
  std::mt19937_64 rng;
  std::list<Conn*> conns;  // live connections, for drain
  bool draining = false;
  std::thread thread;

  std::string new_request_id() { return fmt::format("{:016x}{:016x}", rng(), rng()); }

  // Called on this worker's thread.
  void begin_drain() {
    if (draining) return;
    draining = true;
    boost::system::error_code ec;
    acceptor.close(ec);
    for (Conn* c : conns) {
      if (c->idle) c->arm(cfg.server.shutdown_idle_grace);
    }
    maybe_finish();
  }
  // Called on this worker's thread at the hard deadline.
  void close_all() {
    for (Conn* c : conns) {
      boost::system::error_code ec;
      c->socket.close(ec);
      c->timer.cancel();
    }
    cluster.stop();
  }
  void maybe_finish() {
    if (draining && conns.empty()) cluster.stop();
  }
};

namespace {

asio::awaitable<void> send(Worker& w, Conn& c, bhttp::response<bhttp::string_body>& res,
                           boost::system::error_code& ec) {
  c.arm(w.cfg.server.idle_timeout);  // a client that does not read gets no longer than this
  co_await bhttp::async_write(c.socket, res, asio::redirect_error(asio::use_awaitable, ec));
  c.disarm();
}

// A refusal before routing (400, 408, 413, 431): the connection is closed after it.
asio::awaitable<void> refuse(Worker& w, Conn& c, unsigned status, std::string_view why,
                             std::string_view request_id) {
  bhttp::response<bhttp::string_body> res{static_cast<bhttp::status>(status), 11};
  res.set(bhttp::field::server, w.cfg.server.server_header);
  res.set(bhttp::field::date, w.date.now());
  res.set(bhttp::field::content_type, "text/plain; charset=utf-8");
  res.set("X-Served-By", w.shared.served_by);
  res.set("X-Request-Id", request_id);
  res.keep_alive(false);
  res.body() = fmt::format("{} {}\n", status, why);
  res.prepare_payload();
  boost::system::error_code ec;
  co_await send(w, c, res, ec);
  w.metrics.record_request(Route::NotFound, status, 0ns);
  log::info("request refused",
            {{"status", std::to_string(status)}, {"reason", why}, {"request_id", request_id}});
}

asio::awaitable<void> session(Worker& w, std::shared_ptr<Conn> conn) {
  Conn& c = *conn;
  w.conns.push_front(&c);
  auto registered = w.conns.begin();
  struct Unregister {
    Worker& w;
    std::list<Conn*>::iterator it;
    ~Unregister() {
      w.conns.erase(it);
      w.maybe_finish();
    }
  } unregister{w, registered};

  const auto& sc = w.cfg.server;
  beast::flat_buffer buffer;
  boost::system::error_code ec;
  for (;;) {
    // Wait for the first byte of the next request under the idle timeout (or the drain
    // grace): an idle keep-alive connection is closed silently.
    if (buffer.size() == 0) {
      c.idle = true;
      c.arm(w.draining ? sc.shutdown_idle_grace : sc.idle_timeout);
      co_await c.socket.async_wait(tcp::socket::wait_read,
                                   asio::redirect_error(asio::use_awaitable, ec));
      c.disarm();
      c.idle = false;
      if (ec) break;
    }
    c.idle = false;

    // Headers (and then the body) must arrive within header_timeout: slowloris -> 408.
    bhttp::request_parser<bhttp::string_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(sc.header_limit));
    parser.body_limit(sc.body_limit);
    c.arm(sc.header_timeout);
    co_await bhttp::async_read_header(c.socket, buffer, parser,
                                      asio::redirect_error(asio::use_awaitable, ec));
    if (!ec && !parser.is_done()) {
      co_await bhttp::async_read(c.socket, buffer, parser,
                                 asio::redirect_error(asio::use_awaitable, ec));
    }
    const bool timed_out = c.fired;
    c.disarm();
    if (ec) {
      const std::string rid = w.new_request_id();
      if (timed_out) {
        co_await refuse(w, c, 408, "request timeout", rid);
      } else if (ec == bhttp::error::header_limit) {
        co_await refuse(w, c, 431, "request header fields too large", rid);
      } else if (ec == bhttp::error::body_limit) {
        co_await refuse(w, c, 413, "content too large", rid);
      } else if (ec == bhttp::error::end_of_stream || ec == bhttp::error::partial_message ||
                 ec.category() != bhttp::make_error_code(bhttp::error::bad_target).category()) {
        // The peer closed or the socket failed: nobody to answer.
      } else {
        co_await refuse(w, c, 400, "bad request", rid);
      }
      break;
    }

    auto& req = parser.get();
    const auto started = std::chrono::steady_clock::now();
    std::string_view incoming_id = req["X-Request-Id"];
    const std::string request_id =
        text::acceptable_request_id(incoming_id) ? std::string(incoming_id) : w.new_request_id();

    if (req.target().empty() || req.target().front() != '/') {
      co_await refuse(w, c, 400, "bad request target", request_id);
      break;
    }

    Request in{req.method_string(), req.target(), req[bhttp::field::cookie],
               req[bhttp::field::content_type], req.body()};
    Route route = Route::NotFound;
    w.metrics.in_flight_add(1);
    Response out = co_await w.app.handle(in, route);
    w.metrics.in_flight_add(-1);

    const bool keep_alive = req.keep_alive() && !w.draining;
    bhttp::response<bhttp::string_body> res{static_cast<bhttp::status>(out.status), req.version()};
    res.set(bhttp::field::server, sc.server_header);
    res.set(bhttp::field::date, w.date.now());
    res.set(bhttp::field::content_type, out.content_type);
    res.set("X-Served-By", w.shared.served_by);
    res.set("X-Request-Id", request_id);
    for (auto& [name, value] : out.headers) res.insert(name, value);
    res.keep_alive(keep_alive);
    res.body() = std::move(out.body);
    res.prepare_payload();
    if (req.method() == bhttp::verb::head) {
      // Content-Length stays that of the GET answer; no body goes out.
      res.body().clear();
    }
    co_await send(w, c, res, ec);
    const auto elapsed = std::chrono::steady_clock::now() - started;
    w.metrics.record_request(route, out.status, elapsed);
    if (sc.access_log) {
      log::info("access", {{"method", req.method_string()},
                           {"target", req.target()},
                           {"status", std::to_string(out.status)},
                           {"route", route_name(route)},
                           {"us", std::to_string(elapsed / 1us)},
                           {"request_id", request_id}});
    }
    if (ec || !keep_alive) break;
  }
  boost::system::error_code ignored;
  c.socket.shutdown(tcp::socket::shutdown_send, ignored);
  c.socket.close(ignored);
}

asio::awaitable<void> accept_loop(Worker& w) {
  for (;;) {
    boost::system::error_code ec;
    tcp::socket socket =
        co_await w.acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      if (!w.acceptor.is_open()) co_return;  // draining
      if (ec == asio::error::operation_aborted) co_return;
      // EMFILE and friends: log, back off briefly, keep serving the others.
      log::warn("accept failed", {{"error", ec.message()}});
      asio::steady_timer pause(w.io, 50ms);
      co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    socket.set_option(tcp::no_delay(true), ec);
    auto conn = std::make_shared<Conn>(std::move(socket));
    conn->self = conn;
    asio::co_spawn(w.io, session(w, conn), [](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        log::error("session failed", {{"error", ex.what()}});
      }
    });
  }
}

void open_acceptor(tcp::acceptor& a, const std::string& listen, std::uint16_t port) {
  boost::system::error_code ec;
  auto address = asio::ip::make_address(listen, ec);
  if (ec) throw std::runtime_error(fmt::format("server.listen: not an IP address: {}", listen));
  tcp::endpoint ep{address, port};
  a.open(ep.protocol());
  a.set_option(tcp::acceptor::reuse_address(true));
  int one = 1;
  if (::setsockopt(a.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
    throw std::runtime_error("SO_REUSEPORT unavailable");
  }
  a.bind(ep, ec);
  if (ec)
    throw std::runtime_error(fmt::format("cannot bind {}:{}: {}", listen, port, ec.message()));
  a.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    throw std::runtime_error(fmt::format("cannot listen on {}:{}: {}", listen, port, ec.message()));
}

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  return buf;
}

}  // namespace

struct Server::Impl {
  explicit Impl(const Config& c) : cfg(c) {
    unsigned n =
        cfg.server.threads ? cfg.server.threads : std::max(1u, std::thread::hardware_concurrency());
    std::vector<std::string> names;
    for (const auto& node : cfg.db.nodes) names.push_back(node.name());
    metrics = std::make_unique<Metrics>(n, names);
    shared.config = &cfg;
    shared.metrics = metrics.get();
    shared.served_by = cfg.server.served_by.empty() ? host_name() : cfg.server.served_by;
    shared.threads = n;
    for (unsigned i = 0; i < n; ++i) {
      workers.push_back(std::make_unique<Worker>(cfg, shared, metrics->shard(i), i));
    }
    // The first acceptor picks the port (it may be 0); the others join it.
    open_acceptor(workers[0]->acceptor, cfg.server.listen, cfg.server.port);
    bound_port = workers[0]->acceptor.local_endpoint().port();
    for (unsigned i = 1; i < n; ++i)
      open_acceptor(workers[i]->acceptor, cfg.server.listen, bound_port);
  }

  Config cfg;
  Shared shared;
  std::unique_ptr<Metrics> metrics;
  std::vector<std::unique_ptr<Worker>> workers;
  std::uint16_t bound_port = 0;
  std::atomic<bool> drain_started{false};
  std::atomic<bool> started{false};
  bool stopped = false;         // wait() has returned
  asio::io_context control{1};  // runs the hard deadline timer once draining
  std::thread deadline_thread;
};

Server::Server(const Config& cfg) : impl_(std::make_unique<Impl>(cfg)) {}

Server::~Server() {
  if (impl_->started) {
    drain();
    wait();
  }
}
// wait() needs drain() first, else the I/O threads never end: run() and the destructor
// call them in that order.

std::uint16_t Server::port() const {
  return impl_->bound_port;
}

void Server::start() {
  if (impl_->started.exchange(true)) return;
  for (auto& wp : impl_->workers) {
    Worker& w = *wp;
    w.thread = std::thread([&w] {
      db::thread_init();
      w.cluster.start();
      asio::co_spawn(w.io, accept_loop(w), asio::detached);
      w.io.run();
      db::thread_end();
    });
  }
  log::info("listening", {{"address", impl_->cfg.server.listen},
                          {"port", std::to_string(impl_->bound_port)},
                          {"threads", std::to_string(impl_->workers.size())},
                          {"served_by", impl_->shared.served_by}});
}

void Server::drain() {
  if (impl_->drain_started.exchange(true)) return;
  impl_->shared.draining = true;
  log::info("draining",
            {{"deadline_ms", std::to_string(impl_->cfg.server.shutdown_deadline.count())}});
  for (auto& w : impl_->workers) asio::post(w->io, [wp = w.get()] { wp->begin_drain(); });
  // Hard deadline: after shutdown_deadline, close whatever is still open.
  impl_->deadline_thread = std::thread([impl = impl_.get()] {
    asio::steady_timer t(impl->control, impl->cfg.server.shutdown_deadline);
    t.async_wait([impl](boost::system::error_code ec) {
      if (ec) return;
      log::warn("shutdown deadline reached, closing remaining connections");
      for (auto& w : impl->workers) asio::post(w->io, [wp = w.get()] { wp->close_all(); });
    });
    impl->control.run();
  });
}

void Server::wait() {
  if (!impl_->started || impl_->stopped) return;
  for (auto& w : impl_->workers) {
    if (w->thread.joinable()) w->thread.join();
  }
  impl_->control.stop();
  if (impl_->deadline_thread.joinable()) impl_->deadline_thread.join();
  impl_->stopped = true;
  log::info("stopped");
}

int Server::run() {
  asio::io_context signals_io(1);
  asio::signal_set signals(signals_io, SIGTERM, SIGINT);
  start();
  signals.async_wait([this](boost::system::error_code ec, int sig) {
    if (ec) return;
    log::info("signal received", {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}});
    drain();
  });
  signals_io.run();
  wait();
  return 0;
}

}  // namespace webstack::http
