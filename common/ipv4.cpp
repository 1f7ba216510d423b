#include "common/ipv4.hpp"

#include <fmt/format.h>

namespace webstack::ipv4 {
namespace {

// Decimal 0..max, no sign, no leading zeros ("0" itself is fine).
std::optional<std::uint32_t> parse_decimal(std::string_view s, std::uint32_t max) {
  if (s.empty() || s.size() > 3 || (s.size() > 1 && s.front() == '0')) {
    return std::nullopt;
  }
  std::uint32_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') {
      return std::nullopt;
    }
    v = v * 10 + static_cast<std::uint32_t>(c - '0');
  }
  if (v > max) {
    return std::nullopt;
  }
  return v;
}

}  // namespace

std::optional<std::uint32_t> parse_address(std::string_view s) {
  std::uint32_t out = 0;
  for (int i = 0; i < 4; ++i) {
    const auto dot = s.find('.');
    if ((i < 3) != (dot != std::string_view::npos)) {
      return std::nullopt;
    }
    const auto octet = parse_decimal(s.substr(0, dot), 255);
    if (!octet) {
      return std::nullopt;
    }
    out = (out << 8) | *octet;
    s = i < 3 ? s.substr(dot + 1) : std::string_view{};
  }
  return out;
}

std::string format_address(std::uint32_t a) {
  return fmt::format("{}.{}.{}.{}", a >> 24, (a >> 16) & 0xff, (a >> 8) & 0xff, a & 0xff);
}

std::optional<Cidr> parse_cidr(std::string_view s) {
  const auto slash = s.find('/');
  if (slash == std::string_view::npos) {
    return std::nullopt;
  }
  const auto address = parse_address(s.substr(0, slash));
  const auto prefix = parse_decimal(s.substr(slash + 1), 32);
  if (!address || !prefix) {
    return std::nullopt;
  }
  return Cidr{*address, static_cast<int>(*prefix)};
}

}  // namespace webstack::ipv4
