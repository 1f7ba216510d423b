#include "handlers/app.hpp"

#include <fmt/format.h>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>

#include <exception>

#include "core/log.hpp"
#include "db/cluster.hpp"
#include "handlers/reply.hpp"

namespace webstack {

namespace asio = boost::asio;
namespace json = boost::json;

App::App(Shared& shared, db::Cluster& cluster, MetricsShard& metrics, unsigned seed)
    : shared_(shared), cluster_(cluster), metrics_(metrics), rng_(seed == 0 ? 1 : seed) {}

Route App::route_for(std::string_view path) {
  if (path == "/plaintext") return Route::Plaintext;
  if (path == "/json") return Route::Json;
  if (path == "/db") return Route::Db;
  if (path == "/queries") return Route::Queries;
  if (path == "/fortunes") return Route::Fortunes;
  if (path == "/updates") return Route::Updates;
  if (path == "/api/messages") return Route::MessagesList;  // POST is told apart in dispatch
  if (path == "/" || path == "/guestbook") return Route::Guestbook;
  if (path == "/healthz") return Route::Healthz;
  if (path == "/readyz") return Route::Readyz;
  if (path == "/metrics") return Route::Metrics;
  if (path == "/api/info") return Route::Info;
  return Route::NotFound;
}

asio::awaitable<Response> App::handle(const Request& req, Route& route) {
  std::string_view target = req.target;
  auto qpos = target.find('?');
  std::string_view path = target.substr(0, qpos);
  std::string_view query =
      qpos == std::string_view::npos ? std::string_view{} : target.substr(qpos + 1);
  route = route_for(path);
  if (route == Route::MessagesList && req.method == "POST") route = Route::MessagesPost;
  try {
    co_return co_await dispatch(req, route, query);
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

asio::awaitable<Response> App::dispatch(const Request& req, Route route, std::string_view query) {
  const bool get = req.method == "GET" || req.method == "HEAD";
  if (route == Route::NotFound) co_return error_response(404, "not found");
  if (route == Route::MessagesPost) co_return co_await messages_post(req);
  if (!get) {
    Response r = error_response(405, "method not allowed");
    r.headers.emplace_back("Allow", route == Route::MessagesList ? "GET, HEAD, POST" : "GET, HEAD");
    co_return r;
  }
  switch (route) {
    case Route::Plaintext: {
      Response r;
      r.body = "Hello, World!";
      co_return r;
    }
    case Route::Json:
      co_return json_response(200, json::object{{"message", "Hello, World!"}});
    case Route::Db:
      co_return co_await db_single();
    case Route::Queries:
      co_return co_await db_queries(query);
    case Route::Fortunes:
      co_return co_await fortunes();
    case Route::Updates:
      co_return co_await updates(query);
    case Route::MessagesList:
      co_return co_await messages_list(req, query, false);
    case Route::Guestbook:
      co_return co_await messages_list(req, query, true);
    case Route::Healthz: {
      Response r;
      r.body = "ok\n";
      co_return r;
    }
    case Route::Readyz:
      co_return readyz();
    case Route::Metrics: {
      Response r;
      r.content_type = "text/plain; version=0.0.4; charset=utf-8";
      r.body = shared_.metrics->render();
      co_return r;
    }
    case Route::Info:
      co_return info();
    default:
      co_return error_response(404, "not found");
  }
}

Response App::readyz() const {
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
  return r;
}

Response App::info() const {
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
  return json_response(
      200, json::object{{"host", shared_.served_by},
                        {"version", WEBSTACK_VERSION},
                        {"uptime_seconds", uptime.count()},
                        {"threads", shared_.threads},
                        {"draining", shared_.draining.load()},
                        {"db", json::object{{"primary", primary}, {"nodes", std::move(nodes)}}}});
}

}  // namespace webstack
