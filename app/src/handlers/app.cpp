#include "handlers/app.hpp"

#include <fmt/format.h>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>

#include <exception>
#include <span>
#include <string>

#include "core/log.hpp"
#include "db/cluster.hpp"
#include "handlers/reply.hpp"

namespace webstack {

namespace asio = boost::asio;
namespace json = boost::json;

App::App(Shared& shared, db::Cluster& cluster, MetricsShard& metrics, unsigned seed)
    : shared_(shared), cluster_(cluster), metrics_(metrics), rng_(seed == 0 ? 1 : seed) {}

namespace {

// The methods an endpoint answers. kGet answers HEAD too (the server sends no body).
constexpr unsigned kGet = 1;
constexpr unsigned kPost = 2;

bool accepts(unsigned methods, std::string_view method) {
  return ((methods & kGet) != 0 && (method == "GET" || method == "HEAD")) ||
         ((methods & kPost) != 0 && method == "POST");
}

std::string allow_header(unsigned methods) {
  std::string out = (methods & kGet) != 0 ? "GET, HEAD" : "";
  if ((methods & kPost) != 0) out += out.empty() ? "POST" : ", POST";
  return out;
}

}  // namespace

struct App::Endpoint {
  std::string_view path;
  unsigned methods;
  Route route;
  asio::awaitable<Response> (App::*handler)(const Request& req, std::string_view query);
};

// The router: every endpoint the app answers. A path answers the methods of its rows; any
// other method gets 405 with an Allow header naming them, counted under the route of the
// path's first row (route_for()); a path not here gets 404.
std::span<const App::Endpoint> App::endpoints() {
  static constexpr Endpoint kTable[] = {
      {"/plaintext", kGet, Route::Plaintext, &App::plaintext},
      {"/json", kGet, Route::Json, &App::json_message},
      {"/db", kGet, Route::Db, &App::db_single},
      {"/queries", kGet, Route::Queries, &App::db_queries},
      {"/fortunes", kGet, Route::Fortunes, &App::fortunes},
      {"/updates", kGet, Route::Updates, &App::updates},
      {"/api/messages", kGet, Route::MessagesList, &App::messages_json},
      {"/api/messages", kPost, Route::MessagesPost, &App::messages_post},
      {"/", kGet, Route::Guestbook, &App::guestbook},
      {"/guestbook", kGet, Route::Guestbook, &App::guestbook},
      {"/healthz", kGet, Route::Healthz, &App::healthz},
      {"/readyz", kGet, Route::Readyz, &App::readyz},
      {"/metrics", kGet, Route::Metrics, &App::metrics_page},
      {"/api/info", kGet, Route::Info, &App::info},
  };
  return kTable;
}

Route App::route_for(std::string_view path) {
  for (const Endpoint& e : endpoints()) {
    if (e.path == path) return e.route;
  }
  return Route::NotFound;
}

asio::awaitable<Response> App::handle(const Request& req, Route& route) {
  std::string_view target = req.target;
  auto qpos = target.find('?');
  std::string_view path = target.substr(0, qpos);
  std::string_view query =
      qpos == std::string_view::npos ? std::string_view{} : target.substr(qpos + 1);
  const Endpoint* endpoint = nullptr;
  unsigned allowed = 0;  // the methods of the path's rows
  route = route_for(path);
  for (const Endpoint& e : endpoints()) {
    if (e.path != path) continue;
    allowed |= e.methods;
    if (accepts(e.methods, req.method)) {
      endpoint = &e;
      route = e.route;
      break;
    }
  }
  try {
    if (allowed == 0) co_return error_response(404, "not found");
    if (endpoint == nullptr) {
      Response r = error_response(405, "method not allowed");
      r.headers.emplace_back("Allow", allow_header(allowed));
      co_return r;
    }
    co_return co_await (this->*endpoint->handler)(req, query);
  } catch (const db::Unavailable& e) {
    co_return error_response(503, fmt::format("database unavailable: {}", e.what()));
  } catch (const db::QueryError& e) {
    log::error("query failed", {{"route", route_name(route)}, {"error", e.what()}});
    co_return error_response(500, "database error");
  } catch (const std::exception& e) {
    log::error("handler failed", {{"route", route_name(route)}, {"error", e.what()}});
    co_return error_response(500, "internal error");
  }
}

asio::awaitable<Response> App::plaintext(const Request&, std::string_view) {
  Response r;
  r.body = "Hello, World!";
  co_return r;
}

asio::awaitable<Response> App::json_message(const Request&, std::string_view) {
  co_return json_response(200, json::object{{"message", "Hello, World!"}});
}

asio::awaitable<Response> App::healthz(const Request&, std::string_view) {
  Response r;
  r.body = "ok\n";
  co_return r;
}

asio::awaitable<Response> App::readyz(const Request&, std::string_view) {
  Response r;
  if (shared_.draining.load(std::memory_order_relaxed)) {
    r.status = 503;
    r.body = "draining\n";
  } else if (!cluster_.any_reachable()) {
    r.status = 503;
    r.body = "no database node reachable\n";
  } else {
    r.body = "ready\n";
  }
  co_return r;
}

asio::awaitable<Response> App::metrics_page(const Request&, std::string_view) {
  Response r;
  r.content_type = "text/plain; version=0.0.4; charset=utf-8";
  r.body = shared_.metrics->render();
  co_return r;
}

asio::awaitable<Response> App::info(const Request&, std::string_view) {
  json::array nodes;
  json::value primary = nullptr;
  for (const auto& n : cluster_.status()) {
    json::object o{{"name", n.name},
                   {"reachable", n.reachable},
                   {"writable", n.writable},
                   {"replicating", n.replicating},
                   {"lag_ms", n.lag_ms ? json::value(*n.lag_ms) : json::value(nullptr)},
                   {"last_error", n.last_error}};
    if (n.writable && primary.is_null()) primary = json::string(n.name);
    nodes.push_back(std::move(o));
  }
  auto uptime = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() -
                                                                 shared_.started);
  co_return json_response(
      200, json::object{{"host", shared_.served_by},
                        {"version", WEBSTACK_VERSION},
                        {"uptime_seconds", uptime.count()},
                        {"threads", shared_.threads},
                        {"draining", shared_.draining.load()},
                        {"db", json::object{{"primary", primary}, {"nodes", std::move(nodes)}}}});
}

}  // namespace webstack
