// Text helpers every part shares (the app, the command line, the failover daemon, the
// tests). Pure functions, no I/O.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace webstack::text {

// Appends `in` as the inside of a double-quoted string with backslash escapes (\" \\ \n
// \r \t, \u00XX for other controls and DEL): valid JSON, TOML basic string and logfmt.
void json_escape(std::string_view in, std::string& out);

// `s` without leading and trailing blanks (space, tab) and line ends (\r, \n). A copy:
// nothing points into a temporary (`trim(read_file(...))`).
std::string trim(std::string_view s);

// The one shape of every error about a file's content (the topology, the app's config,
// the failover daemon's config): "FILE:LINE: KEY: WHY", with LINE left out when 0, KEY
// when empty, and FILE (an origin: a path, "--set", "environment") when empty.
std::string located(std::string_view file, int line, std::string_view key, std::string_view why);

// The fields of `s` between `sep`s ("a,,b" gives "a", "", "b"; "" gives one empty field).
std::vector<std::string> split(std::string_view s, char sep);

// `s` as a whole decimal integer, or `fallback` (empty, trailing text, out of range).
long long to_ll(std::string_view s, long long fallback);

}  // namespace webstack::text
