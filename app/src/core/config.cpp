// The configuration's sources (TOML file, environment, --set) read through the table of
// keys in config_keys.cpp, the checks across keys, and the effective configuration as TOML.
#include "core/config.hpp"

#include <fmt/format.h>

#include <toml++/toml.h>
#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <map>
#include <string_view>
#include <variant>

#include "core/config_keys.hpp"

namespace webstack {
namespace {

using namespace std::string_view_literals;
using namespace config_detail;

constexpr std::array<std::string_view, 3> kSections = {"server", "db", "log"};

const KeyDef* find_key(std::string_view name) {
  for (const KeyDef& k : key_table()) {
    if (k.name == name) {
      return &k;
    }
  }
  return nullptr;
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) {
    row[j] = j;
  }
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diag = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// "unknown key; did you mean server.port? (known in [server]: server.listen, ...)"
std::string unknown_key_message(std::string_view name) {
  const KeyDef* best = nullptr;
  std::size_t best_distance = 3;  // suggest only close matches
  for (const KeyDef& k : key_table()) {
    const std::size_t d = edit_distance(name, k.name);
    if (d < best_distance) {
      best_distance = d;
      best = &k;
    }
  }
  std::string out = "unknown key";
  if (best != nullptr) {
    out += fmt::format(", did you mean {}?", best->name);
  }
  const auto dot = name.find('.');
  const std::string_view section = dot == std::string_view::npos ? ""sv : name.substr(0, dot);
  std::vector<std::string_view> known;
  for (const KeyDef& k : key_table()) {
    if (k.name.substr(0, k.name.find('.')) == section) {
      known.push_back(k.name);
    }
  }
  if (known.empty()) {
    out += " (known sections: [server], [db], [log])";
  } else {
    out += " (known:";
    for (std::size_t i = 0; i < known.size(); ++i) {
      out += fmt::format("{} {}", i ? "," : "", known[i]);
    }
    out += ")";
  }
  return out;
}

// Range / kind checks common to every source, then the key's own checks.
void apply_value(Config& cfg, const KeyDef& key, const Value& value, const std::string& origin) {
  const std::string name(key.name);
  try {
    if (key.kind == Kind::Integer) {
      const std::int64_t n = as_int(value);
      if (n < key.min || n > key.max) {
        refuse(fmt::format("must be an integer {}..{}{}, got {}", key.min, key.max,
                           key.unit.empty() ? std::string() : fmt::format(" ({})", key.unit), n));
      }
    }
    if (key.check != nullptr) {
      key.store(cfg, key.check(as_str(value)));
    } else {
      key.store(cfg, value);
    }
  } catch (Refused& r) {
    throw ConfigError(name, origin, r.why);
  }
}

std::string expectation(const KeyDef& key) {
  switch (key.kind) {
    case Kind::Integer:
      return fmt::format("must be an integer {}..{}{}", key.min, key.max,
                         key.unit.empty() ? std::string() : fmt::format(" ({})", key.unit));
    case Kind::Boolean:
      return "must be a boolean (true/false/1/0/yes/no)";
    case Kind::String:
      return "must be a string";
    case Kind::List:
      return "must be a list of host:port";
  }
  return {};
}

// Text (environment, --set) to a value of the key's kind.
Value value_from_text(const KeyDef& key, const std::string& text, const std::string& origin) {
  switch (key.kind) {
    case Kind::Integer: {
      const std::string_view t = trim(text);
      std::int64_t n = 0;
      const auto [ptr, ec] = std::from_chars(t.data(), t.data() + t.size(), n);
      if (t.empty() || ec != std::errc() || ptr != t.data() + t.size()) {
        throw ConfigError(std::string(key.name), origin,
                          fmt::format("{}, got {}", expectation(key), quoted(text)));
      }
      return n;
    }
    case Kind::Boolean: {
      const std::string t = lower(trim(text));
      if (t == "true" || t == "1" || t == "yes") {
        return true;
      }
      if (t == "false" || t == "0" || t == "no") {
        return false;
      }
      throw ConfigError(std::string(key.name), origin,
                        fmt::format("{}, got {}", expectation(key), quoted(text)));
    }
    case Kind::String:
      return text;
    case Kind::List: {
      std::vector<Item> items;
      if (trim(text).empty()) {
        return items;
      }
      std::string_view rest = text;
      while (true) {
        const auto comma = rest.find(',');
        items.push_back(Item{std::string(rest.substr(0, comma)), origin});
        if (comma == std::string_view::npos) {
          break;
        }
        rest.remove_prefix(comma + 1);
      }
      return items;
    }
  }
  return {};
}

std::string line_origin(const std::string& path, const toml::source_region& src) {
  if (src.begin.line == 0) {
    return path;
  }
  return fmt::format("{}:{}", path, src.begin.line);
}

std::string_view toml_type_name(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a float";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
    case toml::node_type::none:
      return "nothing";
  }
  return "something else";
}

std::string describe(const toml::node& node) {
  std::string out(toml_type_name(node));
  if (const auto* s = node.as_string()) {
    out += " " + quoted(s->get());
  } else if (const auto* i = node.as_integer()) {
    out += fmt::format(" {}", i->get());
  } else if (const auto* f = node.as_floating_point()) {
    out += fmt::format(" {}", f->get());
  } else if (const auto* b = node.as_boolean()) {
    out += b->get() ? " true" : " false";
  }
  return out;
}

Value value_from_toml(const KeyDef& key, const toml::node& node, const std::string& origin,
                      const std::string& path) {
  const auto wrong_type = [&]() {
    return ConfigError(std::string(key.name), origin,
                       fmt::format("{}, got {}", expectation(key), describe(node)));
  };
  switch (key.kind) {
    case Kind::Integer:
      if (const auto* i = node.as_integer()) {
        return i->get();
      }
      throw wrong_type();
    case Kind::Boolean:
      if (const auto* b = node.as_boolean()) {
        return b->get();
      }
      throw wrong_type();
    case Kind::String:
      if (const auto* s = node.as_string()) {
        return s->get();
      }
      throw wrong_type();
    case Kind::List: {
      const auto* arr = node.as_array();
      if (arr == nullptr) {
        throw ConfigError(
            std::string(key.name), origin,
            fmt::format("must be an array of \"host:port\" strings, got {}", describe(node)));
      }
      std::vector<Item> items;
      for (const toml::node& element : *arr) {
        const std::string element_origin = line_origin(path, element.source());
        const auto* s = element.as_string();
        if (s == nullptr) {
          throw ConfigError(
              std::string(key.name), element_origin,
              fmt::format("must be an array of \"host:port\" strings, got {}", describe(element)));
        }
        items.push_back(Item{s->get(), element_origin});
      }
      return items;
    }
  }
  return {};
}

std::string env_name(std::string_view key) {
  std::string out = "WEBSTACK_";
  for (char c : key) {
    if (c == '.') {
      out += '_';
    } else if (c >= 'a' && c <= 'z') {
      out += static_cast<char>(c - 'a' + 'A');
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

void apply_setting(Config& cfg, const std::string& key, const std::string& value,
                   const std::string& origin) {
  const KeyDef* def = find_key(key);
  if (def == nullptr) {
    throw ConfigError(key, origin, unknown_key_message(key));
  }
  apply_value(cfg, *def, value_from_text(*def, value, origin), origin);
}

void apply_toml_file(Config& cfg, const std::string& path) {
  {
    std::ifstream probe(path);
    if (!probe) {
      throw ConfigError({}, path, fmt::format("cannot read config file: {}", std::strerror(errno)));
    }
  }
  toml::table root;
  try {
    root = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    throw ConfigError({}, line_origin(path, e.source()),
                      fmt::format("invalid TOML: {}", e.description()));
  }
  // Entries are checked in file order, so the first error reported is the first in the file
  // (a toml::table iterates in key order).
  struct Entry {
    toml::source_position pos;
    std::string section;
    const toml::key* key;
    const toml::node* node;
    bool top_level;  // an unknown section, or a value outside any section
  };
  std::vector<Entry> entries;
  for (const auto& [section_key, section_node] : root) {
    std::string section(section_key.str());
    const bool known = std::find(kSections.begin(), kSections.end(), section) != kSections.end();
    if (!known || !section_node.is_table()) {
      entries.push_back(
          Entry{section_key.source().begin, std::move(section), &section_key, &section_node, true});
      continue;
    }
    for (const auto& [key, node] : *section_node.as_table()) {
      entries.push_back(Entry{key.source().begin, section, &key, &node, false});
    }
  }
  std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.pos.line != b.pos.line ? a.pos.line < b.pos.line : a.pos.column < b.pos.column;
  });

  for (const Entry& e : entries) {
    if (e.top_level) {
      const std::string origin = line_origin(path, e.key->source());
      if (std::find(kSections.begin(), kSections.end(), e.section) != kSections.end()) {
        throw ConfigError(
            e.section, origin,
            fmt::format("must be a table [{}], got {}", e.section, describe(*e.node)));
      }
      if (e.node->is_table()) {
        throw ConfigError(e.section, origin,
                          "unknown section (known sections: [server], [db], [log])");
      }
      throw ConfigError(e.section, origin,
                        "unknown key; keys belong in the sections [server], [db] and [log]");
    }
    const std::string name = e.section + "." + std::string(e.key->str());
    const KeyDef* def = find_key(name);
    if (def == nullptr) {
      throw ConfigError(name, line_origin(path, e.key->source()), unknown_key_message(name));
    }
    const std::string origin = line_origin(path, e.node->source());
    apply_value(cfg, *def, value_from_toml(*def, *e.node, origin, path), origin);
  }
}

void apply_environment(Config& cfg, char** environ) {
  if (environ == nullptr) {
    return;
  }
  std::map<std::string, const KeyDef*> by_env;
  for (const KeyDef& k : key_table()) {
    by_env.emplace(env_name(k.name), &k);
  }

  // Collected first, then applied in table order: the result does not depend on the
  // order of the environment block.
  std::vector<std::pair<const KeyDef*, std::string>> found;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view entry(*e);
    if (entry.substr(0, 9) != "WEBSTACK_") {
      continue;
    }
    const auto eq = entry.find('=');
    const std::string name(entry.substr(0, eq));
    const std::string value = eq == std::string_view::npos ? "" : std::string(entry.substr(eq + 1));
    if (name == "WEBSTACK_CONFIG") {
      continue;
    }
    const auto it = by_env.find(name);
    if (it == by_env.end()) {
      // Best guess at the key meant: WEBSTACK_SERVER_PROT -> server.prot.
      std::string guess = lower(std::string_view(name).substr(9));
      if (const auto us = guess.find('_'); us != std::string::npos) {
        guess[us] = '.';
      }
      std::string why = "unknown variable";
      const KeyDef* best = nullptr;
      std::size_t best_distance = 3;
      for (const KeyDef& k : key_table()) {
        const std::size_t d = edit_distance(guess, k.name);
        if (d < best_distance) {
          best_distance = d;
          best = &k;
        }
      }
      if (best != nullptr) {
        why += fmt::format(", did you mean {}?", env_name(best->name));
      }
      why += " (WEBSTACK_CONFIG, or WEBSTACK_<SECTION>_<KEY> for a key, e.g. WEBSTACK_SERVER_PORT)";
      throw ConfigError(guess, "env " + name, why);
    }
    found.emplace_back(it->second, value);
  }
  for (const KeyDef& k : key_table()) {
    for (const auto& [def, value] : found) {
      if (def == &k) {
        const std::string origin = "env " + env_name(k.name);
        apply_value(cfg, k, value_from_text(k, value, origin), origin);
      }
    }
  }
}

void validate(const Config& cfg) {
  if (cfg.db.nodes.empty()) {
    throw ConfigError("db.nodes", {}, "at least one database node is required");
  }
  if (cfg.server.shutdown_idle_grace > cfg.server.shutdown_deadline) {
    throw ConfigError(
        "server.shutdown_idle_grace_ms", {},
        fmt::format("must not exceed server.shutdown_deadline_ms ({} > {})",
                    cfg.server.shutdown_idle_grace.count(), cfg.server.shutdown_deadline.count()));
  }
}

std::vector<std::string> config_keys() {
  std::vector<std::string> keys;
  keys.reserve(key_table().size());
  for (const KeyDef& k : key_table()) {
    keys.emplace_back(k.name);
  }
  return keys;
}

std::string to_toml(const Config& cfg) {
  std::string out;
  std::string_view current;
  for (const KeyDef& k : key_table()) {
    if (k.render == nullptr) {
      continue;
    }
    const auto dot = k.name.find('.');
    const std::string_view section = k.name.substr(0, dot);
    if (section != current) {
      if (!out.empty()) {
        out += '\n';
      }
      out += fmt::format("[{}]\n", section);
      current = section;
    }
    out += fmt::format("{} = {}\n", k.name.substr(dot + 1), k.render(cfg));
  }
  return out;
}

}  // namespace webstack
