#include "failover/manager.hpp"

#include <fmt/format.h>
#include <boost/json.hpp>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <future>
#include <iterator>
#include <stdexcept>
#include <string>
#include <thread>

#include <mysql.h>

#include "common/process.hpp"
#include "common/text.hpp"
#include "failover/daemon.hpp"
#include "failover/decide.hpp"
#include "failover/lease.hpp"
#include "failover/manager_detail.hpp"
#include "failover/wire.hpp"

// The manager's probes are in manager_probe.cpp, its actions on the primary in
// manager_actions.cpp, and the rebuilds of diverged nodes in manager_rebuild.cpp.
namespace webstack::failover {
namespace manager_detail {

namespace {

using namespace std::chrono_literals;

std::string read_secret(const std::string& path) {
  std::string s = text::trim(read_text_or_empty(path));
  if (s.empty()) throw std::runtime_error("cannot read " + path + " (missing or empty)");
  return s;
}

// Replaces `path` whole (a reader sees the old name or the new one).
void write_file_atomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::trunc);
    f << text;
    if (!f.flush()) throw std::runtime_error("cannot write " + tmp);
  }
  std::filesystem::rename(tmp, path);
}

// Digits removed: two reasons that differ only in their figures are the same news.
std::string shape_of(std::string s) {
  s.erase(std::remove_if(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }), s.end());
  return s;
}

}  // namespace

Manager::Manager(const ManagerConfig& c) : c_(c), decider_(initial_primary(c), c.failover_after) {
  const std::string password = read_secret(c.password_file);
  repl_password_ = read_secret(c.repl_password_file);
  decider_.set_rebuild_available(!c.rebuild_command.empty());
  if (const std::string path = async_gtid_file(); !path.empty()) {
    const std::string gtid = text::trim(read_text_or_empty(path));
    if (!gtid.empty()) {
      decider_.set_async_gtid(gtid);
      say("failover manager: the primary committed without semi-sync up to GTID {} (recorded "
          "before a restart): a replica must hold it to be promoted",
          gtid);
    }
  }
  // Questions get c.timeout; actions (STOP SLAVE waits for a replication thread that
  // may be stuck connecting to a dead primary) get ten times as long, on sessions of
  // their own.
  for (const auto& n : c.db) {
    sessions_.push_back(std::make_unique<SqlSession>(
        Endpoint{n.address, n.port, "", c.user, password, c.ssl_ca, c.timeout}));
    action_sessions_.push_back(std::make_unique<SqlSession>(
        Endpoint{n.address, n.port, "", c.user, password, c.ssl_ca, c.timeout * 10}));
  }
}

int Manager::run() {
  StateServer server(c_.listen, c_.port);
  publish();
  say("failover manager: watching {} database nodes and {} apps every {} ms; deposes the "
      "primary after {} ms without a writable one, promotes {} ms after the agents stopped "
      "vouching for it; primary: {}",
      c_.db.size(), c_.apps.size(), c_.interval.count(), c_.failover_after.count(),
      (c_.lease + c_.interval).count(), decider_.primary());
  // The state port is the agents' voter: it must answer while a round waits out a
  // cut-off node's timeouts (a round can outlast a lease), so it has a thread of its own
  // and never waits on a round.
  std::atomic<bool> serving{true};
  std::thread serve([&] {
    server.run([this](const std::string& r, const std::string& peer) { return answer(r, peer); },
               g_stop, serving);
  });
  // However the loop ends (a signal, or an error that reaches main), the server stops
  // before its socket is closed.
  struct StopServer {
    std::atomic<bool>& serving;
    std::thread& t;
    ~StopServer() {
      serving = false;
      t.join();
    }
  } stop_server{serving, serve};
  while (g_stop == 0) {
    const auto start = Clock::now();
    round(start);
    publish();
    while (g_stop == 0 && Clock::now() < start + c_.interval) std::this_thread::sleep_for(10ms);
  }
  say("failover manager: stopping");
  return 0;
}

std::string Manager::initial_primary(const ManagerConfig& c) {
  if (!c.primary_file.empty()) {
    std::string recorded = text::trim(read_text_or_empty(c.primary_file));
    for (const auto& n : c.db)
      if (n.name == recorded) return recorded;
  }
  return c.primary;
}

