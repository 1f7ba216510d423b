// What the handler files share: JSON answers, reading result fields, the headers every
// database answer carries. Internal to handlers/.
#pragma once

#include <boost/json/value.hpp>

#include <cstdint>
#include <string>
#include <string_view>

#include "db/cluster.hpp"
#include "handlers/app.hpp"

namespace webstack {

inline constexpr std::string_view kJson = "application/json";
inline constexpr std::string_view kHtml = "text/html; charset=utf-8";
// Read-your-writes: the GTID of the client's last write.
inline constexpr std::string_view kGtidCookie = "ws_gtid";
// Idempotency keys: the header, and the guestbook form's field.
inline constexpr std::string_view kKeyHeader = "Idempotency-Key";
inline constexpr std::string_view kKeyField = "idempotency_key";

Response json_response(unsigned status, const boost::json::value& v);
Response error_response(unsigned status, std::string_view message);

std::int64_t as_int(const db::Field& f);
std::string as_text(const db::Field& f);

// Which node answered, for every database response.
void tag_node(Response& r, const std::string& node);
// Read-your-writes: later reads carrying this cookie wait for the GTID on a replica.
void set_gtid(Response& r, const std::string& gtid);

}  // namespace webstack
