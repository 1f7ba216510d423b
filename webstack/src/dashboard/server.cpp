// The dashboard's HTTP server: one I/O thread (coroutines), a worker thread for the
// actions (starting or stopping the load generator joins a thread), the Hub's snapshots
// read under its mutex only.
#include <fmt/format.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <cstdio>
#include <map>
#include <stdexcept>

#include "common/process.hpp"
#include "dashboard/dashboard.hpp"
#include "dashboard/hub.hpp"
#include "lab/status.hpp"

namespace webstack::dashboard {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

// Scripts from this server only; styles may be set by the page's script; nothing framed.
constexpr const char* kCsp =
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' "
    "data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

struct Page {
  std::string type, body;
};

struct Server {
  Hub& hub;
  std::map<std::string, Page> pages;  // by path
  std::string token;
  std::vector<std::string> hosts;    // accepted Host headers
  std::vector<std::string> origins;  // accepted Origin headers
  asio::thread_pool& workers;
};

using Request = bhttp::request<bhttp::string_body>;
using Response = bhttp::response<bhttp::string_body>;

Response reply(const Request& req, unsigned status, const std::string& type, std::string body) {
  Response res{static_cast<bhttp::status>(status), req.version()};
  res.set(bhttp::field::content_type, type);
  res.set(bhttp::field::cache_control, "no-store");
  res.set("X-Content-Type-Options", "nosniff");
  res.set("X-Frame-Options", "DENY");
  res.set("Referrer-Policy", "no-referrer");
  res.set("Content-Security-Policy", kCsp);
  res.keep_alive(req.keep_alive());
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

Response json_reply(const Request& req, unsigned status, std::string body) {
  return reply(req, status, "application/json", std::move(body));
}

Response json_error(const Request& req, unsigned status, const std::string& why) {
  return json_reply(req, status, error_json(why));
}

// Compares without stopping at the first difference (the token is a secret).
bool same_secret(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (std::size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

bool one_of(const std::vector<std::string>& allowed, std::string_view v) {
  for (const auto& a : allowed) {
    if (a == v) return true;
  }
  return false;
}

asio::awaitable<Response> handle(Server& s, const Request& req) {
  if (!one_of(s.hosts, req[bhttp::field::host])) {
    co_return json_error(req, 403,
                         fmt::format("unexpected Host header: use http://{}/", s.hosts.front()));
  }
  const std::string_view target = req.target();
  const auto q = target.find('?');
  const std::string path(target.substr(0, q));
  const std::string query(q == std::string_view::npos ? "" : target.substr(q + 1));
  const bool get = req.method() == bhttp::verb::get || req.method() == bhttp::verb::head;

  if (path == "/api/action") {
    if (req.method() != bhttp::verb::post) co_return json_error(req, 405, "POST only");
    if (!same_secret(req["X-Dashboard-Token"], s.token)) {
      co_return json_error(req, 403,
                           "missing or wrong X-Dashboard-Token: open the URL `webstack dashboard` "
                           "printed (with its #token=...)");
    }
    if (const auto origin = req[bhttp::field::origin];
        !origin.empty() && !one_of(s.origins, origin)) {
      co_return json_error(req, 403, fmt::format("foreign Origin {}", std::string(origin)));
    }
    if (req[bhttp::field::content_type].substr(0, 16) != "application/json") {
      co_return json_error(req, 415, "Content-Type must be application/json");
    }
    // Off the I/O thread: starting and stopping the load generator joins a thread.
    const Reply r = co_await asio::co_spawn(
        s.workers, [&]() -> asio::awaitable<Reply> { co_return s.hub.act(req.body()); },
        asio::use_awaitable);
    co_return json_reply(req, r.status, r.json);
  }
  if (!get) co_return json_error(req, 405, "GET only");
  if (path == "/api/state") co_return json_reply(req, 200, s.hub.state_json());
  if (path == "/api/requests") {
    std::uint64_t after = 0;
    if (query.rfind("after=", 0) == 0) {
      try {
        after = std::stoull(query.substr(6));
      } catch (const std::exception&) {
        co_return json_error(req, 400, "after: a number");
      }
    }
    co_return json_reply(req, 200, s.hub.requests_json(after));
  }
  if (path == "/favicon.ico") co_return reply(req, 204, "image/x-icon", "");
  const auto page = s.pages.find(path == "/" ? "/index.html" : path);
  if (page == s.pages.end()) co_return json_error(req, 404, fmt::format("no such page: {}", path));
  co_return reply(req, 200, page->second.type, page->second.body);
}

asio::awaitable<void> session(Server& s, tcp::socket socket) {
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  for (;;) {
    stream.expires_after(60s);  // an idle keep-alive connection
    bhttp::request_parser<bhttp::string_body> parser;
    parser.header_limit(16 * 1024);
    parser.body_limit(64 * 1024);
    beast::error_code ec;
    co_await bhttp::async_read(stream, buffer, parser,
                               asio::redirect_error(asio::use_awaitable, ec));
    if (ec == bhttp::error::end_of_stream || ec == beast::error::timeout ||
        ec == asio::error::connection_reset || ec == asio::error::eof) {
      break;
    }
    Response res;
    bool close = false;
    if (ec) {
      // A malformed request: say so, then close (the stream's framing is lost).
      Request bad;
      bad.version(11);
      res = json_error(bad, ec == bhttp::error::body_limit ? 413 : 400,
                       fmt::format("bad request: {}", ec.message()));
      close = true;
    } else {
      const Request req = parser.release();
      res = co_await handle(s, req);
      close = !req.keep_alive();
      // HEAD: the headers (Content-Length as for GET), no body.
      if (req.method() == bhttp::verb::head) res.body().clear();
    }
    res.keep_alive(!close);
    stream.expires_after(30s);
    co_await bhttp::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
    if (ec || close) break;
  }
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
}

asio::awaitable<void> accept_loop(Server& s, tcp::acceptor& acceptor) {
  for (;;) {
    beast::error_code ec;
    tcp::socket socket =
        co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (ec == asio::error::operation_aborted) co_return;
    if (ec) continue;  // e.g. out of descriptors for a moment
    asio::co_spawn(acceptor.get_executor(), session(s, std::move(socket)),
                   [](const std::exception_ptr& e) {
                     if (!e) return;
                     try {
                       std::rethrow_exception(e);
                     } catch (const std::exception& ex) {
                       std::fprintf(stderr, "dashboard: a connection failed: %s\n", ex.what());
                     }
                   });
  }
}

std::map<std::string, Page> read_pages(const std::string& dir) {
  std::map<std::string, Page> pages;
  for (const auto& [name, type] : {std::pair{"index.html", "text/html; charset=utf-8"},
                                   std::pair{"dashboard.js", "text/javascript; charset=utf-8"},
                                   std::pair{"dashboard.css", "text/css; charset=utf-8"}}) {
    const std::string path = fmt::format("{}/{}", dir, name);
    std::string body = read_text_or_empty(path);
    if (body.empty()) {
      throw std::runtime_error(fmt::format(
          "{}: missing or empty (the page's files: dashboard/ of webstack's sources, env "
          "WEBSTACK_DASHBOARD)",
          path));
    }
    pages[fmt::format("/{}", name)] = {type, std::move(body)};
  }
  return pages;
}

}  // namespace

void run_dashboard(const topo::Topology& t, const DashboardOptions& o) {
  const auto bind = asio::ip::make_address(o.bind);
  if (!bind.is_loopback()) {
    throw std::runtime_error(fmt::format(
        "--bind {}: the dashboard binds to a loopback address only (it can break the lab)",
        o.bind));
  }
  lab::require_up(t, o.state_dir);
  auto pages = read_pages(o.www_dir);

  asio::io_context io;
  tcp::acceptor acceptor(io);
  const tcp::endpoint ep(bind, o.port);
  beast::error_code ec;
  acceptor.open(ep.protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(ep, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    throw std::runtime_error(
        fmt::format("cannot listen on {}:{}: {} (--port)", o.bind, o.port, ec.message()));
  }
  const auto port = acceptor.local_endpoint().port();

  HubOptions hub_options{o.state_dir, o.topology_file, o.cli_path};
  Hub hub(t, hub_options);
  asio::thread_pool workers(1);
  const std::string host = bind.is_v6() ? fmt::format("[{}]", o.bind) : o.bind;
  Server s{hub,
           std::move(pages),
           o.token.empty() ? random_token(32) : o.token,
           {fmt::format("{}:{}", host, port), fmt::format("localhost:{}", port)},
           {fmt::format("http://{}:{}", host, port), fmt::format("http://localhost:{}", port)},
           workers};

  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const beast::error_code&, int) {
    beast::error_code ignored;
    acceptor.close(ignored);
    io.stop();
  });
  asio::co_spawn(io, accept_loop(s, acceptor), asio::detached);
  std::printf("dashboard: http://%s:%u/#token=%s\n", host.c_str(), port, s.token.c_str());
  std::printf("dashboard: lab %s; state changes need the token above; ^C stops it\n",
              t.name.c_str());
  std::fflush(stdout);
  io.run();
  workers.join();
}

}  // namespace webstack::dashboard
