// The parser's entry points, the document's tables and the checks of the site as a whole.
#include "topology/parser.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <system_error>

namespace webstack::topo {
namespace detail {

using namespace std::string_view_literals;

void Parser::parse(const toml::table& root) {
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

void Parser::fail(int line, std::string key, const std::string& why) const {
  throw TopologyError(source_, line, std::move(key), why);
}

const toml::table& Parser::section(const toml::node& node, std::string_view name) const {
  const toml::table* table = node.as_table();
  if (table == nullptr) {
    fail(line_of(node), std::string(name),
         fmt::format("must be a table [{}], got {}", name, describe(node)));
  }
  return *table;
}

std::string Parser::string_value(const toml::node& node, const std::string& key) const {
  const auto* s = node.as_string();
  if (s == nullptr) {
    fail(line_of(node), key, fmt::format("must be a string, got {}", describe(node)));
  }
  return s->get();
}

std::uint16_t Parser::port_value(const toml::node& node, const std::string& key) const {
  const auto* i = node.as_integer();
  if (i == nullptr || i->get() < 1 || i->get() > 65535) {
    fail(line_of(node), key, fmt::format("must be a port number 1..65535, got {}", describe(node)));
  }
  return static_cast<std::uint16_t>(i->get());
}

void Parser::unknown_key(const toml::key& key, const std::string& full,
                         std::string_view known) const {
  fail(static_cast<int>(key.source().begin.line), full,
       fmt::format("unknown key (known: {})", known));
}

// Checks of the site as a whole, once every host is known.
void Parser::check_site() const {
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

}  // namespace detail

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
  detail::Parser(source, t).parse(root);
  return t;
}

}  // namespace webstack::topo
