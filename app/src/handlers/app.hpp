// The application: routes a parsed request to its endpoint and produces a response.
// Transport-free (no Beast here): http/server.cpp parses the wire format into Request
// and writes Response back. One App per I/O thread, used only from that thread.
// Where each part is: the router (its table of endpoints), /plaintext, /json, /healthz,
// /readyz, /metrics and /api/info in app.cpp; the TechEmpower database tests in
// techempower.cpp; the guestbook in guestbook.cpp, its keyed posts in keyed_post.cpp;
// what they share (JSON answers, result fields, headers) in reply.hpp.
#pragma once

#include <boost/asio/awaitable.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/config.hpp"
#include "core/metrics.hpp"
#include "core/route.hpp"

namespace webstack::db {
class Cluster;
}

namespace webstack {

struct Request {
  std::string_view method;  // "GET", "POST", ...
  std::string_view target;  // "/queries?queries=5"
  std::string_view cookie;  // raw Cookie header, may be empty
  std::string_view content_type;
  std::string_view body;
  // The Idempotency-Key header as sent (absent: nullopt; several: joined with ", ", which
  // is then malformed).
  std::optional<std::string_view> idempotency_key;
};

struct Response {
  unsigned status = 200;
  std::string_view content_type = "text/plain; charset=utf-8";  // always a literal
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra, e.g. Set-Cookie
};

// State every thread's App reads; owned by main.
struct Shared {
  Metrics* metrics = nullptr;
  std::string served_by;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  std::atomic<bool> draining{false};  // set on SIGTERM: /readyz answers 503
  unsigned threads = 1;
};

class App {
 public:
  App(Shared& shared, db::Cluster& cluster, MetricsShard& metrics, unsigned seed);

  // Never throws: database failures become 503, other failures 500.
  boost::asio::awaitable<Response> handle(const Request& req, Route& route);

  // The route a path maps to (exposed for tests and for metrics of refused requests).
  static Route route_for(std::string_view path);

  // Registers the deletion of expired idempotency keys with the cluster (one worker of
  // the process does it). Call before the cluster starts.
  void start_housekeeping();

 private:
  // One row of the router's table (app.cpp): a path, the methods it answers, its route
  // and its handler.
  struct Endpoint;
  static std::span<const Endpoint> endpoints();

  // The endpoints, each called by the router with the request and its query string.
  boost::asio::awaitable<Response> plaintext(const Request& req, std::string_view query);
  boost::asio::awaitable<Response> json_message(const Request& req, std::string_view query);
  boost::asio::awaitable<Response> db_single(const Request& req, std::string_view query);
  boost::asio::awaitable<Response> db_queries(const Request& req, std::string_view query);
  boost::asio::awaitable<Response> fortunes(const Request& req, std::string_view query);
  boost::asio::awaitable<Response> updates(const Request& req, std::string_view query);
  boost::asio::awaitable<Response> messages_json(const Request& req, std::string_view query);
  boost::asio::awaitable<Response> guestbook(const Request& req, std::string_view query);
  boost::asio::awaitable<Response> messages_post(const Request& req, std::string_view query);
  boost::asio::awaitable<Response> healthz(const Request& req, std::string_view query);
  boost::asio::awaitable<Response> readyz(const Request& req, std::string_view query);
  boost::asio::awaitable<Response> metrics_page(const Request& req, std::string_view query);
  boost::asio::awaitable<Response> info(const Request& req, std::string_view query);

  // The messages as JSON (messages_json) or as the guestbook page (guestbook).
  boost::asio::awaitable<Response> messages_list(const Request& req, std::string_view query,
                                                 bool html);
  // The post's write under an idempotency key (docs/high-availability.md, "Exactly-once
  // writes"): stored with the key in one transaction, or answered from the stored key.
  boost::asio::awaitable<Response> messages_post_keyed(const Request& req, const std::string& key,
                                                       const std::string& author,
                                                       const std::string& text, bool form);
  boost::asio::awaitable<void> delete_expired_keys();

  int random_id() { return dist_(rng_); }

  Shared& shared_;
  db::Cluster& cluster_;
  MetricsShard& metrics_;
  std::minstd_rand rng_;
  std::uniform_int_distribution<int> dist_{1, 10000};
};

// Renders the TechEmpower fortunes page (rows must already be sorted).
std::string render_fortunes(const std::vector<std::pair<std::int64_t, std::string>>& rows);

// Validation of a guestbook post; empty `field` means valid.
struct MessageError {
  std::string field;
  std::string reason;
};
MessageError validate_message(std::string_view author, std::string_view text);

}  // namespace webstack
