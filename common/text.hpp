// Text helpers every part shares (the app, the command line, the failover daemon, the
// tests). Pure functions, no I/O.
#pragma once

#include <string>
#include <string_view>

namespace webstack::text {

// Appends `in` as the inside of a double-quoted string with backslash escapes (\" \\ \n
// \r \t, \u00XX for other controls and DEL): valid JSON, TOML basic string and logfmt.
void json_escape(std::string_view in, std::string& out);

// `s` without leading and trailing blanks (space, tab) and line ends (\r, \n). A copy:
// nothing points into a temporary (`trim(read_file(...))`).
std::string trim(std::string_view s);

}  // namespace webstack::text
