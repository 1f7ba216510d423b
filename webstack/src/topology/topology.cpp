#include "topology/topology.hpp"

#include "core/text.hpp"
#include "topology/ipv4.hpp"

#include <fmt/format.h>

#include <toml++/toml.h>
#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <utility>

namespace webstack::topo {
namespace {

using namespace std::string_view_literals;

constexpr std::array<Role, 5> kRoles = {Role::LoadBalancer, Role::Web, Role::Database, Role::Client,
                                        Role::Monitor};

// The topology's subnet (parse_lab has checked it: anything else is a bug).
ipv4::Cidr checked_cidr(const std::string& subnet) {
  const auto cidr = ipv4::parse_cidr(subnet);
  if (!cidr) {
    throw std::logic_error("topology subnet is not an IPv4 CIDR: " + subnet);
  }
  return *cidr;
}

// ---------------------------------------------------------------------------------------------
// Messages.

std::string in_quotes(std::string_view s) {
  std::string out = "\"";
  text::json_escape(s, out);
  out += '"';
  return out;
}

std::string describe(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::string:
      return "the string " + in_quotes(node.as_string()->get());
    case toml::node_type::integer:
      return fmt::format("the integer {}", node.as_integer()->get());
    case toml::node_type::floating_point:
      return fmt::format("the float {}", node.as_floating_point()->get());
    case toml::node_type::boolean:
      return node.as_boolean()->get() ? "the boolean true" : "the boolean false";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
    case toml::node_type::none:
      break;
  }
  return "nothing";
}

int line_of(const toml::node& node) {
  return static_cast<int>(node.source().begin.line);
}

std::string roles_text(const std::vector<Role>& roles) {
  std::string out;
  for (Role r : roles) {
    out += out.empty() ? "" : ", ";
    out += role_name(r);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Checks of single values.

bool is_lower_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

// [a-z][a-z0-9-]*, 1..max characters; empty result: fine.
std::string name_problem(std::string_view s, std::size_t max) {
  if (s.empty()) {
    return "must not be empty";
  }
  if (s.size() > max) {
    return fmt::format("{} is {} characters, at most {} are allowed", in_quotes(s), s.size(), max);
  }
  if (s.front() < 'a' || s.front() > 'z') {
    return fmt::format("{} must start with a lowercase letter", in_quotes(s));
  }
  for (char c : s) {
    if (!is_lower_alnum(c) && c != '-') {
      return fmt::format("{} may contain only a-z, 0-9 and '-'", in_quotes(s));
    }
  }
  return {};
}

std::string dns_name_problem(std::string_view s) {
  if (s.empty()) {
    return "must not be empty";
  }
  if (s.size() > 253) {
    return fmt::format("is {} characters, a DNS name has at most 253", s.size());
  }
  std::string_view rest = s;
  while (true) {
    const auto dot = rest.find('.');
    const std::string_view label = rest.substr(0, dot);
    if (label.empty()) {
      return fmt::format("{} has an empty label", in_quotes(s));
    }
    if (label.size() > 63) {
      return fmt::format("{}: a label has at most 63 characters", in_quotes(s));
    }
    for (char c : label) {
      if (!is_lower_alnum(c) && c != '-') {
        return fmt::format("{} may contain only a-z, 0-9, '-' and dots", in_quotes(s));
      }
    }
    if (label.front() == '-' || label.back() == '-') {
      return fmt::format("{}: a label may not start or end with '-'", in_quotes(s));
    }
    if (dot == std::string_view::npos) {
      return {};
    }
    rest.remove_prefix(dot + 1);
  }
}

std::optional<Role> role_from(std::string_view s) {
  for (Role r : kRoles) {
    if (role_name(r) == s) {
      return r;
    }
  }
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------------
// The parser: one pass over the document, the first problem is thrown.

using Entry = std::pair<const toml::key*, const toml::node*>;

// A table's entries in file order (a toml::table iterates in key order).
std::vector<Entry> in_file_order(const toml::table& table) {
  std::vector<Entry> entries;
  for (const auto& [key, node] : table) {
    entries.emplace_back(&key, &node);
  }
  std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    const auto& pa = a.first->source().begin;
    const auto& pb = b.first->source().begin;
    return pa.line != pb.line ? pa.line < pb.line : pa.column < pb.column;
  });
  return entries;
}

// Where a host's things are in the file, for checks across hosts.
struct HostSource {
  int table = 0;
  int address = 0;
  int roles = 0;
  int db = 0;
  int app = 0;
  int interface = 0;
};

class Parser {
 public:
  Parser(const std::string& source, Topology& topology) : source_(source), t_(topology) {}

  void parse(const toml::table& root) {
    const toml::node* lab = nullptr;
    const toml::node* site = nullptr;
    const toml::node* hosts = nullptr;
    const toml::node* lb = nullptr;
    const toml::node* db = nullptr;
    const toml::node* deploy = nullptr;
    for (const auto& [key, node] : in_file_order(root)) {
      const std::string_view name = key->str();
      if (name == "lab"sv) {
        lab = node;
      } else if (name == "lb"sv) {
        lb = node;
      } else if (name == "db"sv) {
        db = node;
      } else if (name == "deploy"sv) {
        deploy = node;
      } else if (name == "site"sv) {
        site = node;
      } else if (name == "host"sv) {
        hosts = node;
      } else {
        fail(line_of(*node), std::string(name),
             node->is_table() || node->is_array_of_tables()
                 ? "unknown table (known: [lab], [site], [lb], [db], [deploy], [[host]])"
                 : "unknown key; keys belong in [lab], [site], [lb], [db], [deploy] and "
                   "[[host]]");
      }
    }
    if (lab != nullptr) {
      parse_lab(*lab);
    }
    if (site != nullptr) {
      parse_site(*site);
    }
    parse_hosts(hosts);
    if (lb != nullptr) {
      parse_lb(*lb);
    }
    if (db != nullptr) {
      parse_db(*db);
    }
    if (deploy != nullptr) {
      parse_deploy(*deploy);
    }
    check_site();
  }

  // [deploy]: what real servers need beyond the lab (who administers them, as whom).
  void parse_deploy(const toml::node& node) {
    for (const auto& [key, value] : in_file_order(section(node, "deploy"))) {
      const std::string name(key->str());
      const std::string full = "deploy." + name;
      if (name == "admin_addresses") {
        const auto* array = value->as_array();
        if (array == nullptr || array->empty()) {
          fail(line_of(*value), full,
               fmt::format("must be a non-empty array of IPv4 addresses or CIDR blocks, got {}",
                           describe(*value)));
        }
        for (const toml::node& element : *array) {
          const auto* text = element.as_string();
          const std::string item = text == nullptr ? std::string() : text->get();
          if (text == nullptr || (!ipv4::parse_address(item) && !ipv4::parse_cidr(item))) {
            fail(line_of(element), full,
                 fmt::format("must be an IPv4 address or CIDR block like \"192.0.2.10\" or "
                             "\"192.0.2.0/24\", got {}",
                             describe(element)));
          }
          t_.admin_addresses.push_back(item);
        }
      } else if (name == "ssh_user") {
        t_.ssh_user = string_value(*value, full);
        if (const std::string why = name_problem(t_.ssh_user, 32); !why.empty()) {
          fail(line_of(*value), full, why);
        }
      } else {
        unknown_key(*key, full, "admin_addresses, ssh_user");
      }
    }
  }

  // [db]: automatic or manual failover of the primary.
  void parse_db(const toml::node& node) {
    for (const auto& [key, value] : in_file_order(section(node, "db"))) {
      const std::string name(key->str());
      const std::string full = "db." + name;
      if (name == "failover") {
        t_.failover = string_value(*value, full);
        if (t_.failover != "automatic" && t_.failover != "manual") {
          fail(line_of(*value), full,
               fmt::format("must be \"automatic\" or \"manual\", got {}", in_quotes(t_.failover)));
        }
        if (t_.failover == "automatic" && t_.monitor() == nullptr) {
          fail(line_of(*value), full,
               "\"automatic\" needs a host with role \"monitor\" (the failover manager runs "
               "there); add one, or say \"manual\"");
        }
      } else if (name == "failover_after") {
        const auto v = value->value<std::int64_t>();
        if (!value->is_integer() || !v || *v < 1 || *v > 3600) {
          fail(line_of(*value), full,
               fmt::format("must be a number of seconds in 1..3600, got {}", describe(*value)));
        }
        t_.failover_after = static_cast<int>(*v);
      } else {
        unknown_key(*key, full, "failover, failover_after");
      }
    }
  }

  // [lb]: how the load balancers share the site's virtual addresses (keepalived, VRRP).
  void parse_lb(const toml::node& node) {
    int addresses_line = line_of(node);
    for (const auto& [key, value] : in_file_order(section(node, "lb"))) {
      const std::string name(key->str());
      const std::string full = "lb." + name;
      if (name == "mode") {
        t_.lb_mode = string_value(*value, full);
        if (t_.lb_mode != "active-passive" && t_.lb_mode != "active-active") {
          fail(line_of(*value), full,
               fmt::format("must be \"active-passive\" or \"active-active\", got {}",
                           in_quotes(t_.lb_mode)));
        }
      } else if (name == "virtual_addresses") {
        addresses_line = line_of(*value);
        const auto* array = value->as_array();
        if (array == nullptr) {
          fail(line_of(*value), full,
               fmt::format("must be an array of IPv4 addresses, got {}", describe(*value)));
        }
        const ipv4::Cidr cidr = checked_cidr(t_.subnet);
        for (const toml::node& element : *array) {
          const auto* text = element.as_string();
          if (text == nullptr) {
            fail(line_of(element), full,
                 fmt::format("an address is a string, got {}", describe(element)));
          }
          const std::string address = text->get();
          check_address(address, cidr, line_of(element), full);
          for (const Host& h : t_.hosts) {
            if (h.address == address) {
              fail(line_of(element), full,
                   fmt::format("{} is host {}'s address; a virtual address is its own", address,
                               h.name));
            }
          }
          if (std::find(t_.virtual_addresses.begin(), t_.virtual_addresses.end(), address) !=
              t_.virtual_addresses.end()) {
            fail(line_of(element), full, fmt::format("duplicate address {}", address));
          }
          t_.virtual_addresses.push_back(address);
        }
      } else {
        unknown_key(*key, full, "mode, virtual_addresses");
      }
    }
    const std::size_t want = t_.lb_mode == "active-active" ? 2 : 1;
    if (t_.virtual_addresses.size() != want) {
      fail(addresses_line, "lb.virtual_addresses",
           fmt::format("{} needs {} virtual address{}, got {}", t_.lb_mode, want,
                       want == 1 ? "" : "es", t_.virtual_addresses.size()));
    }
  }

 private:
  [[noreturn]] void fail(int line, std::string key, const std::string& why) const {
    throw TopologyError(source_, line, std::move(key), why);
  }

  const toml::table& section(const toml::node& node, std::string_view name) const {
    const toml::table* table = node.as_table();
    if (table == nullptr) {
      fail(line_of(node), std::string(name),
           fmt::format("must be a table [{}], got {}", name, describe(node)));
    }
    return *table;
  }

  std::string string_value(const toml::node& node, const std::string& key) const {
    const auto* s = node.as_string();
    if (s == nullptr) {
      fail(line_of(node), key, fmt::format("must be a string, got {}", describe(node)));
    }
    return s->get();
  }

  std::uint16_t port_value(const toml::node& node, const std::string& key) const {
    const auto* i = node.as_integer();
    if (i == nullptr || i->get() < 1 || i->get() > 65535) {
      fail(line_of(node), key,
           fmt::format("must be a port number 1..65535, got {}", describe(node)));
    }
    return static_cast<std::uint16_t>(i->get());
  }

  [[noreturn]] void unknown_key(const toml::key& key, const std::string& full,
                                std::string_view known) const {
    fail(static_cast<int>(key.source().begin.line), full,
         fmt::format("unknown key (known: {})", known));
  }

  void parse_lab(const toml::node& node) {
    for (const auto& [key, value] : in_file_order(section(node, "lab"))) {
      const std::string name(key->str());
      const std::string full = "lab." + name;
      if (name == "name") {
        t_.name = string_value(*value, full);
        if (const std::string why = name_problem(t_.name, 8); !why.empty()) {
          fail(line_of(*value), full, why);
        }
      } else if (name == "subnet") {
        t_.subnet = string_value(*value, full);
        const auto cidr = ipv4::parse_cidr(t_.subnet);
        if (!cidr) {
          fail(line_of(*value), full,
               fmt::format("must be an IPv4 network like \"10.77.0.0/24\", got {}",
                           in_quotes(t_.subnet)));
        }
        if (cidr->prefix < 16 || cidr->prefix > 29) {
          fail(line_of(*value), full,
               fmt::format("prefix length must be 16..29, got /{}", cidr->prefix));
        }
        if ((cidr->network & cidr->mask()) != cidr->network) {
          fail(line_of(*value), full,
               fmt::format("{} has host bits set; the network address is {}/{}",
                           in_quotes(t_.subnet), ipv4::format_address(cidr->network & cidr->mask()),
                           cidr->prefix));
        }
      } else if (name == "edge_port") {
        t_.edge_port = port_value(*value, full);
      } else if (name == "prometheus_port") {
        t_.prometheus_port = port_value(*value, full);
      } else if (name == "alertmanager_port") {
        t_.alertmanager_port = port_value(*value, full);
      } else {
        unknown_key(*key, full, "name, subnet, edge_port, prometheus_port, alertmanager_port");
      }
    }
  }

  void parse_site(const toml::node& node) {
    for (const auto& [key, value] : in_file_order(section(node, "site"))) {
      const std::string name(key->str());
      const std::string full = "site." + name;
      if (name == "name") {
        t_.site_name = string_value(*value, full);
        if (const std::string why = dns_name_problem(t_.site_name); !why.empty()) {
          fail(line_of(*value), full, why);
        }
      } else if (name == "balance") {
        t_.balance = string_value(*value, full);
        if (t_.balance != "roundrobin" && t_.balance != "leastconn" && t_.balance != "source") {
          fail(line_of(*value), full,
               fmt::format("must be one of roundrobin, leastconn, source, got {}",
                           in_quotes(t_.balance)));
        }
      } else if (name == "http_port" || name == "https_port" || name == "app_port" ||
                 name == "web_port" || name == "db_port") {
        port(name) = port_value(*value, full);
        port_lines_.emplace_back(name, line_of(*value));
      } else if (name == "tls_certificate" || name == "tls_key") {
        std::string path = string_value(*value, full);
        if (path.empty()) fail(line_of(*value), full, "must not be empty");
        const std::filesystem::path fp(path);
        if (fp.is_relative()) {
          const auto dir = std::filesystem::path(source_).parent_path();
          path = (dir.empty() ? fp : dir / fp).lexically_normal().string();
        }
        std::error_code ec;
        if (!std::filesystem::is_regular_file(path, ec)) {
          fail(line_of(*value), full, fmt::format("no such file: {}", path));
        }
        (name == "tls_certificate" ? t_.tls_certificate : t_.tls_key) = path;
        tls_lines_.emplace_back(name, line_of(*value));
      } else {
        unknown_key(*key, full,
                    "name, balance, http_port, https_port, app_port, web_port, db_port, "
                    "tls_certificate, tls_key");
      }
    }
    if (t_.tls_certificate.empty() != t_.tls_key.empty()) {
      const auto& [given, line] = tls_lines_.front();
      fail(line, "site." + given, "tls_certificate and tls_key go together: give both or neither");
    }
    if (t_.http_port == t_.https_port) {
      fail(std::max(port_line("http_port"), port_line("https_port")), "site.https_port",
           fmt::format("must differ from site.http_port ({})", t_.http_port));
    }
  }

  std::uint16_t& port(std::string_view name) {
    if (name == "http_port") {
      return t_.http_port;
    }
    if (name == "https_port") {
      return t_.https_port;
    }
    if (name == "app_port") {
      return t_.app_port;
    }
    if (name == "web_port") {
      return t_.web_port;
    }
    return t_.db_port;
  }

  int port_line(std::string_view name) const {
    for (const auto& [n, line] : port_lines_) {
      if (n == name) {
        return line;
      }
    }
    return 0;
  }

  static std::string host_key(std::size_t index, std::string_view key) {
    return fmt::format("host[{}].{}", index + 1, key);
  }

  void parse_hosts(const toml::node* node) {
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
    const ipv4::Cidr cidr = checked_cidr(t_.subnet);
    for (std::size_t i = 0; i < array->size(); ++i) {
      parse_host(*array->get(i)->as_table(), i, cidr);
    }
  }

  void parse_host(const toml::table& table, std::size_t index, const ipv4::Cidr& cidr) {
    Host host;
    HostSource src;
    host.line = line_of(table);
    src.table = host.line;
    bool has_name = false;
    bool has_address = false;
    bool has_roles = false;
    for (const auto& [key, value] : in_file_order(table)) {
      const std::string name(key->str());
      const std::string full = host_key(index, name);
      if (name == "name") {
        host.name = string_value(*value, full);
        if (const std::string why = name_problem(host.name, 12); !why.empty()) {
          fail(line_of(*value), full, why);
        }
        // The lab's own files (edge, s6) and its bridge namespace (<lab>-net) use these names.
        if (host.name == "edge" || host.name == "s6" || host.name == "net") {
          fail(line_of(*value), full,
               fmt::format("{} is reserved for the lab itself", in_quotes(host.name)));
        }
        for (std::size_t j = 0; j < t_.hosts.size(); ++j) {
          if (t_.hosts[j].name == host.name) {
            fail(line_of(*value), full,
                 fmt::format("duplicate host name {} (also host[{}], line {})",
                             in_quotes(host.name), j + 1, sources_[j].table));
          }
        }
        has_name = true;
      } else if (name == "address") {
        host.address = string_value(*value, full);
        check_address(host.address, cidr, line_of(*value), full);
        for (std::size_t j = 0; j < t_.hosts.size(); ++j) {
          if (t_.hosts[j].address == host.address) {
            fail(line_of(*value), full,
                 fmt::format("duplicate address {} (also host[{}] {}, line {})", host.address,
                             j + 1, t_.hosts[j].name, sources_[j].address));
          }
        }
        src.address = line_of(*value);
        has_address = true;
      } else if (name == "roles") {
        host.roles = parse_roles(*value, full);
        src.roles = line_of(*value);
        has_roles = true;
      } else if (name == "db") {
        const std::string db = string_value(*value, full);
        if (db == "primary") {
          host.db = DbRole::Primary;
        } else if (db == "replica") {
          host.db = DbRole::Replica;
        } else {
          fail(line_of(*value), full,
               fmt::format("must be \"primary\" or \"replica\", got {}", in_quotes(db)));
        }
        src.db = line_of(*value);
      } else if (name == "app") {
        host.app = string_value(*value, full);
        if (host.app != "webstack" && host.app != "php" && host.app != "node") {
          fail(line_of(*value), full,
               fmt::format("must be one of webstack, php, node, got {}", in_quotes(host.app)));
        }
        src.app = line_of(*value);
      } else if (name == "ssh") {
        host.ssh = string_value(*value, full);
        const bool fine = !host.ssh.empty() && host.ssh.size() <= 253 &&
                          std::all_of(host.ssh.begin(), host.ssh.end(), [](char c) {
                            return is_lower_alnum(c) || (c >= 'A' && c <= 'Z') || c == '.' ||
                                   c == '-' || c == '_' || c == ':';
                          });
        if (!fine) {
          fail(line_of(*value), full,
               fmt::format("must be a host name or address SSH reaches (letters, digits, "
                           "'.', '-', '_', ':'), got {}",
                           in_quotes(host.ssh)));
        }
      } else if (name == "interface") {
        host.interface = string_value(*value, full);
        const bool fine = !host.interface.empty() && host.interface.size() <= 15 &&
                          std::all_of(host.interface.begin(), host.interface.end(), [](char c) {
                            return is_lower_alnum(c) || (c >= 'A' && c <= 'Z') || c == '.' ||
                                   c == '-' || c == '_';
                          });
        if (!fine) {
          fail(line_of(*value), full,
               fmt::format("must be a network interface name (at most 15 letters, digits, "
                           "'.', '-', '_'), got {}",
                           in_quotes(host.interface)));
        }
      } else {
        unknown_key(*key, full, "name, address, roles, db, app, ssh, interface");
      }
    }
    const auto missing = [&](bool present, std::string_view key) {
      if (!present) {
        fail(src.table, host_key(index, key),
             "missing; every [[host]] needs name, address and roles");
      }
    };
    missing(has_name, "name");
    missing(has_address, "address");
    missing(has_roles, "roles");

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
        fail(
            src.roles, host_key(index, "roles"),
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
    check_ports(host, index, src);
    t_.hosts.push_back(std::move(host));
    sources_.push_back(src);
  }

  void check_address(const std::string& text, const ipv4::Cidr& cidr, int line,
                     const std::string& key) const {
    const auto address = ipv4::parse_address(text);
    if (!address) {
      fail(line, key,
           fmt::format("must be an IPv4 address like \"{}\", got {}",
                       ipv4::format_address(cidr.network + 10), in_quotes(text)));
    }
    const std::string subnet =
        fmt::format("{}/{}", ipv4::format_address(cidr.network), cidr.prefix);
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

  std::vector<Role> parse_roles(const toml::node& node, const std::string& key) const {
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
  void check_ports(const Host& host, std::size_t index, const HostSource& src) const {
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

  // Checks of the site as a whole, once every host is known.
  void check_site() const {
    if (t_.with_role(Role::LoadBalancer).empty()) {
      fail(0, "host", "the site needs a load balancer: a host with roles = [\"lb\"]");
    }
    if (t_.with_role(Role::Web).empty()) {
      fail(0, "host", "the site needs at least one web host: a host with roles = [\"web\"]");
    }
    bool has_primary = false;
    for (const Host& h : t_.hosts) {
      has_primary = has_primary || h.db == DbRole::Primary;
    }
    if (!has_primary) {
      for (std::size_t i = 0; i < t_.hosts.size(); ++i) {
        if (t_.hosts[i].db == DbRole::Replica) {
          fail(sources_[i].db, host_key(i, "db"),
               fmt::format("{} is a replica, but no host has db = \"primary\"", t_.hosts[i].name));
        }
      }
      fail(0, "host",
           "the site needs a database primary: a host with roles including \"db\" and "
           "db = \"primary\"");
    }
    const auto lbs = t_.with_role(Role::LoadBalancer);
    if (lbs.size() > 1 && t_.virtual_addresses.empty()) {
      fail(0, "lb.virtual_addresses",
           fmt::format("{} load balancers need a virtual address to share ([lb] "
                       "virtual_addresses = [\"...\"]): clients need one address",
                       lbs.size()));
    }
    if (t_.lb_mode == "active-active" && lbs.size() != 2) {
      fail(0, "lb.mode",
           fmt::format("active-active needs exactly two load balancers, got {}", lbs.size()));
    }
    if (t_.monitor() != nullptr) {
      const std::pair<std::string_view, std::uint16_t> edge[] = {
          {"edge_port", t_.edge_port},
          {"prometheus_port", t_.prometheus_port},
          {"alertmanager_port", t_.alertmanager_port}};
      for (std::size_t a = 0; a < std::size(edge); ++a) {
        for (std::size_t b = a + 1; b < std::size(edge); ++b) {
          if (edge[a].second == edge[b].second) {
            fail(0, fmt::format("lab.{}", edge[b].first),
                 fmt::format("the edge would listen twice on 127.0.0.1:{} (lab.{} too)",
                             edge[b].second, edge[a].first));
          }
        }
      }
    }
    if (t_.with_role(Role::Client).empty()) {
      fail(0, "host",
           "the site needs exactly one client host (roles = [\"client\"]): tests send traffic "
           "from it");
    }
  }

  const std::string& source_;
  Topology& t_;
  std::vector<std::pair<std::string, int>> port_lines_;  // site ports set in the file
  std::vector<std::pair<std::string, int>> tls_lines_;
  std::vector<HostSource> sources_;  // parallel to t_.hosts
};

std::string error_message(const std::string& file, int line, const std::string& key,
                          const std::string& why) {
  std::string out = file;
  if (line > 0) {
    out += fmt::format(":{}", line);
  }
  out += ": ";
  if (!key.empty()) {
    out += key + ": ";
  }
  out += why;
  return out;
}

}  // namespace

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
  return ipv4::format_address(checked_cidr(subnet).gateway());
}

int Topology::prefix_length() const {
  return checked_cidr(subnet).prefix;
}

TopologyError::TopologyError(std::string file, int line, std::string key, const std::string& why)
    : std::runtime_error(error_message(file, line, key, why)),
      file_(std::move(file)),
      line_(line),
      key_(std::move(key)) {}

Topology default_topology() {
  Topology t = parse_topology(default_topology_text(), "<embedded default>");
  for (Host& h : t.hosts) {
    h.line = 0;  // not from a file
  }
  return t;
}

Topology load_topology_file(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    throw TopologyError(path, 0, {}, "cannot read topology file: it is a directory");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw TopologyError(path, 0, {},
                        fmt::format("cannot read topology file: {}", std::strerror(errno)));
  }
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) {
    throw TopologyError(path, 0, {},
                        fmt::format("cannot read topology file: {}", std::strerror(errno)));
  }
  return parse_topology(text, path);
}

Topology parse_topology(std::string_view text, const std::string& source) {
  toml::table root;
  try {
    root = toml::parse(text, std::string_view(source));
  } catch (const toml::parse_error& e) {
    throw TopologyError(source, static_cast<int>(e.source().begin.line), {},
                        fmt::format("invalid TOML: {}", e.description()));
  }
  Topology t;
  t.source = source;
  Parser(source, t).parse(root);
  return t;
}

}  // namespace webstack::topo
