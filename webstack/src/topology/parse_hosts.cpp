// The parser's [[host]] tables: each host's keys, then its checks against the hosts
// before it.
#include "topology/parser.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace webstack::topo::detail {

std::string Parser::host_key(std::size_t index, std::string_view key) {
  return fmt::format("host[{}].{}", index + 1, key);
}

void Parser::parse_hosts(const toml::node* node) {
  if (node == nullptr) {
    fail(0, "host", "the site has no hosts; add at least one [[host]] table");
  }
  const toml::array* array = node->as_array();
  if (array == nullptr || !array->is_array_of_tables()) {
    fail(line_of(*node), "host",
         fmt::format("must be an array of tables [[host]], got {}", describe(*node)));
  }
  if (array->empty()) {
    fail(line_of(*node), "host", "the site has no hosts; add at least one [[host]] table");
  }
  const ipv4::Cidr cidr = t_.subnet_cidr();
  for (std::size_t i = 0; i < array->size(); ++i) {
    parse_host(*array->get(i)->as_table(), i, cidr);
  }
}

void Parser::parse_host(const toml::table& table, std::size_t index, const ipv4::Cidr& cidr) {
  HostDraft d;
  d.host.line = line_of(table);
  d.src.table = d.host.line;
  for (const auto& [key, value] : in_file_order(table)) {
    parse_host_entry(d, *key, *value, index, cidr);
  }
  const auto missing = [&](bool present, std::string_view key) {
    if (!present) {
      fail(d.src.table, host_key(index, key),
           "missing; every [[host]] needs name, address and roles");
    }
  };
  missing(d.has_name, "name");
  missing(d.has_address, "address");
  missing(d.has_roles, "roles");
  check_host(d.host, index, d.src);
  check_ports(d.host, index, d.src);
  t_.hosts.push_back(std::move(d.host));
  sources_.push_back(d.src);
}

// One key of host[index] (1-based in messages).
void Parser::parse_host_entry(HostDraft& d, const toml::key& key, const toml::node& value,
                              std::size_t index, const ipv4::Cidr& cidr) const {
  const std::string name(key.str());
  const std::string full = host_key(index, name);
  if (name == "name") {
    d.host.name = host_name(value, full);
    d.has_name = true;
  } else if (name == "address") {
    d.host.address = host_address(value, full, cidr);
    d.src.address = line_of(value);
    d.has_address = true;
  } else if (name == "roles") {
    d.host.roles = parse_roles(value, full);
    d.src.roles = line_of(value);
    d.has_roles = true;
  } else if (name == "db") {
    d.host.db = host_db(value, full);
    d.src.db = line_of(value);
  } else if (name == "app") {
    d.host.app = host_app(value, full);
    d.src.app = line_of(value);
  } else if (name == "ssh") {
    d.host.ssh = host_ssh(value, full);
  } else if (name == "interface") {
    d.host.interface = host_interface(value, full);
  } else {
    unknown_key(key, full, "name, address, roles, db, app, ssh, interface");
  }
}

std::string Parser::host_name(const toml::node& value, const std::string& full) const {
  std::string name = string_value(value, full);
  if (const std::string why = name_problem(name, 12); !why.empty()) {
    fail(line_of(value), full, why);
  }
  // The lab's own files (edge, s6) and its bridge namespace (<lab>-net) use these names.
  if (name == "edge" || name == "s6" || name == "net") {
    fail(line_of(value), full, fmt::format("{} is reserved for the lab itself", in_quotes(name)));
  }
  for (std::size_t j = 0; j < t_.hosts.size(); ++j) {
    if (t_.hosts[j].name == name) {
      fail(line_of(value), full,
           fmt::format("duplicate host name {} (also host[{}], line {})", in_quotes(name), j + 1,
                       sources_[j].table));
    }
  }
  return name;
}

std::string Parser::host_address(const toml::node& value, const std::string& full,
                                 const ipv4::Cidr& cidr) const {
  std::string address = string_value(value, full);
  check_address(address, cidr, line_of(value), full);
  for (std::size_t j = 0; j < t_.hosts.size(); ++j) {
    if (t_.hosts[j].address == address) {
      fail(line_of(value), full,
           fmt::format("duplicate address {} (also host[{}] {}, line {})", address, j + 1,
                       t_.hosts[j].name, sources_[j].address));
    }
  }
  return address;
}