void Manager::round(Clock::time_point now) {
  designate_if_asked();
  std::vector<std::future<NodeView>> node_jobs;
  for (std::size_t i = 0; i < c_.db.size(); ++i) {
    node_jobs.push_back(
        std::async(std::launch::async, [this, i] { return probe_node(*sessions_[i], c_.db[i]); }));
  }
  std::vector<std::future<AppView>> app_jobs;
  for (const auto& a : c_.apps) {
    app_jobs.push_back(
        std::async(std::launch::async, [this, &a] { return probe_app(a, c_.db, c_.timeout); }));
  }
  nodes_.clear();
  for (auto& j : node_jobs) nodes_.push_back(j.get());
  std::vector<AppView> apps;
  apps.reserve(app_jobs.size());
  for (auto& j : app_jobs) apps.push_back(j.get());
  paused_ = !c_.pause_file.empty() && std::filesystem::exists(c_.pause_file);
  reap_rebuild();
  retry_unreachable_rebuild(now);
  mark_diverged();

  adopt_the_lease_holder();
  Decision d = decider_.decide(now, nodes_, apps, paused_);
  // A node whose rebuild failed, answering and no longer diverged (repaired otherwise):
  // forgotten (its next rebuild starts from the first delay again).
  for (auto it = rebuild_retry_.begin(); it != rebuild_retry_.end();) {
    const auto& dv = decider_.diverged();
    const bool answers = std::any_of(nodes_.begin(), nodes_.end(), [&](const NodeView& n) {
      return n.name == it->first && n.reachable && !n.rebuilding;
    });
    const bool ok = answers && std::find(dv.begin(), dv.end(), it->first) == dv.end() &&
                    decider_.down_since() == std::nullopt;
    it = ok ? rebuild_retry_.erase(it) : std::next(it);
  }
  if (d.action != Action::None && d.action != Action::Fence && now < quiet_until_) {
    d.action = Action::None;  // a failed attempt a moment ago: wait before the next
  }
  if (d.action != Action::None || shape_of(d.reason) != shape_of(last_reason_)) {
    if (!d.reason.empty()) say("{}: {}", action_name(d.action), d.reason);
  }
  last_reason_ = d.reason;
  if (d.action != Action::None) {
    last_action_ = fmt::format("{} {}", action_name(d.action), fmt::join(d.targets, ","));
  }
  try {
    switch (d.action) {
      case Action::None:
        break;
      case Action::Fence:
        for (const auto& t : d.targets) fence(t);
        ++fences_;
        break;
      case Action::Promote:
        promote(d.targets.front(), d.old_primary);
        ++promotions_;
        break;
      case Action::Restore:
        restore(d.targets.front());
        ++restores_;
        break;
      case Action::Rejoin:
        rejoin(d.targets.front());
        ++rejoins_;
        break;
      case Action::Rebuild:
        start_rebuild(d.targets.front());
        break;
    }
  } catch (const std::exception& e) {
    ++failures_;
    say("{} {} failed: {}", action_name(d.action), fmt::join(d.targets, ","), e.what());
    quiet_until_ = Clock::now() + 1s;  // not a retry storm: the next try in a second
  }
  record_primary();
  record_async_gtid();
}

// `<state>/async-gtid`, beside the primary's file: the decider's memory of a semi-sync
// fallback, so a restarted manager still refuses a replica that lacks those writes.
std::string Manager::async_gtid_file() const {
  return c_.primary_file.empty()
             ? std::string()
             : std::filesystem::path(c_.primary_file).parent_path().string() + "/async-gtid";
}

void Manager::record_async_gtid() {
  const std::string path = async_gtid_file();
  if (path.empty()) return;
  const std::string want = decider_.async_gtid().value_or("");
  if (text::trim(read_text_or_empty(path)) == want) return;
  try {
    write_file_atomically(path, want + "\n");
  } catch (const std::exception& e) {
    say("cannot record the semi-sync fallback's position: {}", e.what());
  }
}

std::size_t Manager::index_of(const std::string& name) const {
  for (std::size_t i = 0; i < c_.db.size(); ++i)
    if (c_.db[i].name == name) return i;
  throw std::logic_error("unknown node " + name);
}

void Manager::record_primary() {
  if (c_.primary_file.empty() || decider_.primary().empty()) return;
  if (text::trim(read_text_or_empty(c_.primary_file)) == decider_.primary()) return;
  try {
    write_file_atomically(c_.primary_file, decider_.primary() + "\n");
  } catch (const std::exception& e) {
    say("cannot record the primary: {}", e.what());
  }
}

// The state port's answers: the vote for `GET /vouch?for=NODE` (the agents ask for
// theirs), the metrics for `GET /metrics`, the state as JSON otherwise.
Reply Manager::answer(const std::string& request, const std::string& peer) const {
  const Published p = published();
  if (request.starts_with("GET /vouch")) {
    const ManagerWord word{true, p.primary, p.deposed};
    return {"application/json",
            json::serialize(json::object{{"vouch", vouches_for(word, query_value(request, "for"))},
                                         {"primary", p.primary},
                                         {"deposed", p.deposed}}) +
                "\n"};
  }
  if (request.starts_with("GET /designate")) {
    // From this host only (`webstack db promote` runs curl here): the database hosts
    // reach this port too, for their votes.
    if (peer != c_.listen) {
      throw std::runtime_error("designate: only from " + c_.listen + ", not " + peer);
    }
    const std::string node = query_value(request, "node");
    bool known = false;
    for (const auto& n : c_.db) known = known || n.name == node;
    if (!known) throw std::runtime_error("designate: not a database node: \"" + node + "\"");
    std::lock_guard lock(published_mutex_);
    designate_request_ = node;
    return {"application/json", json::serialize(json::object{{"designating", node}}) + "\n"};
  }
  if (request.starts_with("GET /metrics")) return {"text/plain; version=0.0.4", metrics_text(p)};
  return {"application/json", state_json(p)};
}

