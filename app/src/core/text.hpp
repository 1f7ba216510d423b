// Small text utilities shared by the handlers: HTML escaping, query strings, form and
// cookie parsing, UTF-8 validation. Pure functions, no I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace webstack::text {

// Appends `in` to `out` with & < > " ' escaped (OWASP rule #1 for HTML content and
// quoted attribute values).
void html_escape(std::string_view in, std::string& out);
std::string html_escape(std::string_view in);

// Value of `name` in a query string "a=1&b=2" (no leading '?'), not decoded.
std::optional<std::string_view> query_param(std::string_view query, std::string_view name);

// The TechEmpower "queries" rule: missing, empty or non-integer -> 1; then clamped to
// 1..500.
int queries_count(std::string_view query);

// Decodes application/x-www-form-urlencoded text ('+' is a space, %XX a byte). Returns
// nullopt on a malformed escape.
std::optional<std::string> url_decode(std::string_view in);

// Value of cookie `name` in a Cookie header ("a=1; b=2").
std::optional<std::string_view> cookie_value(std::string_view header, std::string_view name);

// True when `s` is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF).
bool valid_utf8(std::string_view s);
// Number of code points in valid UTF-8.
std::size_t utf8_length(std::string_view s);

// An incoming X-Request-Id is kept if it is 1..128 chars of [A-Za-z0-9._:-]; else a new
// one is made.
bool acceptable_request_id(std::string_view id);

}  // namespace webstack::text
