#include "core/log.hpp"
#include "common/text.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <ctime>
#include <iterator>

namespace webstack::log {
namespace {

std::atomic<int> g_level{static_cast<int>(Level::Info)};

std::string_view level_name(Level level) {
  switch (level) {
    case Level::Debug:
      return "debug";
    case Level::Info:
      return "info";
    case Level::Warn:
      return "warn";
    case Level::Error:
      return "error";
  }
  return "info";
}

bool needs_quotes(std::string_view v) {
  if (v.empty()) {
    return true;
  }
  for (char c : v) {
    const auto u = static_cast<unsigned char>(c);
    if (c == ' ' || c == '"' || c == '=' || u < 0x20 || u == 0x7f) {
      return true;
    }
  }
  return false;
}

void append_quoted(std::string& out, std::string_view v) {
  out += '"';
  text::json_escape(v, out);
  out += '"';
}

void append_value(std::string& out, std::string_view v) {
  if (needs_quotes(v)) {
    append_quoted(out, v);
  } else {
    out += v;
  }
}

// Keys come from code; anything that would break the key=value shape becomes '_'.
void append_key(std::string& out, std::string_view k) {
  if (k.empty()) {
    out += '_';
    return;
  }
  for (char c : k) {
    const auto u = static_cast<unsigned char>(c);
    out += (c == ' ' || c == '"' || c == '=' || u < 0x20 || u == 0x7f) ? '_' : c;
  }
}

void format_into(std::string& out, Level level, std::string_view msg,
                 std::initializer_list<Field> fields) {
  out += "level=";
  out += level_name(level);
  out += " msg=";
  append_quoted(out, msg);
  for (const auto& [key, value] : fields) {
    out += ' ';
    append_key(out, key);
    out += '=';
    append_value(out, value);
  }
}

void append_timestamp(std::string& out) {
  const auto now = std::chrono::system_clock::now();
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  long millis = static_cast<long>(ms % 1000);
  if (millis < 0) {  // before 1970: keep the fraction positive
    millis += 1000;
    secs -= 1;
  }
  std::tm tm{};
  gmtime_r(&secs, &tm);
  fmt::format_to(std::back_inserter(out), "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 millis);
}

}  // namespace

void set_level(Level level) {
  g_level.store(static_cast<int>(level), std::memory_order_relaxed);
}

bool enabled(Level level) {
  return static_cast<int>(level) >= g_level.load(std::memory_order_relaxed);
}

bool parse_level(std::string_view text, Level& out) {
  std::string lower(text);
  for (char& c : lower) {
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
  }
  if (lower == "debug") {
    out = Level::Debug;
  } else if (lower == "info") {
    out = Level::Info;
  } else if (lower == "warn") {
    out = Level::Warn;
  } else if (lower == "error") {
    out = Level::Error;
  } else {
    return false;
  }
  return true;
}

std::string format_line(Level level, std::string_view msg, std::initializer_list<Field> fields) {
  std::string out;
  format_into(out, level, msg, fields);
  return out;
}

void write(Level level, std::string_view msg, std::initializer_list<Field> fields) {
  if (!enabled(level)) {
    return;
  }
  std::string line;
  line.reserve(128);
  line += "ts=";
  append_timestamp(line);
  line += ' ';
  format_into(line, level, msg, fields);
  line += '\n';
  // One write(2) per line; a short write (a full pipe) is completed rather than lost.
  const char* data = line.data();
  std::size_t left = line.size();
  while (left > 0) {
    const ssize_t n = ::write(STDERR_FILENO, data, left);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return;  // nowhere left to report to
    }
    data += n;
    left -= static_cast<std::size_t>(n);
  }
}

}  // namespace webstack::log
