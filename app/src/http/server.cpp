#include "http/server.hpp"

#include <systemd/sd-daemon.h>

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
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include <unistd.h>
#include <ctime>
#include <functional>
#include <list>
#include <random>
#include <stdexcept>
#include <thread>

#include "core/log.hpp"
#include "core/text.hpp"
#include "db/cluster.hpp"
#include "db/library.hpp"
#include "handlers/app.hpp"
#include "net/deadline.hpp"

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
// One connection: its socket, its deadline (which cancels the socket's pending operation,
// rather than closing it, so that a 408 can still be written) and its output buffer.
struct Conn {
  explicit Conn(tcp::socket s)
      : socket(std::move(s)), deadline(socket.get_executor(), CancelSocket{&socket}) {}
  struct CancelSocket {
    tcp::socket* socket;
    void operator()() const {
      boost::system::error_code ignored;
      socket->cancel(ignored);
    }
  };
  tcp::socket socket;
  net::Deadline<CancelSocket> deadline;
  bool idle = true;  // waiting for the first byte of a request
  std::string out;   // the response being written; its capacity is reused
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
        rng(std::random_device{}() + index) {
    if (index == 0) app.start_housekeeping();
  }

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

  std::string new_request_id() {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string id(32, '0');
    for (int half = 0; half < 2; ++half) {
      std::uint64_t r = rng();
      for (int i = 0; i < 16; ++i, r >>= 4)
        id[static_cast<std::size_t>(half) * 16 + static_cast<std::size_t>(i)] = kHex[r & 0xF];
    }
    return id;
  }

  // Called on this worker's thread.
  void begin_drain() {
    if (draining) return;
    draining = true;
    boost::system::error_code ec;
    acceptor.close(ec);
    for (Conn* c : conns) {
      if (c->idle) c->deadline.expire_after(cfg.server.shutdown_idle_grace);
    }
    maybe_finish();
  }
  // Called on this worker's thread at the hard deadline.
  void close_all() {
    for (Conn* c : conns) {
      boost::system::error_code ec;
      c->socket.close(ec);
      c->deadline.cancel();
    }
    cluster.stop();
  }
  void maybe_finish() {
    if (draining && conns.empty()) cluster.stop();
  }
};

