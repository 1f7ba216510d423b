#include "failover/config.hpp"

#include <fmt/format.h>

#include <toml++/toml.h>
#include <stdexcept>

#include "common/text.hpp"

namespace webstack::failover {

namespace {

class Reader {
 public:
  explicit Reader(const std::string& path) : path_(path) {
    try {
      root_ = toml::parse_file(path);
    } catch (const toml::parse_error& e) {
      throw std::runtime_error(text::located(path, static_cast<int>(e.source().begin.line), {},
                                             "invalid TOML: " + std::string(e.description())));
    }
  }
  const toml::table& root() const { return root_; }
  [[noreturn]] void fail(const std::string& key, const std::string& why) const {
    throw std::runtime_error(text::located(path_, 0, key, why));
  }
  const toml::table& table(const std::string& key) const {
    const auto* t = root_[key].as_table();
    if (t == nullptr) fail(key, "missing table");
    return *t;
  }
  std::string text(const toml::table& t, const std::string& key, const std::string& full,
                   bool required = true) const {
    const auto v = t[key].value<std::string>();
    if (!v && required) fail(full, "missing (a string)");
    return v.value_or("");
  }
  long long number(const toml::table& t, const std::string& key, const std::string& full,
                   long long lo, long long hi, long long fallback) const {
    if (!t.contains(key)) return fallback;
    const auto v = t[key].value<long long>();
    if (!v || *v < lo || *v > hi) fail(full, fmt::format("must be an integer in {}..{}", lo, hi));
    return *v;
  }
  std::vector<DbNode> nodes(const std::string& key) const {
    std::vector<DbNode> out;
    const auto* array = root_[key].as_array();
    if (array == nullptr) return out;
    for (std::size_t i = 0; i < array->size(); ++i) {
      const auto* t = (*array)[i].as_table();
      const std::string full = fmt::format("{}[{}]", key, i);
      if (t == nullptr) fail(full, "must be a table");
      out.push_back({text(*t, "name", full + ".name"), text(*t, "address", full + ".address"),
                     static_cast<int>(number(*t, "port", full + ".port", 1, 65535, 3306))});
    }
    return out;
  }

