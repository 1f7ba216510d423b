#include "handlers/app.hpp"

#include <fmt/format.h>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <exception>

#include "core/idempotency.hpp"
#include "core/log.hpp"
#include "core/text.hpp"
#include "db/cluster.hpp"

namespace webstack {

namespace asio = boost::asio;
namespace json = boost::json;

namespace {

constexpr std::string_view kJson = "application/json";
constexpr std::string_view kHtml = "text/html; charset=utf-8";
constexpr std::string_view kGtidCookie = "ws_gtid";
constexpr std::string_view kKeyHeader = "Idempotency-Key";
constexpr std::string_view kKeyField = "idempotency_key";  // the guestbook form's
constexpr unsigned kDuplicateKey = 1062;                   // ER_DUP_ENTRY
constexpr unsigned kLockWaitTimeout = 1205;                // ER_LOCK_WAIT_TIMEOUT
constexpr unsigned kDeadlock = 1213;                       // ER_LOCK_DEADLOCK
constexpr std::size_t kMaxAuthor = 64;
constexpr std::size_t kMaxText = 2000;

constexpr std::string_view kSelectWorld = "SELECT id, randomNumber FROM World WHERE id = ?";

Response json_response(unsigned status, const json::value& v) {
  Response r;
  r.status = status;
  r.content_type = kJson;
  r.body = json::serialize(v);
  return r;
}

Response error_response(unsigned status, std::string_view message) {
  return json_response(status, json::object{{"error", message}});
}

std::int64_t as_int(const db::Field& f) {
  if (const auto* i = std::get_if<std::int64_t>(&f)) return *i;
  if (const auto* d = std::get_if<double>(&f)) return static_cast<std::int64_t>(*d);
  if (const auto* s = std::get_if<std::string>(&f)) return std::stoll(*s);
  return 0;
}

std::string as_text(const db::Field& f) {
  if (const auto* s = std::get_if<std::string>(&f)) return *s;
  if (const auto* i = std::get_if<std::int64_t>(&f)) return std::to_string(*i);
  if (const auto* d = std::get_if<double>(&f)) return fmt::format("{}", *d);
  return {};
}

void append_world(std::string& out, std::int64_t id, std::int64_t number) {
  fmt::format_to(std::back_inserter(out), R"({{"id":{},"randomNumber":{}}})", id, number);
}

// One SELECT per row, each fetched on its own (the TechEmpower rule: no IN list), sent
// as one multi-statement round trip: MariaDB then wakes once per request, not once per
// row, which on two shared cores is most of a point select's cost. The ids are ours.
std::string select_worlds_sql(const std::vector<std::int64_t>& ids) {
  std::string sql;
  sql.reserve(ids.size() * 56);
  for (const std::int64_t id : ids) {
    fmt::format_to(std::back_inserter(sql), "SELECT id, randomNumber FROM World WHERE id = {};",
                   id);
  }
  return sql;
}

// Which node answered, for every database response.
void tag_node(Response& r, const std::string& node) {
  r.headers.emplace_back("X-DB-Node", node);
}

// Read-your-writes: later reads carrying this cookie wait for the GTID on a replica.
void set_gtid(Response& r, const std::string& gtid) {
  if (gtid.empty()) return;
  r.headers.emplace_back(
      "Set-Cookie",
      fmt::format("{}={}; Path=/; Max-Age=300; HttpOnly; SameSite=Lax", kGtidCookie, gtid));
  r.headers.emplace_back("X-GTID", gtid);
}

// A keyed post's answer, first time or replayed: the stored status and body, and the
// GTID that covers the write (known only after the commit, so it is not stored).
struct KeyedAnswer {
  unsigned status = 0;
  std::string body;  // as stored: the JSON without "gtid", or the form's text
  std::string gtid;
  std::string node;
  bool replayed = false;
  bool mismatch = false;  // the key was stored for another request
};

struct KeyedWrite {
  std::string_view key, hash, author, text, served_by;
  bool form = false;
  std::chrono::seconds ttl;
  long lock_wait_s = 1;  // how long the key's INSERT waits for a run in progress
};

// A run under the same key held it past the lock wait: Cluster::write_repeatable tries
// again until its deadline (waiting for that run), then 409.
class KeyInProgress : public db::Unavailable {
  using Unavailable::Unavailable;
};

// Ends a batch's open transaction before the connection goes back to the pool; a
// connection whose ROLLBACK failed is never pooled again.
asio::awaitable<void> rollback(db::Lease& lease) {
  try {
    co_await lease.query("ROLLBACK");
  } catch (...) {
    lease.discard();
    throw;
  }
}

constexpr std::string_view kFormAnswer = "See /guestbook\n";

// One attempt on a write connection. The whole transaction is one round trip (the
// server runs it through even if this process stops meanwhile, so no key stays locked
// by a stalled client); the request's text reaches the SQL only as hex literals. A
// stored key (a committed earlier run, or a concurrent one waited for) fails the key's
// INSERT with a duplicate: then the stored answer is read instead.
asio::awaitable<KeyedAnswer> run_keyed(db::Lease& lease, const KeyedWrite& w) {
  using idempotency::hex_literal;
  KeyedAnswer answer;
  answer.node = lease.node_name();
  const std::string key = hex_literal(w.key);
  std::string response, rest;  // rest: the JSON answer after its id
  if (w.form) {
    response = hex_literal(kFormAnswer);
  } else {
    for (auto [name, value] : {std::pair{"author", w.author}, std::pair{"text", w.text},
                               std::pair{"served_by", std::string_view(w.served_by)},
                               std::pair{"db_node", std::string_view(answer.node)}}) {
      fmt::format_to(std::back_inserter(rest), R"(,"{}":{})", name,
                     json::serialize(json::string(value)));
    }
    rest += '}';
    response = fmt::format("CONCAT({}, LAST_INSERT_ID(), {})", hex_literal(R"({"id":)"),
                           hex_literal(rest));
  }
  // The message first, so that the key's row is written once, with the answer (which
  // names the message's id); a duplicate key rolls the message back with it.
  const std::string sql = fmt::format(
      "START TRANSACTION;"
      "INSERT INTO messages (author, body) "
      "VALUES (CONVERT({0} USING utf8mb4), CONVERT({1} USING utf8mb4));"
      "SET STATEMENT innodb_lock_wait_timeout = {7} FOR "
      "INSERT INTO idempotency_keys (idem_key, request_hash, status, response, expires_at) "
      "VALUES ({2}, {3}, {4}, {5}, NOW(3) + INTERVAL {6} SECOND);"
      "COMMIT;"
      "SELECT @@last_gtid, LAST_INSERT_ID()",
      hex_literal(w.author), hex_literal(w.text), key, hex_literal(w.hash), w.form ? 303 : 201,
      response, w.ttl.count(), w.lock_wait_s);
  for (int round = 0;; ++round) {
    std::vector<db::Result> results;
    std::exception_ptr failure;
    unsigned code = 0;
    try {
      results = co_await lease.query_multi(sql);
    } catch (const db::QueryError& e) {
      failure = std::current_exception();
      code = e.code();
    } catch (const db::RefusedReadOnly&) {
      failure = std::current_exception();
    }
    if (failure) {
      // The batch stopped at the failed statement with its transaction open.
      co_await rollback(lease);
      if (code == kLockWaitTimeout) {
        throw KeyInProgress("db: a run under the same key holds it (lock wait timeout)");
      }
      if ((code != kDuplicateKey && code != kDeadlock) || round >= 3) {
        std::rethrow_exception(failure);
      }
      if (code == kDeadlock) continue;
      const db::Result stored = co_await lease.execute(
          "SELECT request_hash, status, response, expires_at > NOW(3), @@gtid_current_pos "
          "FROM idempotency_keys WHERE idem_key = ?",
          db::params(w.key));
      if (stored.rows.empty()) continue;  // expired and deleted since: run afresh
      const auto& row = stored.rows[0];
      if (as_int(row[3]) == 0) {
        co_await lease.execute(
            "DELETE FROM idempotency_keys WHERE idem_key = ? AND expires_at <= NOW(3)",
            db::params(w.key));
        continue;
      }
      answer.replayed = true;
      answer.mismatch = as_text(row[0]) != w.hash;
      answer.status = static_cast<unsigned>(as_int(row[1]));
      answer.body = as_text(row[2]);
      answer.gtid = as_text(row[4]);
      co_return answer;
    }
    if (results.size() != 5 || results[4].rows.empty()) {
      co_await rollback(lease);  // (a no-op once the COMMIT ran)
      throw db::QueryError(fmt::format("keyed write: {} results, expected 5", results.size()));
    }
    answer.status = w.form ? 303 : 201;
    answer.gtid = as_text(results[4].rows[0][0]);
    if (w.form) {
      answer.body = kFormAnswer;
    } else {
      // The same text the key's row stored.
      answer.body = fmt::format(R"({{"id":{}{})", as_int(results[4].rows[0][1]), rest);
    }
    co_return answer;
  }
}

bool is_control_except_newline(unsigned char c) {
  return (c < 0x20 && c != '\n' && c != '\r' && c != '\t') || c == 0x7F;
}

}  // namespace

std::string render_fortunes(const std::vector<std::pair<std::int64_t, std::string>>& rows) {
  std::string out;
  out.reserve(256 + rows.size() * 96);
  out +=
      "<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table>"
      "<tr><th>id</th><th>message</th></tr>";
  for (const auto& [id, message] : rows) {
    fmt::format_to(std::back_inserter(out), "<tr><td>{}</td><td>", id);
    text::html_escape(message, out);
    out += "</td></tr>";
  }
  out += "</table></body></html>";
  return out;
}

MessageError validate_message(std::string_view author, std::string_view text_value) {
  auto check = [](std::string_view field, std::string_view v, std::size_t max,
                  bool multiline) -> MessageError {
    if (v.empty()) return {std::string(field), "is required"};
    if (!text::valid_utf8(v)) return {std::string(field), "is not valid UTF-8"};
    for (unsigned char c : v) {
      if (is_control_except_newline(c) || (!multiline && (c == '\n' || c == '\r'))) {
        return {std::string(field), "contains control characters"};
      }
    }
    std::size_t n = text::utf8_length(v);
    if (n > max) return {std::string(field), fmt::format("is longer than {} characters", max)};
    bool blank = std::all_of(
        v.begin(), v.end(), [](char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; });
    if (blank) return {std::string(field), "is blank"};
    return {};
  };
  if (auto e = check("author", author, kMaxAuthor, false); !e.field.empty()) return e;
  return check("text", text_value, kMaxText, true);
}

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

asio::awaitable<Response> App::db_single() {
  Response r;
  r.content_type = kJson;
  const std::int64_t id = random_id();
  co_await cluster_.read([&](db::Lease& lease) -> asio::awaitable<void> {
    db::Result res = co_await lease.execute(kSelectWorld, db::params(id));
    r.body.clear();
    if (res.rows.empty()) throw db::QueryError(fmt::format("World row {} missing", id));
    append_world(r.body, as_int(res.rows[0][0]), as_int(res.rows[0][1]));
    r.headers.clear();
    tag_node(r, lease.node_name());
  });
  co_return r;
}

asio::awaitable<Response> App::db_queries(std::string_view query) {
  const int n = text::queries_count(query);
  std::vector<std::int64_t> ids(static_cast<std::size_t>(n));
  for (auto& id : ids) id = random_id();
  Response r;
  r.content_type = kJson;
  const std::string sql = select_worlds_sql(ids);
  co_await cluster_.read([&](db::Lease& lease) -> asio::awaitable<void> {
    const std::vector<db::Result> results = co_await lease.query_multi(sql);
    r.body.clear();
    r.body.reserve(static_cast<std::size_t>(n) * 32 + 2);
    r.body += '[';
    for (std::size_t i = 0; i < ids.size(); ++i) {
      if (i >= results.size() || results[i].rows.empty()) {
        throw db::QueryError(fmt::format("World row {} missing", ids[i]));
      }
      if (i) r.body += ',';
      append_world(r.body, as_int(results[i].rows[0][0]), as_int(results[i].rows[0][1]));
    }
    r.body += ']';
    r.headers.clear();
    tag_node(r, lease.node_name());
  });
  co_return r;
}

asio::awaitable<Response> App::fortunes() {
  std::vector<std::pair<std::int64_t, std::string>> rows;
  std::string node;
  co_await cluster_.read([&](db::Lease& lease) -> asio::awaitable<void> {
    db::Result res = co_await lease.execute("SELECT id, message FROM Fortune", db::params());
    rows.clear();
    rows.reserve(res.rows.size() + 1);
    for (auto& row : res.rows) rows.emplace_back(as_int(row[0]), as_text(row[1]));
    node = lease.node_name();
  });
  rows.emplace_back(0, "Additional fortune added at request time.");
  std::sort(rows.begin(), rows.end(),
            [](const auto& a, const auto& b) { return a.second < b.second; });
  Response r;
  r.content_type = kHtml;
  r.body = render_fortunes(rows);
  tag_node(r, node);
  co_return r;
}

asio::awaitable<Response> App::updates(std::string_view query) {
  const int n = text::queries_count(query);
  std::vector<std::pair<std::int64_t, std::int64_t>> worlds;  // id, new randomNumber
  std::string node;
  co_await cluster_.write([&](db::Lease& lease) -> asio::awaitable<void> {
    worlds.clear();  // run again after a refused (read-only) write: start afresh
    worlds.reserve(static_cast<std::size_t>(n));
    std::vector<std::int64_t> ids(static_cast<std::size_t>(n));
    for (auto& id : ids) id = random_id();
    const std::vector<db::Result> selected = co_await lease.query_multi(select_worlds_sql(ids));
    for (std::size_t i = 0; i < ids.size(); ++i) {
      if (i >= selected.size() || selected[i].rows.empty()) {
        throw db::QueryError(fmt::format("World row {} missing", ids[i]));
      }
      worlds.emplace_back(as_int(selected[i].rows[0][0]), random_id());
    }
    // One statement for the batch, rows in id order (fewer lock waits between concurrent
    // batches). A row drawn twice keeps the value of its first draw, in the answer too.
    std::vector<std::pair<std::int64_t, std::int64_t>> batch = worlds;
    std::stable_sort(batch.begin(), batch.end(),
                     [](auto& a, auto& b) { return a.first < b.first; });
    batch.erase(std::unique(batch.begin(), batch.end(),
                            [](auto& a, auto& b) { return a.first == b.first; }),
                batch.end());
    for (auto& w : worlds) {
      w.second = std::lower_bound(batch.begin(), batch.end(), w, [](auto& a, auto& b) {
                   return a.first < b.first;
                 })->second;
    }
    std::string sql = "UPDATE World SET randomNumber = CASE id";
    std::vector<db::Param> values;
    values.reserve(batch.size() * 3);
    for (auto& w : batch) {
      sql += " WHEN ? THEN ?";
      values.emplace_back(w.first);
      values.emplace_back(w.second);
    }
    sql += " END WHERE id IN (";
    for (std::size_t i = 0; i < batch.size(); ++i) {
      sql += i ? ",?" : "?";
      values.emplace_back(batch[i].first);
    }
    sql += ")";
    bool conflicted = false;
    try {
      co_await lease.execute(sql, values);
    } catch (const db::QueryError& e) {
      if (!e.retryable()) throw;
      conflicted = true;
    }
    if (conflicted) {
      // A deadlock between concurrent batches rolled the statement back: run it once more.
      co_await lease.execute(sql, values);
    }
    node = lease.node_name();
  });
  Response r;
  r.content_type = kJson;
  r.body.reserve(worlds.size() * 32 + 2);
  r.body += '[';
  for (std::size_t i = 0; i < worlds.size(); ++i) {
    if (i) r.body += ',';
    append_world(r.body, worlds[i].first, worlds[i].second);
  }
  r.body += ']';
  tag_node(r, node);
  co_return r;
}

asio::awaitable<Response> App::messages_list(const Request& req, std::string_view query,
                                             bool html) {
  int limit = 20;
  if (auto raw = text::query_param(query, "limit")) {
    int v = std::atoi(std::string(*raw).c_str());
    if (v >= 1) limit = std::min(v, 100);
  }
  std::string_view gtid;
  if (auto c = text::cookie_value(req.cookie, kGtidCookie)) gtid = *c;  // the db layer checks it

  db::Result res;
  std::string node;
  ReadPath path = ReadPath::Primary;
  co_await cluster_.read(
      [&](db::Lease& lease) -> asio::awaitable<void> {
        res = co_await lease.execute(
            "SELECT id, author, body, DATE_FORMAT(created_at, '%Y-%m-%dT%H:%i:%s.%fZ') FROM "
            "messages "
            "ORDER BY id DESC LIMIT ?",
            db::params(std::int64_t{limit}));
        node = lease.node_name();
        path = lease.path();
      },
      gtid);

  Response r;
  tag_node(r, node);
  if (!html) {
    json::array messages;
    for (auto& row : res.rows) {
      messages.push_back(json::object{{"id", as_int(row[0])},
                                      {"author", as_text(row[1])},
                                      {"text", as_text(row[2])},
                                      {"created_at", as_text(row[3])}});
    }
    r.content_type = kJson;
    r.body = json::serialize(json::object{{"served_by", shared_.served_by},
                                          {"db_node", node},
                                          {"read_path", read_path_name(path)},
                                          {"messages", std::move(messages)}});
    co_return r;
  }
  r.content_type = kHtml;
  // The form's key is good for one post: a page from the browser's cache (back, reload)
  // would post a new message under a spent key (422).
  r.headers.emplace_back("Cache-Control", "no-store");
  std::string& out = r.body;
  out +=
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Guestbook</title>"
      "<style>body{font-family:sans-serif;max-width:40em;margin:2em auto}li{margin:.5em 0}"
      "small{color:#666}</style></head><body><h1>Guestbook</h1>"
      "<form method=\"post\" action=\"/api/messages\" autocomplete=\"off\">"
      "<p><label>Name <input name=\"author\" maxlength=\"64\" required></label></p>"
      "<p><label>Message<br><textarea name=\"text\" maxlength=\"2000\" rows=\"4\" cols=\"50\" "
      "required></textarea></label></p>";
  // One key per rendered form: a post sent twice (a retry anywhere on the way, the
  // button pressed again) is stored once.
  fmt::format_to(std::back_inserter(out), "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                 kKeyField, idempotency::new_key());
  out += "<p><button type=\"submit\">Sign</button></p></form><ul>";
  for (auto& row : res.rows) {
    out += "<li><b>";
    text::html_escape(as_text(row[1]), out);
    out += "</b> <small>";
    text::html_escape(as_text(row[3]), out);
    out += "</small><br>";
    text::html_escape(as_text(row[2]), out);
    out += "</li>";
  }
  out += "</ul><p><small>Served by ";
  text::html_escape(shared_.served_by, out);
  out += ", database node ";
  text::html_escape(node, out);
  fmt::format_to(std::back_inserter(out), " ({})</small></p></body></html>\n",
                 read_path_name(path));
  co_return r;
}

asio::awaitable<Response> App::messages_post(const Request& req) {
  std::string author, body_text, key;
  if (req.idempotency_key) {
    auto parsed = idempotency::parse_header(*req.idempotency_key);
    if (!parsed.error.empty()) {
      co_return json_response(
          400, json::object{{"error", fmt::format("{} header {}", kKeyHeader, parsed.error)},
                            {"header", kKeyHeader}});
    }
    key = std::move(parsed.key);
  }
  const bool form = req.content_type.starts_with("application/x-www-form-urlencoded");
  if (form) {
    if (auto k = text::query_param(req.body, kKeyField); k && key.empty()) {
      const auto decoded = text::url_decode(*k);
      auto parsed = idempotency::check_form_field(decoded ? *decoded : std::string_view{});
      if (!decoded || !parsed.error.empty()) {
        co_return json_response(
            400, json::object{
                     {"error", fmt::format("{} {}", kKeyField,
                                           decoded ? parsed.error : "is not valid form encoding")},
                     {"field", kKeyField}});
      }
      key = std::move(parsed.key);
    }
    auto a = text::query_param(req.body, "author");
    auto t = text::query_param(req.body, "text");
    auto da = a ? text::url_decode(*a) : std::optional<std::string>{std::string{}};
    auto dt = t ? text::url_decode(*t) : std::optional<std::string>{std::string{}};
    if (!da)
      co_return json_response(
          422, json::object{{"error", "malformed form encoding"}, {"field", "author"}});
    if (!dt)
      co_return json_response(
          422, json::object{{"error", "malformed form encoding"}, {"field", "text"}});
    author = std::move(*da);
    body_text = std::move(*dt);
  } else if (req.content_type.starts_with("application/json")) {
    json::error_code ec;
    // Invalid UTF-8 inside a string is let through so that validation can name the field.
    json::parse_options opts;
    opts.allow_invalid_utf8 = true;
    json::value v = json::parse(req.body, ec, {}, opts);
    if (ec || !v.is_object()) co_return error_response(400, "body is not a JSON object");
    const auto& obj = v.as_object();
    for (auto [name, out] : {std::pair{"author", &author}, std::pair{"text", &body_text}}) {
      if (const auto* f = obj.if_contains(name)) {
        if (!f->is_string()) {
          co_return json_response(
              422,
              json::object{{"error", fmt::format("{} must be a string", name)}, {"field", name}});
        }
        *out = std::string(f->as_string());
      }
    }
  } else {
    Response r = error_response(415, "use application/json or application/x-www-form-urlencoded");
    co_return r;
  }
  if (auto e = validate_message(author, body_text); !e.field.empty()) {
    co_return json_response(
        422, json::object{{"error", fmt::format("{} {}", e.field, e.reason)}, {"field", e.field}});
  }

  if (!key.empty()) co_return co_await messages_post_keyed(req, key, author, body_text, form);

  db::Result res;
  std::string gtid, node;
  co_await cluster_.write([&](db::Lease& lease) -> asio::awaitable<void> {
    res = co_await lease.execute("INSERT INTO messages (author, body) VALUES (?, ?)",
                                 db::params(std::string_view(author), std::string_view(body_text)));
    gtid = co_await db::Cluster::last_gtid(lease);
    node = lease.node_name();
  });

  Response r;
  tag_node(r, node);
  set_gtid(r, gtid);
  if (form) {
    r.status = 303;
    r.headers.emplace_back("Location", "/guestbook");
    r.body = "See /guestbook\n";
    co_return r;
  }
  r.status = 201;
  r.content_type = kJson;
  r.body = json::serialize(json::object{{"id", res.insert_id},
                                        {"author", author},
                                        {"text", body_text},
                                        {"gtid", gtid},
                                        {"served_by", shared_.served_by},
                                        {"db_node", node}});
  co_return r;
}

asio::awaitable<Response> App::messages_post_keyed(const Request& req, const std::string& key,
                                                   const std::string& author,
                                                   const std::string& text, bool form) {
  const auto& cfg = cluster_.config();
  const std::string hash =
      idempotency::fingerprint(req.method, req.target, req.content_type, req.body);
  // The key's lock wait ends before the statement's own timeout (which would break the
  // connection): a run in progress is then waited for by trying again.
  const long lock_wait_s =
      std::max<long>(1, static_cast<long>(cfg.query_timeout.count() / 1000) - 1);
  const KeyedWrite w{key,        hash, author, text, shared_.served_by, form, cfg.idempotency_ttl,
                     lock_wait_s};
  KeyedAnswer answer;
  bool in_progress = false;
  try {
    co_await cluster_.write_repeatable(
        [&](db::Lease& lease) -> asio::awaitable<void> { answer = co_await run_keyed(lease, w); },
        std::chrono::steady_clock::now() + cfg.keyed_write_wait,
        [&] { metrics_.keyed_write(KeyedOutcome::Retried); });
  } catch (const KeyInProgress&) {
    in_progress = true;
  }
  if (in_progress) {
    metrics_.keyed_write(KeyedOutcome::InProgress);
    co_return json_response(
        409, json::object{{"error", fmt::format("a request with this {} is still in progress; "
                                                "send it again later",
                                                kKeyHeader)},
                          {"header", kKeyHeader}});
  }
  if (answer.mismatch) {
    metrics_.keyed_write(KeyedOutcome::Mismatch);
    co_return json_response(
        422, json::object{
                 {"error", fmt::format("this {} was first used with another request", kKeyHeader)},
                 {"header", kKeyHeader}});
  }
  metrics_.keyed_write(answer.replayed ? KeyedOutcome::Replayed : KeyedOutcome::Stored);
  Response r;
  r.status = answer.status;
  tag_node(r, answer.node);
  set_gtid(r, answer.gtid);
  if (answer.replayed) r.headers.emplace_back("Idempotent-Replayed", "true");
  if (answer.status == 303) {
    r.headers.emplace_back("Location", "/guestbook");
    r.body = std::move(answer.body);
    co_return r;
  }
  r.content_type = kJson;
  r.body = std::move(answer.body);
  if (!answer.gtid.empty() && r.body.ends_with('}')) {
    // The GTID, known only after the commit, joins the stored answer.
    r.body.pop_back();
    fmt::format_to(std::back_inserter(r.body), R"(,"gtid":{}}})",
                   json::serialize(json::string(answer.gtid)));
  }
  co_return r;
}

void App::start_housekeeping() {
  cluster_.every(cluster_.config().idempotency_cleanup, "delete expired idempotency keys",
                 [this] { return delete_expired_keys(); });
}

// In batches, so that no statement holds many row locks for long; for at most one period,
// so that a backlog is worked off over several.
asio::awaitable<void> App::delete_expired_keys() {
  constexpr std::uint64_t kBatch = 1000;
  std::uint64_t deleted = 0;
  const auto until = std::chrono::steady_clock::now() + cluster_.config().idempotency_cleanup;
  while (std::chrono::steady_clock::now() < until) {
    db::Result res;
    co_await cluster_.write([&](db::Lease& lease) -> asio::awaitable<void> {
      res = co_await lease.execute(
          "DELETE FROM idempotency_keys WHERE expires_at <= NOW(3) ORDER BY expires_at LIMIT 1000",
          db::params());
    });
    deleted += res.affected_rows;
    if (res.affected_rows < kBatch) break;
  }
  if (deleted > 0) {
    metrics_.keyed_write(KeyedOutcome::Expired, deleted);
    log::info("expired idempotency keys deleted", {{"count", std::to_string(deleted)}});
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
