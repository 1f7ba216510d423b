// The table of configuration keys behind core/config.hpp: each key's name, kind, bounds,
// checks, where it is stored and how it is rendered (config_keys.cpp). Internal to
// core/config*.cpp; config.cpp reads the sources (TOML file, environment, --set) through it.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/config.hpp"

namespace webstack::config_detail {

// ---------------------------------------------------------------------------------------------
// Values as they arrive from a source, before a key's own checks.

// One element of a list value, with where it came from (TOML arrays span several lines).
struct Item {
  std::string text;
  std::string origin;
};
using Value = std::variant<std::int64_t, bool, std::string, std::vector<Item>>;

inline std::int64_t as_int(const Value& v) {
  return std::get<std::int64_t>(v);
}
inline const std::string& as_str(const Value& v) {
  return std::get<std::string>(v);
}

enum class Kind { Integer, Boolean, String, List };

// Thrown by a key's checks; the caller adds key and origin.
struct Refused {
  std::string why;
};
[[noreturn]] void refuse(std::string why);

struct KeyDef {
  std::string_view name;  // dotted: "server.port"
  Kind kind;
  std::int64_t min = 0;  // Kind::Integer only
  std::int64_t max = 0;
  std::string_view unit = {};  // Kind::Integer: "ms", "bytes", ...
  // Kind::String: refuses the text, or returns what is stored (nullptr: stored as given).
  std::string (*check)(const std::string&) = nullptr;
  void (*store)(Config&, const Value&) = nullptr;  // stores a checked value
  std::string (*render)(const Config&) = nullptr;  // TOML value; nullptr: not rendered
};

// Every key, [server], [db] then [log]: the environment is applied in this order, and
// to_toml() renders in it.
std::span<const KeyDef> key_table();

// `s` as a double-quoted TOML basic string.
std::string quoted(std::string_view s);
// `s` without leading and trailing spaces and tabs.
std::string_view trim(std::string_view s);
// `s` with ASCII letters in lower case.
std::string lower(std::string_view s);

}  // namespace webstack::config_detail