DbRole Parser::host_db(const toml::node& value, const std::string& full) const {
  const std::string db = string_value(value, full);
  if (db == "primary") {
    return DbRole::Primary;
  }
  if (db == "replica") {
    return DbRole::Replica;
  }
  fail(line_of(value), full,
       fmt::format("must be \"primary\" or \"replica\", got {}", in_quotes(db)));
}

std::string Parser::host_app(const toml::node& value, const std::string& full) const {
  std::string app = string_value(value, full);
  if (app != "webstack" && app != "php" && app != "node") {
    fail(line_of(value), full,
         fmt::format("must be one of webstack, php, node, got {}", in_quotes(app)));
  }
  return app;
}

std::string Parser::host_ssh(const toml::node& value, const std::string& full) const {
  std::string ssh = string_value(value, full);
  const bool fine =
      !ssh.empty() && ssh.size() <= 253 && std::all_of(ssh.begin(), ssh.end(), [](char c) {
        return is_lower_alnum(c) || (c >= 'A' && c <= 'Z') || c == '.' || c == '-' || c == '_' ||
               c == ':';
      });
  if (!fine) {
    fail(line_of(value), full,
         fmt::format("must be a host name or address SSH reaches (letters, digits, "
                     "'.', '-', '_', ':'), got {}",
                     in_quotes(ssh)));
  }
  return ssh;
}

std::string Parser::host_interface(const toml::node& value, const std::string& full) const {
  std::string interface = string_value(value, full);
  const bool fine =
      !interface.empty() && interface.size() <= 15 &&
      std::all_of(interface.begin(), interface.end(), [](char c) {
        return is_lower_alnum(c) || (c >= 'A' && c <= 'Z') || c == '.' || c == '-' || c == '_';
      });
  if (!fine) {
    fail(line_of(value), full,
         fmt::format("must be a network interface name (at most 15 letters, digits, "
                     "'.', '-', '_'), got {}",
                     in_quotes(interface)));
  }
  return interface;
}

// A host whose keys are read: its roles against its other keys, and against the hosts
// before it.
void Parser::check_host(const Host& host, std::size_t index, const HostSource& src) const {
  const std::string who = fmt::format("{} (roles: {})", host.name, roles_text(host.roles));
  if (host.db && !host.has(Role::Database)) {
    fail(src.db, host_key(index, "db"),
         fmt::format("only a host with role \"db\" has a db setting; {}", who));
  }
  if (src.app != 0 && !host.has(Role::Web)) {
    fail(src.app, host_key(index, "app"),
         fmt::format("only a host with role \"web\" runs an application server; {}", who));
  }
  if (!host.db && host.has(Role::Database)) {
    fail(src.table, host_key(index, "db"),
         fmt::format("missing; host {} has role \"db\" and needs db = \"primary\" or "
                     "db = \"replica\"",
                     host.name));
  }
  if (host.has(Role::Client) && host.roles.size() > 1) {
    fail(src.roles, host_key(index, "roles"),
         fmt::format("the client stands for the internet and may have no other role; {}", who));
  }
  for (std::size_t j = 0; j < t_.hosts.size(); ++j) {
    const Host& other = t_.hosts[j];
    if (host.has(Role::Client) && other.has(Role::Client)) {
      fail(src.roles, host_key(index, "roles"),
           fmt::format("a second client host, {}; the site has exactly one (host[{}] {}, line {})",
                       host.name, j + 1, other.name, sources_[j].table));
    }
    if (host.has(Role::Monitor) && other.has(Role::Monitor)) {
      fail(src.roles, host_key(index, "roles"),
           fmt::format("a second monitor host, {}; the site has at most one (host[{}] {}, "
                       "line {})",
                       host.name, j + 1, other.name, sources_[j].table));
    }
    if (host.db == DbRole::Primary && other.db == DbRole::Primary) {
      fail(src.db, host_key(index, "db"),
           fmt::format("two primaries: {} (line {}) and {}; the site has exactly one", other.name,
                       sources_[j].db, host.name));
    }
  }
}

