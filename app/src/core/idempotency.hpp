// Idempotency keys (IETF httpapi draft "The Idempotency-Key HTTP Header Field"): parsing
// the header, the request's fingerprint, and the hex literals that carry request text
// into SQL. Pure functions, no I/O; the write itself is in handlers/keyed_post.cpp.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace webstack::idempotency {

// A key is 1..kMaxKeyLength characters of visible ASCII or space (0x20-0x7E).
constexpr std::size_t kMaxKeyLength = 255;

struct ParsedKey {
  std::string key;    // the key itself (unquoted, unescaped); empty when `error` is set
  std::string error;  // why the header is malformed; empty when valid
};

// The header's value: an RFC 8941 sf-string ("..." with \" and \\ escapes), optional
// spaces around it, nothing else (no parameters, no second value).
ParsedKey parse_header(std::string_view value);

// The guestbook form's hidden field (made by the app at render, url-decoded): the same
// characters and length as a header key, without the quotes.
ParsedKey check_form_field(std::string_view value);

// SHA-256 of what makes two requests the same write (method, path, content type, body),
// 32 raw bytes: a repeat under the same key with another fingerprint is refused (422).
std::string fingerprint(std::string_view method, std::string_view path,
                        std::string_view content_type, std::string_view body);

// X'...' : any bytes as an SQL hex literal (only hex digits reach the SQL text, whatever
// the input held).
std::string hex_literal(std::string_view bytes);

// A fresh key for a rendered form: 128 random bits as 32 hex digits.
std::string new_key();

}  // namespace webstack::idempotency
