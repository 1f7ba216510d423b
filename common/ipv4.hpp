// IPv4 addresses and CIDR blocks as numbers: strict parsing of the dotted-quad text
// ("10.77.0.10", no leading zeros), formatting, and a network's mask, broadcast and
// first address. Self-contained (nothing of the topology), no I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace webstack::ipv4 {

// A network: its address (host order) and prefix length 0..32.
struct Cidr {
  std::uint32_t network = 0;
  int prefix = 0;

  std::uint32_t mask() const { return prefix == 0 ? 0u : ~std::uint32_t{0} << (32 - prefix); }
  std::uint32_t broadcast() const { return network | ~mask(); }
  std::uint32_t gateway() const { return network + 1; }  // the first address
  bool contains(std::uint32_t a) const { return (a & mask()) == network; }
};

// "a.b.c.d", each part decimal 0..255 without sign or leading zeros; nullopt otherwise.
std::optional<std::uint32_t> parse_address(std::string_view s);
// "a.b.c.d".
std::string format_address(std::uint32_t a);
// Only the syntax: "a.b.c.d/p" with p 0..32 (host bits may be set: compare network with
// network & mask()).
std::optional<Cidr> parse_cidr(std::string_view s);

}  // namespace webstack::ipv4
