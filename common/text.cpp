#include "common/text.hpp"

#include <fmt/format.h>

#include <charconv>

namespace webstack::text {

void json_escape(std::string_view in, std::string& out) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (char c : in) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
          out += "\\u00";
          out += kHex[(c >> 4) & 0xF];
          out += kHex[c & 0xF];
        } else {
          out += c;
        }
    }
  }
}

namespace {
bool blank(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}
}  // namespace

std::string trim(std::string_view s) {
  while (!s.empty() && blank(s.front())) s.remove_prefix(1);
  while (!s.empty() && blank(s.back())) s.remove_suffix(1);
  return std::string(s);
}

std::string located(std::string_view file, int line, std::string_view key, std::string_view why) {
  std::string out;
  if (!file.empty()) {
    out = line > 0 ? fmt::format("{}:{}: ", file, line) : fmt::format("{}: ", file);
  }
  if (!key.empty()) out += fmt::format("{}: ", key);
  out.append(why);
  return out;
}

std::vector<std::string> split(std::string_view s, char sep) {
  std::vector<std::string> out(1);
  for (char c : s) {
    if (c == sep) {
      out.emplace_back();
    } else {
      out.back() += c;
    }
  }
  return out;
}

long long to_ll(std::string_view s, long long fallback) {
  long long v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && end == s.data() + s.size() && !s.empty() ? v : fallback;
}

}  // namespace webstack::text
