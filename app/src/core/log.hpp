// Structured logs to stderr, one logfmt line per event:
//   ts=2026-11-28T21:50:01.123Z level=info msg="listening" port=8080 threads=2
// Each line goes out in one write(2), so lines from different threads never interleave.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace webstack::log {

enum class Level { Debug, Info, Warn, Error };

void set_level(Level level);
bool enabled(Level level);
// "debug", "info", "warn", "error"; false if unknown.
bool parse_level(std::string_view text, Level& out);

using Field = std::pair<std::string_view, std::string_view>;
// Values containing spaces, quotes, '=' or control characters are quoted and escaped.
void write(Level level, std::string_view msg, std::initializer_list<Field> fields = {});
// The line write() would emit, without the ts= field (for tests).
std::string format_line(Level level, std::string_view msg, std::initializer_list<Field> fields);

inline void debug(std::string_view m, std::initializer_list<Field> f = {}) {
  if (enabled(Level::Debug)) write(Level::Debug, m, f);
}
inline void info(std::string_view m, std::initializer_list<Field> f = {}) {
  write(Level::Info, m, f);
}
inline void warn(std::string_view m, std::initializer_list<Field> f = {}) {
  write(Level::Warn, m, f);
}
inline void error(std::string_view m, std::initializer_list<Field> f = {}) {
  write(Level::Error, m, f);
}

}  // namespace webstack::log