 private:
  std::string path_;
  toml::table root_;
};

std::chrono::milliseconds ms(long long v) {
  return std::chrono::milliseconds(v);
}

}  // namespace

ManagerConfig load_manager_config(const std::string& path) {
  const Reader r(path);
  const auto& m = r.table("manager");
  ManagerConfig c;
  c.listen = r.text(m, "listen", "manager.listen");
  c.port = static_cast<int>(r.number(m, "port", "manager.port", 1, 65535, 9096));
  c.interval = ms(r.number(m, "interval_ms", "manager.interval_ms", 50, 60000, 250));
  c.failover_after =
      ms(r.number(m, "failover_after_ms", "manager.failover_after_ms", 500, 3600000, 3000));
  c.timeout = ms(r.number(m, "timeout_ms", "manager.timeout_ms", 100, 60000, 1000));
  c.user = r.text(m, "user", "manager.user");
  c.password_file = r.text(m, "password_file", "manager.password_file");
  c.repl_password_file = r.text(m, "repl_password_file", "manager.repl_password_file");
  c.ssl_ca = r.text(m, "ssl_ca", "manager.ssl_ca", false);
  c.primary = r.text(m, "primary", "manager.primary");
  c.primary_file = r.text(m, "primary_file", "manager.primary_file", false);
  c.pause_file = r.text(m, "pause_file", "manager.pause_file", false);
  // Required, never defaulted: the manager waits out the lease the agents hold, so both
  // must say the same (rendered from one value).
  if (!m.contains("lease_ms")) r.fail("manager.lease_ms", "missing (the agents' lease, in ms)");
  c.lease = ms(r.number(m, "lease_ms", "manager.lease_ms", 100, 600000, 1000));
  c.agent_port = static_cast<int>(r.number(m, "agent_port", "manager.agent_port", 1, 65535, 9097));
  if (m.contains("rebuild_command")) {
    const auto* argv = m["rebuild_command"].as_array();
    if (argv == nullptr || argv->empty()) {
      r.fail("manager.rebuild_command", "must be a non-empty array of strings");
    }
    bool names_host = false;
    for (const auto& a : *argv) {
      const auto v = a.value<std::string>();
      if (!v) r.fail("manager.rebuild_command", "must be a non-empty array of strings");
      names_host = names_host || v->find("{host}") != std::string::npos;
      c.rebuild_command.push_back(*v);
    }
    if (!names_host) r.fail("manager.rebuild_command", "names no {host} (the node to rebuild)");
  }
  c.rebuild_lock = r.text(m, "rebuild_lock", "manager.rebuild_lock", false);
  c.errant_dir = r.text(m, "errant_dir", "manager.errant_dir", false);
  c.db = r.nodes("db");
  if (c.db.size() < 2) r.fail("db", "needs at least two [[db]] nodes (a primary and a replica)");
  // Each node once: the deposition counts the agents that stopped vouching.
  for (std::size_t i = 0; i < c.db.size(); ++i) {
    for (std::size_t j = 0; j < i; ++j) {
      if (c.db[j].name == c.db[i].name || c.db[j].address == c.db[i].address) {
        r.fail(fmt::format("db[{}]", i), "repeats db[" + std::to_string(j) + "]");
      }
    }
  }
  bool known = false;
  for (const auto& n : c.db) known = known || n.name == c.primary;
  if (!known) r.fail("manager.primary", "\"" + c.primary + "\" is not one of the [[db]] nodes");
  if (const auto* apps = r.root()["app"].as_array()) {
    for (std::size_t i = 0; i < apps->size(); ++i) {
      const auto* t = (*apps)[i].as_table();
      const std::string full = fmt::format("app[{}]", i);
      if (t == nullptr) r.fail(full, "must be a table");
      c.apps.push_back({r.text(*t, "name", full + ".name"), r.text(*t, "url", full + ".url")});
    }
  }
  if (c.failover_after <= c.interval) {
    r.fail("manager.failover_after_ms", "must be longer than manager.interval_ms");
  }
  return c;
}

AgentConfig load_agent_config(const std::string& path) {
  const Reader r(path);
  const auto& a = r.table("agent");
  AgentConfig c;
  c.host = r.text(a, "host", "agent.host");
  c.listen = r.text(a, "listen", "agent.listen");
  c.port = static_cast<int>(r.number(a, "port", "agent.port", 1, 65535, 9097));
  c.socket = r.text(a, "socket", "agent.socket");
  c.pid_file = r.text(a, "pid_file", "agent.pid_file");
  c.db_port = static_cast<int>(r.number(a, "db_port", "agent.db_port", 1, 65535, 3306));
  if (a.contains("gate")) {
    const auto v = a["gate"].value<bool>();
    if (!v) r.fail("agent.gate", "must be true or false");
    c.gate = *v;
  }
  c.interval = ms(r.number(a, "interval_ms", "agent.interval_ms", 50, 60000, 250));
  if (!a.contains("lease_ms")) r.fail("agent.lease_ms", "missing (the lease, in ms)");
  c.lease = ms(r.number(a, "lease_ms", "agent.lease_ms", 100, 600000, 1000));
  c.timeout = ms(r.number(a, "timeout_ms", "agent.timeout_ms", 50, 60000, 250));
  c.semi_sync_fallback =
      ms(r.number(a, "semi_sync_fallback_ms", "agent.semi_sync_fallback_ms", 100, 3600000, 3000));
  // A primary cut off from the voters (the apps still reaching it) loses its lease before
  // its agent would release commits no replica acknowledged.
  if (c.semi_sync_fallback <= c.lease + c.interval + c.timeout) {
    r.fail("agent.semi_sync_fallback_ms",
           "must be longer than agent.lease_ms + agent.interval_ms + agent.timeout_ms");
  }
  // Renewed several times per lease: a question lost or late does not lapse it.
  if (c.lease < 2 * c.interval + c.timeout) {
    r.fail("agent.lease_ms", "must be at least 2 x agent.interval_ms + agent.timeout_ms");
  }
  const auto managers = r.nodes("manager");
  if (managers.size() != 1) r.fail("manager", "needs exactly one [[manager]]");
  c.manager = managers.front();
  c.peers = r.nodes("peer");
  if (c.peers.empty()) r.fail("peer", "needs at least one [[peer]] (another database host)");
  // Each voter once: a peer listed twice, or this host as its own peer, would count twice.
  for (std::size_t i = 0; i < c.peers.size(); ++i) {
    const auto& p = c.peers[i];
    if (p.name == c.host || p.address == c.listen) {
      r.fail(fmt::format("peer[{}]", i), "is this host itself (" + c.host + ")");
    }
    for (std::size_t j = 0; j < i; ++j) {
      if (c.peers[j].name == p.name || c.peers[j].address == p.address) {
        r.fail(fmt::format("peer[{}]", i), "repeats peer[" + std::to_string(j) + "]");
      }
    }
  }
  return c;
}

}  // namespace webstack::failover
