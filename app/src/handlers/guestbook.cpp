// The guestbook: the page (/guestbook), the list (GET /api/messages) and posts without an
// idempotency key (POST /api/messages; keyed posts: keyed_post.cpp).
#include <fmt/format.h>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <optional>
#include <string>
#include <string_view>

#include "core/idempotency.hpp"
#include "core/text.hpp"
#include "db/cluster.hpp"
#include "handlers/app.hpp"
#include "handlers/reply.hpp"

namespace webstack {

namespace asio = boost::asio;
namespace json = boost::json;

namespace {

constexpr std::size_t kMaxAuthor = 64;
constexpr std::size_t kMaxText = 2000;

bool is_control_except_newline(unsigned char c) {
  return (c < 0x20 && c != '\n' && c != '\r' && c != '\t') || c == 0x7F;
}

}  // namespace

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

asio::awaitable<Response> App::messages_json(const Request& req, std::string_view query) {
  return messages_list(req, query, false);
}

asio::awaitable<Response> App::guestbook(const Request& req, std::string_view query) {
  return messages_list(req, query, true);
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

namespace {

// A guestbook post as sent, before its fields are validated.
struct Post {
  std::string author;
  std::string text;
  std::string key;    // its idempotency key; empty: none
  bool form = false;  // from the guestbook's form (else JSON)
};

// The fields of a form post (and its key, unless the header gave one); or the answer that
// refuses the body.
std::optional<Response> read_form(std::string_view body, Post& post) {
  if (auto k = text::query_param(body, kKeyField); k && post.key.empty()) {
    const auto decoded = text::url_decode(*k);
    auto parsed = idempotency::check_form_field(decoded ? *decoded : std::string_view{});
    if (!decoded || !parsed.error.empty()) {
      return json_response(
          400, json::object{
                   {"error", fmt::format("{} {}", kKeyField,
                                         decoded ? parsed.error : "is not valid form encoding")},
                   {"field", kKeyField}});
    }
    post.key = std::move(parsed.key);
  }
  auto a = text::query_param(body, "author");
  auto t = text::query_param(body, "text");
  auto da = a ? text::url_decode(*a) : std::optional<std::string>{std::string{}};
  auto dt = t ? text::url_decode(*t) : std::optional<std::string>{std::string{}};
  if (!da)
    return json_response(422,
                         json::object{{"error", "malformed form encoding"}, {"field", "author"}});
  if (!dt)
    return json_response(422,
                         json::object{{"error", "malformed form encoding"}, {"field", "text"}});
  post.author = std::move(*da);
  post.text = std::move(*dt);
  return std::nullopt;
}

// The fields of a JSON post; or the answer that refuses the body.
std::optional<Response> read_json(std::string_view body, Post& post) {
  json::error_code ec;
  // Invalid UTF-8 inside a string is let through so that validation can name the field.
  json::parse_options opts;
  opts.allow_invalid_utf8 = true;
  json::value v = json::parse(body, ec, {}, opts);
  if (ec || !v.is_object()) return error_response(400, "body is not a JSON object");
  const auto& obj = v.as_object();
  for (auto [name, out] : {std::pair{"author", &post.author}, std::pair{"text", &post.text}}) {
    if (const auto* f = obj.if_contains(name)) {
      if (!f->is_string()) {
        return json_response(422, json::object{{"error", fmt::format("{} must be a string", name)},
                                               {"field", name}});
      }
      *out = std::string(f->as_string());
    }
  }
  return std::nullopt;
}

// The post in `req` (its Idempotency-Key header, then its form or JSON body); or the
// answer that refuses it.
std::optional<Response> read_post(const Request& req, Post& post) {
  if (req.idempotency_key) {
    auto parsed = idempotency::parse_header(*req.idempotency_key);
    if (!parsed.error.empty()) {
      return json_response(
          400, json::object{{"error", fmt::format("{} header {}", kKeyHeader, parsed.error)},
                            {"header", kKeyHeader}});
    }
    post.key = std::move(parsed.key);
  }
  post.form = req.content_type.starts_with("application/x-www-form-urlencoded");
  if (post.form) return read_form(req.body, post);
  if (req.content_type.starts_with("application/json")) return read_json(req.body, post);
  return error_response(415, "use application/json or application/x-www-form-urlencoded");
}

}  // namespace

asio::awaitable<Response> App::messages_post(const Request& req, std::string_view) {
  Post post;
  if (auto refused = read_post(req, post)) co_return std::move(*refused);
  if (auto e = validate_message(post.author, post.text); !e.field.empty()) {
    co_return json_response(
        422, json::object{{"error", fmt::format("{} {}", e.field, e.reason)}, {"field", e.field}});
  }

  if (!post.key.empty())
    co_return co_await messages_post_keyed(req, post.key, post.author, post.text, post.form);

  db::Result res;
  std::string gtid, node;
  co_await cluster_.write([&](db::Lease& lease) -> asio::awaitable<void> {
    res = co_await lease.execute(
        "INSERT INTO messages (author, body) VALUES (?, ?)",
        db::params(std::string_view(post.author), std::string_view(post.text)));
    gtid = co_await db::Cluster::last_gtid(lease);
    node = lease.node_name();
  });

  Response r;
  tag_node(r, node);
  set_gtid(r, gtid);
  if (post.form) {
    r.status = 303;
    r.headers.emplace_back("Location", "/guestbook");
    r.body = "See /guestbook\n";
    co_return r;
  }
  r.status = 201;
  r.content_type = kJson;
  r.body = json::serialize(json::object{{"id", res.insert_id},
                                        {"author", post.author},
                                        {"text", post.text},
                                        {"gtid", gtid},
                                        {"served_by", shared_.served_by},
                                        {"db_node", node}});
  co_return r;
}

}  // namespace webstack
