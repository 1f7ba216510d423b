// The parser's sections: [lab], [site], [lb], [db], [deploy].
#include "topology/parser.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <system_error>

namespace webstack::topo::detail {

void Parser::parse_lab(const toml::node& node) {
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
             fmt::format("{} has host bits set; the network address is {}/{}", in_quotes(t_.subnet),
                         ipv4::format_address(cidr->network & cidr->mask()), cidr->prefix));
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

void Parser::parse_site(const toml::node& node) {
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

std::uint16_t& Parser::port(std::string_view name) {
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

int Parser::port_line(std::string_view name) const {
  for (const auto& [n, line] : port_lines_) {
    if (n == name) {
      return line;
    }
  }
  return 0;
}

// [lb]: how the load balancers share the site's virtual addresses (keepalived, VRRP).
void Parser::parse_lb(const toml::node& node) {
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
      const ipv4::Cidr cidr = t_.subnet_cidr();
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

// [db]: automatic or manual failover of the primary.
void Parser::parse_db(const toml::node& node) {
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

// [deploy]: what real servers need beyond the lab (who administers them, as whom).
void Parser::parse_deploy(const toml::node& node) {
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

}  // namespace webstack::topo::detail
