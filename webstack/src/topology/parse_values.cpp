// The parser's messages and checks of single values (names, DNS names, roles), and a
// table's entries in file order.
#include "common/text.hpp"
#include "topology/parser.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>

namespace webstack::topo::detail {
namespace {

constexpr std::array<Role, 5> kRoles = {Role::LoadBalancer, Role::Web, Role::Database, Role::Client,
                                        Role::Monitor};

}  // namespace

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

}  // namespace webstack::topo::detail