namespace {

// Serialises a response into c.out: status line, the common headers, the handler's extra
// headers, then the body (none for HEAD, whose Content-Length is still the GET one's).
void serialize(Worker& w, Conn& c, unsigned version, unsigned status, std::string_view content_type,
               std::string_view request_id, bool keep_alive, const Response* extra,
               std::string_view body, bool head) {
  std::string& out = c.out;
  out.clear();
  auto reason = bhttp::obsolete_reason(static_cast<bhttp::status>(status));
  fmt::format_to(std::back_inserter(out),
                 "HTTP/1.{} {} {}\r\nServer: {}\r\nDate: {}\r\nContent-Type: {}\r\n"
                 "Content-Length: {}\r\nX-Served-By: {}\r\nX-Request-Id: {}\r\n",
                 version == 10 ? 0 : 1, status, std::string_view(reason.data(), reason.size()),
                 w.cfg.server.server_header, w.date.now(), content_type, body.size(),
                 w.shared.served_by, request_id);
  if (extra) {
    for (const auto& [name, value] : extra->headers) {
      out += name;
      out += ": ";
      out += value;
      out += "\r\n";
    }
  }
  if (!keep_alive) {
    out += "Connection: close\r\n";
  } else if (version == 10) {
    out += "Connection: keep-alive\r\n";
  }
  out += "\r\n";
  if (!head) out += body;
}

asio::awaitable<void> send(Worker& w, Conn& c, boost::system::error_code& ec) {
  c.deadline.expire_after(w.cfg.server.idle_timeout);  // a client that never reads
  co_await asio::async_write(c.socket, asio::buffer(c.out),
                             asio::redirect_error(asio::use_awaitable, ec));
  c.deadline.clear();
}

// A refusal before routing (400, 408, 413, 431): the connection is closed after it.
asio::awaitable<void> refuse(Worker& w, Conn& c, unsigned status, std::string_view why,
                             std::string_view request_id) {
  const std::string body = fmt::format("{} {}\n", status, why);
  serialize(w, c, 11, status, "text/plain; charset=utf-8", request_id, false, nullptr, body, false);
  boost::system::error_code ec;
  co_await send(w, c, ec);
  w.metrics.record_request(Route::NotFound, status, 0ns);
  log::info("request refused",
            {{"status", std::to_string(status)}, {"reason", why}, {"request_id", request_id}});
}

using HttpRequest = bhttp::request<bhttp::string_body>;

// Takes a session's connection off its worker's list when the session ends.
struct Unregister {
  Worker& w;
  std::list<Conn*>::iterator it;
  ~Unregister() {
    w.conns.erase(it);
    w.maybe_finish();
  }
};

// What a request that could not be read earns.
struct Refusal {
  unsigned status;
  std::string_view why;
};

// The refusal of a failed read (`ec`), or none when nobody is left to answer.
std::optional<Refusal> refusal_for(const boost::system::error_code& ec, bool timed_out) {
  if (timed_out) {
    return Refusal{408, "request timeout"};
  } else if (ec == bhttp::error::header_limit) {
    return Refusal{431, "request header fields too large"};
  } else if (ec == bhttp::error::body_limit) {
    return Refusal{413, "content too large"};
  } else if (ec == bhttp::error::end_of_stream || ec == bhttp::error::partial_message ||
             ec.category() != bhttp::make_error_code(bhttp::error::bad_target).category()) {
    // The peer closed or the socket failed: nobody to answer.
    return std::nullopt;
  } else {
    return Refusal{400, "bad request"};
  }
}

// The client's X-Request-Id when acceptable, else a new one.
std::string request_id_for(Worker& w, const HttpRequest& req) {
  std::string_view incoming_id = req["X-Request-Id"];
  return text::acceptable_request_id(incoming_id) ? std::string(incoming_id) : w.new_request_id();
}

// The handler's view of `req`; several Idempotency-Key headers are joined into
// `joined_keys`, which the result points into.
Request to_request(const HttpRequest& req, std::string& joined_keys) {
  Request in{
      req.method_string(), req.target(), req[bhttp::field::cookie], req[bhttp::field::content_type],
      req.body(),          std::nullopt};
  if (const auto n = req.count("Idempotency-Key"); n == 1) {
    in.idempotency_key = req["Idempotency-Key"];
  } else if (n > 1) {
    for (auto [it, end] = req.equal_range("Idempotency-Key"); it != end; ++it) {
      joined_keys += (joined_keys.empty() ? "" : ", ") + std::string(it->value());
    }
    in.idempotency_key = joined_keys;
  }
  return in;
}

void log_access(const HttpRequest& req, unsigned status, Route route,
                std::chrono::steady_clock::duration elapsed, std::string_view request_id) {
  log::info("access", {{"method", req.method_string()},
                       {"target", req.target()},
                       {"status", std::to_string(status)},
                       {"route", route_name(route)},
                       {"us", std::to_string(elapsed / 1us)},
                       {"request_id", request_id}});
}

asio::awaitable<void> session(Worker& w, tcp::socket socket) {
  Conn c(std::move(socket));
  w.conns.push_front(&c);
  Unregister unregister{w, w.conns.begin()};

  const auto& sc = w.cfg.server;
  beast::flat_buffer buffer;
  boost::system::error_code ec;
  for (;;) {
    // The first bytes of the next request must come within the idle timeout (or the drain
    // grace): an idle keep-alive connection is closed silently.
    if (buffer.size() == 0) {
      c.idle = true;
      c.deadline.expire_after(w.draining ? sc.shutdown_idle_grace : sc.idle_timeout);
      std::size_t n = co_await c.socket.async_read_some(
          buffer.prepare(4096), asio::redirect_error(asio::use_awaitable, ec));
      buffer.commit(n);
      c.idle = false;
      if (ec) break;
    }

    // Headers (and then the body) must arrive within header_timeout: slowloris -> 408.
    bhttp::request_parser<bhttp::string_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(sc.header_limit));
    parser.body_limit(sc.body_limit);
    c.deadline.expire_after(sc.header_timeout);
    co_await bhttp::async_read_header(c.socket, buffer, parser,
                                      asio::redirect_error(asio::use_awaitable, ec));
    if (!ec && !parser.is_done()) {
      // A client that asks first (curl does above 1 KiB) gets its go-ahead; an oversized
      // body is refused by the parser from the declared length before this point.
      if (beast::iequals(parser.get()[bhttp::field::expect], "100-continue")) {
        static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
        co_await asio::async_write(c.socket, asio::buffer(kContinue),
                                   asio::redirect_error(asio::use_awaitable, ec));
      }
      if (!ec) {
        co_await bhttp::async_read(c.socket, buffer, parser,
                                   asio::redirect_error(asio::use_awaitable, ec));
      }
    }
    const bool timed_out = c.deadline.fired();
    c.deadline.clear();
    if (ec) {
      const std::string rid = w.new_request_id();
      if (const auto refusal = refusal_for(ec, timed_out)) {
        co_await refuse(w, c, refusal->status, refusal->why, rid);
      }
      break;
    }

    auto& req = parser.get();
    const auto started = std::chrono::steady_clock::now();
    const std::string request_id = request_id_for(w, req);

    if (req.target().empty() || req.target().front() != '/') {
      co_await refuse(w, c, 400, "bad request target", request_id);
      break;
    }

    std::string joined_keys;
    const Request in = to_request(req, joined_keys);
    Route route = Route::NotFound;
    w.metrics.in_flight_add(1);
    Response out = co_await w.app.handle(in, route);
    w.metrics.in_flight_add(-1);

    const bool keep_alive = req.keep_alive() && !w.draining;
    serialize(w, c, req.version(), out.status, out.content_type, request_id, keep_alive, &out,
              out.body, req.method() == bhttp::verb::head);
    co_await send(w, c, ec);
    const auto elapsed = std::chrono::steady_clock::now() - started;
    w.metrics.record_request(route, out.status, elapsed);
    if (sc.access_log) log_access(req, out.status, route, elapsed, request_id);
    if (ec || !keep_alive) break;
  }
  c.deadline.cancel();
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
    asio::co_spawn(w.io, session(w, std::move(socket)), [](const std::exception_ptr& e) {
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
  asio::io_context control{1};  // runs the lame duck and hard deadline timers once draining
  std::unique_ptr<asio::steady_timer> lameduck_timer;  // on `control`
  std::atomic<bool> lameduck_cut{false};
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
  // /readyz answers 503 from now on. During the lame duck everything else is served as
  // before, so that load balancers (which check /readyz) take this server out of their
  // rotation before it stops accepting: no request is refused or cut.
  impl_->shared.draining = true;
  const auto lameduck = impl_->cfg.server.shutdown_lameduck;
  if (lameduck.count() > 0) {
    log::info("lame duck: /readyz 503, still serving",
              {{"lameduck_ms", std::to_string(lameduck.count())}});
  }
  // The control thread runs the two timers: end of the lame duck (workers stop accepting
  // and drain), then the hard deadline (close whatever is still open).
  impl_->lameduck_timer = std::make_unique<asio::steady_timer>(impl_->control, lameduck);
  impl_->deadline_thread = std::thread([impl = impl_.get()] {
    asio::steady_timer deadline_timer(impl->control);
    impl->lameduck_timer->async_wait([impl, &deadline_timer](boost::system::error_code ec) {
      // Cancelled: only end_lameduck() does that, and then draining starts now.
      if (ec && !impl->lameduck_cut.load()) return;
      log::info("draining",
                {{"deadline_ms", std::to_string(impl->cfg.server.shutdown_deadline.count())}});
      for (auto& w : impl->workers) asio::post(w->io, [wp = w.get()] { wp->begin_drain(); });
      deadline_timer.expires_after(impl->cfg.server.shutdown_deadline);
      deadline_timer.async_wait([impl](boost::system::error_code ec2) {
        if (ec2) return;
        log::warn("shutdown deadline reached, closing remaining connections");
        for (auto& w : impl->workers) asio::post(w->io, [wp = w.get()] { wp->close_all(); });
      });
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

void Server::end_lameduck() {
  if (!impl_->drain_started.load() || impl_->lameduck_cut.exchange(true)) return;
  if (impl_->cfg.server.shutdown_lameduck.count() > 0) log::info("lame duck cut short");
  asio::post(impl_->control, [impl = impl_.get()] { impl->lameduck_timer->cancel(); });
}

int Server::run() {
  asio::io_context signals_io(1);
  asio::signal_set signals(signals_io, SIGTERM, SIGINT);
  start();
  // Under systemd (Type=notify): listening, the unit is up. A no-op elsewhere.
  sd_notify(0, "READY=1");
  std::thread waiter;  // wait()s once draining, then ends the signal loop
  std::function<void(boost::system::error_code, int)> on_signal = [&](boost::system::error_code ec,
                                                                      int sig) {
    if (ec) return;
    log::info("signal received", {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}});
    const bool first = !impl_->drain_started.load();
    if (first) sd_notify(0, "STOPPING=1");
    drain();
    if (sig == SIGINT || !first) end_lameduck();
    if (first) {
      waiter = std::thread([this, &signals_io] {
        wait();
        signals_io.stop();
      });
    }
    signals.async_wait(on_signal);
  };
  signals.async_wait(on_signal);
  signals_io.run();
  if (waiter.joinable()) waiter.join();
  return 0;
}

}  // namespace webstack::http