void Parser::check_address(const std::string& text, const ipv4::Cidr& cidr, int line,
                           const std::string& key) const {
  const auto address = ipv4::parse_address(text);
  if (!address) {
    fail(line, key,
         fmt::format("must be an IPv4 address like \"{}\", got {}",
                     ipv4::format_address(cidr.network + 10), in_quotes(text)));
  }
  const std::string subnet = fmt::format("{}/{}", ipv4::format_address(cidr.network), cidr.prefix);
  if (!cidr.contains(*address)) {
    fail(line, key, fmt::format("{} is outside the lab subnet {}", text, subnet));
  }
  if (*address == cidr.network) {
    fail(line, key, fmt::format("{} is the network address of {}", text, subnet));
  }
  if (*address == cidr.broadcast()) {
    fail(line, key, fmt::format("{} is the broadcast address of {}", text, subnet));
  }
  if (*address == cidr.gateway()) {
    fail(line, key,
         fmt::format("{} is the gateway (the bridge's address) of {}; hosts start at {}", text,
                     subnet, ipv4::format_address(cidr.gateway() + 1)));
  }
}

std::vector<Role> Parser::parse_roles(const toml::node& node, const std::string& key) const {
  const auto* array = node.as_array();
  if (array == nullptr) {
    fail(line_of(node), key,
         fmt::format("must be an array of roles (lb, web, db, client, monitor), got {}",
                     describe(node)));
  }
  if (array->empty()) {
    fail(line_of(node), key, "must name at least one role (lb, web, db, client, monitor)");
  }
  std::vector<Role> roles;
  for (const toml::node& element : *array) {
    const auto* s = element.as_string();
    if (s == nullptr) {
      fail(line_of(element), key,
           fmt::format("a role is a string (lb, web, db, client, monitor), got {}",
                       describe(element)));
    }
    const auto role = role_from(s->get());
    if (!role) {
      fail(line_of(element), key,
           fmt::format("unknown role {} (known: lb, web, db, client, monitor)",
                       in_quotes(s->get())));
    }
    if (std::find(roles.begin(), roles.end(), *role) != roles.end()) {
      fail(line_of(element), key, fmt::format("duplicate role {}", in_quotes(s->get())));
    }
    roles.push_back(*role);
  }
  return roles;
}

// Services of one host that listen on a port of [site]; no two may share one.
void Parser::check_ports(const Host& host, std::size_t index, const HostSource& src) const {
  struct Service {
    std::string_view key;
    std::uint16_t port;
    std::string_view what;
  };
  std::vector<Service> services;
  if (host.has(Role::LoadBalancer)) {
    services.push_back({"http_port", t_.http_port, "HAProxy"});
    services.push_back({"https_port", t_.https_port, "HAProxy"});
  }
  if (host.has(Role::Web)) {
    services.push_back({"web_port", t_.web_port, "Nginx"});
    services.push_back({"app_port", t_.app_port, "webstack-app"});
  }
  if (host.has(Role::Database)) {
    services.push_back({"db_port", t_.db_port, "MariaDB"});
  }
  for (std::size_t a = 0; a < services.size(); ++a) {
    for (std::size_t b = a + 1; b < services.size(); ++b) {
      if (services[a].port != services[b].port) {
        continue;
      }
      // Where to point: the port set later in the file, else the host's roles.
      const int la = port_line(services[a].key);
      const int lb = port_line(services[b].key);
      const bool same_role = services[a].key == "web_port" && services[b].key == "app_port";
      std::string key = host_key(index, "roles");
      int line = src.roles;
      if (same_role && (la != 0 || lb != 0)) {
        const auto& later = la > lb ? services[a] : services[b];
        key = fmt::format("site.{}", later.key);
        line = std::max(la, lb);
      }
      fail(line, key,
           fmt::format("port conflict on host {}: {} (site.{}) and {} (site.{}) would both "
                       "listen on port {}",
                       host.name, services[a].what, services[a].key, services[b].what,
                       services[b].key, services[a].port));
    }
  }
}

}  // namespace webstack::topo::detail
