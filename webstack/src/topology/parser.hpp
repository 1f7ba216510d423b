// The topology file's parser, for src/topology only (the entry points, parse_topology and
// load_topology_file, are in topology.hpp): one pass over the TOML document, the first
// problem thrown as a TopologyError naming the file, the line and the key.
//   parse.cpp           the entry points, the document's tables, the site as a whole
//   parse_values.cpp    messages and checks of single values
//   parse_sections.cpp  [lab], [site], [lb], [db], [deploy]
//   parse_hosts.cpp     the [[host]] tables
#pragma once

#include <toml++/toml.h>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/ipv4.hpp"
#include "topology/topology.hpp"

namespace webstack::topo::detail {

// ---------------------------------------------------------------------------------------------
// Messages (parse_values.cpp).

std::string in_quotes(std::string_view s);     // a JSON string: "..." with escapes
std::string describe(const toml::node& node);  // "the integer 3", "an array", ...
int line_of(const toml::node& node);
std::string roles_text(const std::vector<Role>& roles);  // "web, db"

// ---------------------------------------------------------------------------------------------
// Checks of single values (parse_values.cpp).

bool is_lower_alnum(char c);
// [a-z][a-z0-9-]*, 1..max characters; empty result: fine.
std::string name_problem(std::string_view s, std::size_t max);
// Dot-separated labels of [a-z0-9-], at most 253 characters; empty result: fine.
std::string dns_name_problem(std::string_view s);
std::optional<Role> role_from(std::string_view s);

using Entry = std::pair<const toml::key*, const toml::node*>;
// A table's entries in file order (a toml::table iterates in key order).
std::vector<Entry> in_file_order(const toml::table& table);

// ---------------------------------------------------------------------------------------------
// The parser.

// Where a host's things are in the file, for checks across hosts.
struct HostSource {
  int table = 0;
  int address = 0;
  int roles = 0;
  int db = 0;
  int app = 0;
  int interface = 0;
};

// A [[host]] table while it is read: the host, where its things are, which of the
// required keys it has.
struct HostDraft {
  Host host;
  HostSource src;
  bool has_name = false;
  bool has_address = false;
  bool has_roles = false;
};

class Parser {
 public:
  Parser(const std::string& source, Topology& topology) : source_(source), t_(topology) {}

  // Fills the topology from the document; throws TopologyError at the first problem.
  void parse(const toml::table& root);

 private:
  // parse.cpp: what every part uses, and the site as a whole.
  [[noreturn]] void fail(int line, std::string key, const std::string& why) const;
  const toml::table& section(const toml::node& node, std::string_view name) const;
  std::string string_value(const toml::node& node, const std::string& key) const;
  std::uint16_t port_value(const toml::node& node, const std::string& key) const;
  [[noreturn]] void unknown_key(const toml::key& key, const std::string& full,
                                std::string_view known) const;
  void check_site() const;

  // parse_sections.cpp
  void parse_lab(const toml::node& node);
  void parse_site(const toml::node& node);
  std::uint16_t& port(std::string_view name);
  int port_line(std::string_view name) const;
  void parse_lb(const toml::node& node);
  void parse_db(const toml::node& node);
  void parse_deploy(const toml::node& node);

  // parse_hosts.cpp
  static std::string host_key(std::size_t index, std::string_view key);
  void parse_hosts(const toml::node* node);
  void parse_host(const toml::table& table, std::size_t index, const ipv4::Cidr& cidr);
  void parse_host_entry(HostDraft& d, const toml::key& key, const toml::node& value,
                        std::size_t index, const ipv4::Cidr& cidr) const;
  std::string host_name(const toml::node& value, const std::string& full) const;
  std::string host_address(const toml::node& value, const std::string& full,
                           const ipv4::Cidr& cidr) const;
  DbRole host_db(const toml::node& value, const std::string& full) const;
  std::string host_app(const toml::node& value, const std::string& full) const;
  std::string host_ssh(const toml::node& value, const std::string& full) const;
  std::string host_interface(const toml::node& value, const std::string& full) const;
  void check_host(const Host& host, std::size_t index, const HostSource& src) const;
  void check_address(const std::string& text, const ipv4::Cidr& cidr, int line,
                     const std::string& key) const;
  std::vector<Role> parse_roles(const toml::node& node, const std::string& key) const;
  void check_ports(const Host& host, std::size_t index, const HostSource& src) const;

  const std::string& source_;
  Topology& t_;
  std::vector<std::pair<std::string, int>> port_lines_;  // site ports set in the file
  std::vector<std::pair<std::string, int>> tls_lines_;
  std::vector<HostSource> sources_;  // parallel to t_.hosts
};

}  // namespace webstack::topo::detail
