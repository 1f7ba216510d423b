#include "handlers/reply.hpp"

#include <fmt/format.h>
#include <boost/json.hpp>

namespace webstack {

namespace json = boost::json;

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

void tag_node(Response& r, const std::string& node) {
  r.headers.emplace_back("X-DB-Node", node);
}

void set_gtid(Response& r, const std::string& gtid) {
  if (gtid.empty()) return;
  r.headers.emplace_back(
      "Set-Cookie",
      fmt::format("{}={}; Path=/; Max-Age=300; HttpOnly; SameSite=Lax", kGtidCookie, gtid));
  r.headers.emplace_back("X-GTID", gtid);
}

}  // namespace webstack
