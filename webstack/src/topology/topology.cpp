// The model's methods: what the parser checked, queried.
#include "topology/topology.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>
#include <utility>

#include "common/text.hpp"

namespace webstack::topo {
namespace {}  // namespace

std::string_view role_name(Role r) {
  switch (r) {
    case Role::LoadBalancer:
      return "lb";
    case Role::Web:
      return "web";
    case Role::Database:
      return "db";
    case Role::Client:
      return "client";
    case Role::Monitor:
      return "monitor";
  }
  return "?";
}

bool Host::has(Role r) const {
  return std::find(roles.begin(), roles.end(), r) != roles.end();
}

bool Host::is_primary() const {
  return db == DbRole::Primary;
}

bool Host::is_replica() const {
  return db == DbRole::Replica;
}

const Host* Topology::find(std::string_view host_name) const {
  for (const Host& h : hosts) {
    if (h.name == host_name) {
      return &h;
    }
  }
  return nullptr;
}

std::vector<const Host*> Topology::with_role(Role r) const {
  std::vector<const Host*> out;
  for (const Host& h : hosts) {
    if (h.has(r)) {
      out.push_back(&h);
    }
  }
  return out;
}

const Host& Topology::primary() const {
  for (const Host& h : hosts) {
    if (h.db == DbRole::Primary) {
      return h;
    }
  }
  throw std::logic_error("topology has no database primary");
}

std::vector<const Host*> Topology::replicas() const {
  std::vector<const Host*> out;
  for (const Host& h : hosts) {
    if (h.db == DbRole::Replica) {
      out.push_back(&h);
    }
  }
  return out;
}

std::vector<std::string> Topology::site_addresses() const {
  if (!virtual_addresses.empty()) return virtual_addresses;
  std::vector<std::string> out;
  for (const Host* h : with_role(Role::LoadBalancer)) out.push_back(h->address);
  return out;
}

bool Topology::automatic_failover() const {
  return failover == "automatic" && monitor() != nullptr && !replicas().empty();
}

const Host* Topology::monitor() const {
  for (const Host& h : hosts) {
    if (h.has(Role::Monitor)) {
      return &h;
    }
  }
  return nullptr;
}

std::string Topology::gateway() const {
  return ipv4::format_address(subnet_cidr().gateway());
}

ipv4::Cidr Topology::subnet_cidr() const {
  const auto cidr = ipv4::parse_cidr(subnet);
  if (!cidr) {
    throw std::logic_error("topology subnet is not an IPv4 CIDR: " + subnet);
  }
  return *cidr;
}

int Topology::prefix_length() const {
  return subnet_cidr().prefix;
}

TopologyError::TopologyError(std::string file, int line, std::string key, const std::string& why)
    : std::runtime_error(text::located(file, line, key, why)),
      file_(std::move(file)),
      line_(line),
      key_(std::move(key)) {}

}  // namespace webstack::topo