void Manager::publish() {
  Published p{decider_.primary(),
              deposed_,
              decider_.refused(),
              decider_.down_since(),
              paused_,
              last_action_,
              last_reason_,
              promotions_,
              fences_,
              rejoins_,
              restores_,
              failures_,
              diverged_nodes(),
              rebuild_pid_ > 0 ? rebuild_host_ : std::string(),
              rebuilds_,
              rebuild_failures_,
              errant_files()};
  std::lock_guard lock(published_mutex_);
  published_ = std::move(p);
}

Manager::Published Manager::published() const {
  std::lock_guard lock(published_mutex_);
  return published_;
}

std::string Manager::state_json(const Published& p) const {
  const auto since = p.down_since;
  return json::serialize(
             json::object{{"primary", p.primary},
                          {"deposed", p.deposed},
                          {"refused", p.refused},
                          {"writable_primary", !since.has_value()},
                          {"without_primary_ms",
                           since ? static_cast<std::int64_t>(ms_between(*since, Clock::now())) : 0},
                          {"failover_after_ms", c_.failover_after.count()},
                          {"paused", p.paused},
                          {"diverged", json::value_from(p.diverged)},
                          {"rebuilding", p.rebuilding},
                          {"last_action", p.last_action},
                          {"last_reason", p.last_reason}}) +
         "\n";
}

// Prometheus text format: what the alerts need (docs/monitoring.md).
std::string Manager::metrics_text(const Published& p) const {
  const auto since = p.down_since;
  std::string out;
  const auto metric = [&](const char* name, const char* type, const char* help,
                          const std::string& value) {
    out += fmt::format("# HELP {0} {1}\n# TYPE {0} {2}\n{0} {3}\n", name, help, type, value);
  };
  metric("webstack_failover_writable_primary", "gauge",
         "1 when exactly one database node is writable, as the manager sees it", since ? "0" : "1");
  metric("webstack_failover_seconds_without_primary", "gauge",
         "How long no database node has been writable",
         fmt::format("{:.3f}", since ? ms_between(*since, Clock::now()) / 1000.0 : 0.0));
  metric("webstack_failover_paused", "gauge", "1 while promotions are paused",
         p.paused ? "1" : "0");
  metric("webstack_failover_refused", "gauge",
         "1 while a promotion is refused: the candidate may lack writes the primary "
         "acknowledged without semi-sync",
         p.refused.empty() ? "0" : "1");
  metric("webstack_failover_promotions_total", "counter", "Replicas promoted",
         std::to_string(p.promotions));
  metric("webstack_failover_fences_total", "counter",
         "Rounds that saw a second writable node (its agent cuts it off and kills it)",
         std::to_string(p.fences));
  metric("webstack_failover_rejoins_total", "counter",
         "Former primaries made replicas of the primary", std::to_string(p.rejoins));
  metric("webstack_failover_restores_total", "counter",
         "Old primaries made writable again (no other node to promote)",
         std::to_string(p.restores));
  metric("webstack_failover_action_failures_total", "counter",
         "Actions that failed (retried a second later)", std::to_string(p.failures));
  metric("webstack_failover_diverged_nodes", "gauge",
         "Nodes holding transactions the primary lacks (being rebuilt, or not yet)",
         std::to_string(p.diverged.size()));
  metric("webstack_failover_rebuilding", "gauge", "1 while a rebuild of a diverged node runs",
         p.rebuilding.empty() ? "0" : "1");
  metric("webstack_failover_rebuilds_total", "counter", "Diverged nodes rebuilt from the primary",
         std::to_string(p.rebuilds));
  metric("webstack_failover_rebuild_failures_total", "counter",
         "Rebuilds that failed (tried again later)", std::to_string(p.rebuild_failures));
  metric("webstack_failover_errant_files", "gauge",
         "Files of discarded transactions a rebuild saved, not yet moved away by a person",
         std::to_string(p.errant_files));
  out +=
      "# HELP webstack_failover_primary_info The primary the manager follows\n"
      "# TYPE webstack_failover_primary_info gauge\n";
  out += fmt::format("webstack_failover_primary_info{{primary=\"{}\"}} 1\n", p.primary);
  return out;
}

}  // namespace manager_detail

int run_manager(const ManagerConfig& c) {
  install_signal_handlers();
  if (mysql_library_init(0, nullptr, nullptr) != 0) throw std::runtime_error("mysql_library_init");
  manager_detail::Manager m(c);
  const int rc = m.run();
  mysql_library_end();
  return rc;
}

}  // namespace webstack::failover
