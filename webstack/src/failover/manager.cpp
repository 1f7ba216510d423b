#include "failover/manager.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>
#include <boost/json.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <thread>

#include <mysql.h>

#include "common/process.hpp"
#include "common/text.hpp"
#include "failover/daemon.hpp"
#include "failover/decide.hpp"
#include "failover/lease.hpp"
#include "failover/semi_sync_sql.hpp"
#include "failover/sql_session.hpp"
#include "failover/wire.hpp"

namespace webstack::failover {

namespace {

using namespace std::chrono_literals;
namespace json = boost::json;

std::string read_secret(const std::string& path) {
  std::string s = text::trim(read_text_or_empty(path));
  if (s.empty()) throw std::runtime_error("cannot read " + path + " (missing or empty)");
  return s;
}

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
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

// The SHOW SLAVE STATUS row's view of replication.
void read_replication(SqlSession& s, NodeView& v) {
  const auto rows = s.query("SHOW SLAVE STATUS");
  if (rows.empty()) return;
  const auto& r = rows.front();
  const auto get = [&](const char* k) {
    const auto it = r.find(k);
    return it == r.end() ? std::string() : it->second;
  };
  v.master_host = get("Master_Host");
  v.io_running = get("Slave_IO_Running") == "Yes";
  v.sql_running = get("Slave_SQL_Running") == "Yes";
  v.relay_applied = get("Relay_Master_Log_File") == get("Master_Log_File") &&
                    get("Exec_Master_Log_Pos") == get("Read_Master_Log_Pos");
  const std::string io_errno = get("Last_IO_Errno");
  v.io_errno = io_errno.empty() ? 0 : std::atoi(io_errno.c_str());
}

NodeView probe_node(SqlSession& s, const DbNode& n) {
  NodeView v;
  v.name = n.name;
  v.address = n.address;
  try {
    const auto rows = s.query(
        "SELECT @@GLOBAL.read_only AS ro, @@GLOBAL.gtid_current_pos AS cur, "
        "@@GLOBAL.gtid_binlog_pos AS bin, " +
        global_status("RPL_SEMI_SYNC_MASTER_STATUS") + " AS ss, " +
        global_status("RPL_SEMI_SYNC_MASTER_NO_TX") + " AS notx");
    if (rows.empty()) throw std::runtime_error("no answer to SELECT @@read_only");
    const Row& r = rows.front();
    v.writable = r.at("ro") == "0";
    v.gtid_current_pos = r.at("cur");
    v.gtid_binlog_pos = r.at("bin");
    if (!r.at("ss").empty() && !r.at("notx").empty()) {
      v.semi_sync_known = true;
      v.semi_sync_on = r.at("ss") == "ON";
      v.semi_sync_no_tx = std::stoull(r.at("notx"));
    }
    read_replication(s, v);
    v.reachable = true;
  } catch (const std::exception& e) {
    v.error = e.what();
  }
  return v;
}

// The app's GET /api/info: {"db": {"nodes": [{"name": "10.77.0.11:3306", "reachable":
// true, "writable": true, ...}]}}. Node names there are address:port.
AppView probe_app(const AppEndpoint& a, const std::vector<DbNode>& db,
                  std::chrono::milliseconds timeout) {
  AppView v;
  v.name = a.name;
  const auto secs = fmt::format("{:.1f}", std::chrono::duration<double>(timeout).count());
  const auto r = run({"curl", "-sS", "--fail", "--max-time", secs, a.url}, timeout + 2s);
  if (r.exit_code != 0) {
    v.error = text::trim(r.err).substr(0, 120);
    return v;
  }
  try {
    const auto info = json::parse(r.out);
    for (const auto& node : info.at("db").at("nodes").as_array()) {
      const std::string name(node.at("name").as_string());
      for (const auto& d : db) {
        if (name == fmt::format("{}:{}", d.address, d.port) || name == d.name) {
          v.nodes.push_back(
              {d.name, node.at("reachable").as_bool(), node.at("writable").as_bool()});
        }
      }
    }
    v.answered = true;
  } catch (const std::exception& e) {
    v.error = std::string("not the app's /api/info: ") + e.what();
  }
  return v;
}

class Manager {
 public:
  explicit Manager(const ManagerConfig& c) : c_(c), decider_(initial_primary(c), c.failover_after) {
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

  int run() {
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

 private:
  static std::string initial_primary(const ManagerConfig& c) {
    if (!c.primary_file.empty()) {
      const std::string recorded = text::trim(read_text_or_empty(c.primary_file));
      for (const auto& n : c.db)
        if (n.name == recorded) return recorded;
    }
    return c.primary;
  }

  void round(Clock::time_point now) {
    designate_if_asked();
    std::vector<std::future<NodeView>> node_jobs;
    for (std::size_t i = 0; i < c_.db.size(); ++i) {
      node_jobs.push_back(std::async(std::launch::async,
                                     [this, i] { return probe_node(*sessions_[i], c_.db[i]); }));
    }
    std::vector<std::future<AppView>> app_jobs;
    for (const auto& a : c_.apps) {
      app_jobs.push_back(
          std::async(std::launch::async, [this, &a] { return probe_app(a, c_.db, c_.timeout); }));
    }
    nodes_.clear();
    for (auto& j : node_jobs) nodes_.push_back(j.get());
    std::vector<AppView> apps;
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
  std::string async_gtid_file() const {
    return c_.primary_file.empty()
               ? std::string()
               : std::filesystem::path(c_.primary_file).parent_path().string() + "/async-gtid";
  }
  void record_async_gtid() {
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

  std::size_t index_of(const std::string& name) const {
    for (std::size_t i = 0; i < c_.db.size(); ++i)
      if (c_.db[i].name == name) return i;
    throw std::logic_error("unknown node " + name);
  }
  SqlSession& session(const std::string& name) { return *action_sessions_[index_of(name)]; }
  const NodeView& view(const std::string& name) const { return nodes_[index_of(name)]; }

  // A single writable node other than the primary this manager follows, whose agent holds
  // the lease (a majority vouched for it: the word of a manager before a restart, or of
  // one whose record of the primary was lost): the primary, adopted. Without the lease it
  // is not (the decider counts it as no primary; its agent kills it).
  void adopt_the_lease_holder() {
    const NodeView* w = nullptr;
    for (const auto& n : nodes_) {
      if (!n.reachable || !n.writable) continue;
      if (w != nullptr) return;  // several: not this case
      w = &n;
    }
    if (w == nullptr || w->name == decider_.primary() || !deposed_.empty()) return;
    const auto st = agent_state(w->name);
    if (!st || !st->contains("holder") || !st->at("holder").is_bool() ||
        !st->at("holder").as_bool()) {
      return;
    }
    say("{} is writable and its agent holds the lease: it is the primary (was {})", w->name,
        decider_.primary());
    decider_.promoted(w->name);
    record_primary();
    publish();
  }

  // `webstack db promote` (a planned promotion, by hand) asks the manager to name its node
  // the primary once it has detached it from replication: the old primary is deposed and
  // its lease waited out as in an automatic promotion; the command then waits for the new
  // primary's agent to hold the lease and makes the node writable.
  void designate_if_asked() {
    std::string next;
    {
      std::lock_guard lock(published_mutex_);
      next.swap(designate_request_);
    }
    if (next.empty()) return;
    if (next == decider_.primary()) {
      deposed_.clear();  // named again: vouched for again
      publish();
      return;
    }
    const std::string old = decider_.primary();
    say("designate {} (asked by `webstack db promote`; primary was {})", next, old);
    try {
      // Detached first (the command did it): a node still replicating is no primary.
      const NodeView v = probe_node(*sessions_[index_of(next)], c_.db[index_of(next)]);
      if (!v.reachable) throw std::runtime_error(next + " does not answer: " + v.error);
      if (!v.master_host.empty()) {
        throw std::runtime_error(next + " still replicates from " + v.master_host);
      }
      if (!old.empty()) depose(old);
    } catch (const std::exception& e) {
      deposed_.clear();
      publish();
      say("designate {} failed: {}", next, e.what());
      ++failures_;
      return;
    }
    deposed_.clear();
    decider_.promoted(next);
    // The command promotes a node that holds what the old primary committed without
    // semi-sync, or was forced to (the loss accepted and printed): the memory of those
    // writes is over either way.
    if (const auto gtid = decider_.async_gtid()) {
      say("designate {}: asynchronous commits up to GTID {} no longer held against a promotion",
          next, *gtid);
      decider_.set_async_gtid(std::nullopt);
      record_async_gtid();
    }
    record_primary();
    publish();
    last_action_ = "designate " + next;
    say("designate {}: it is the primary the voters vouch for", next);
  }

  // Several writable nodes: only the lease holder is reachable (the others' gates are
  // closed, their agents kill them). SET GLOBAL read_only would not do: commits waiting for
  // a replica's acknowledgement would finish asynchronously, and be acknowledged.
  void fence(const std::string& name) {
    say("fence {}: left to its agent (a writable node without the lease is cut off and killed)",
        name);
  }

  // The agent of `name` as it answers on its port (std::nullopt: it does not).
  std::optional<json::object> agent_state(const std::string& name) const {
    const auto& n = c_.db[index_of(name)];
    std::string error;
    const auto body = http_get(n.address, c_.agent_port, "/", c_.timeout, error);
    if (!body) return std::nullopt;
    try {
      return json::parse(*body).as_object();
    } catch (const std::exception&) {
      return std::nullopt;
    }
  }

  // Makes `name` writable once its agent holds the lease with time to spare, and its gate
  // works (nftables answered): only then is the node reachable for exactly its lease.
  void make_writable(const std::string& name) {
    const auto deadline = Clock::now() + c_.lease * 3;
    for (;;) {
      const auto st = agent_state(name);
      const auto flag = [&](const char* k) {
        return st && st->contains(k) && st->at(k).is_bool() && st->at(k).as_bool();
      };
      const auto left = st && st->contains("lease_ms") && st->at("lease_ms").is_int64()
                            ? std::chrono::milliseconds(st->at("lease_ms").as_int64())
                            : std::chrono::milliseconds(0);
      if (flag("holder") && flag("gate_ok") && left >= c_.lease / 2) break;
      if (Clock::now() > deadline) {
        throw std::runtime_error(fmt::format(
            "the agent of {} did not hold the lease with a working gate within {} ms ({})", name,
            (c_.lease * 3).count(), st ? json::serialize(*st) : std::string("no answer")));
      }
      std::this_thread::sleep_for(20ms);  // poll interval
    }
    // On the short-timeout session: a SET that arrives late would find the lease gone.
    // MariaDB's semi-sync timeout first: a day on the lease holder (failover/lease.hpp).
    sessions_[index_of(name)]->query(
        fmt::format("SET GLOBAL rpl_semi_sync_master_timeout = {}; SET GLOBAL read_only = OFF",
                    kHolderSemiSyncTimeoutMs));
  }

  // Deposes `old`: no voter vouches for it from now on. Returns once no majority is left
  // to vouch for it and a whole lease has passed since: it holds no lease, and its gate is
  // closed by the kernel whatever state its host is in.
  void depose(const std::string& old) {
    const auto t0 = Clock::now();
    deposed_ = old;
    publish();  // the manager's own vote ends now
    const std::size_t voters = c_.db.size() + 1;
    const auto deadline = t0 + c_.lease * 4 + c_.timeout * 4;
    for (;;) {
      std::size_t silent = 1;  // the manager
      std::string who = "the manager";
      for (const auto& n : c_.db) {
        if (n.name == old) continue;
        const auto st = agent_state(n.name);
        if (st && st->contains("deposed") && st->contains("primary") &&
            (st->at("deposed").as_string() == old || st->at("primary").as_string() != old)) {
          ++silent;
          who += ", " + n.name;
        }
      }
      if (lease_unreachable(silent, voters)) {
        say("  depose {}: no longer vouched for by {} ({:.0f} ms); waiting out its lease ({} ms)",
            old, who, ms_between(t0, Clock::now()), (c_.lease + c_.interval).count());
        break;
      }
      if (Clock::now() > deadline) {
        throw std::runtime_error(fmt::format(
            "depose {}: only {} stopped vouching for it within {} ms (a majority of {} still "
            "may): not promoting",
            old, who, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - t0).count(),
            voters));
      }
      std::this_thread::sleep_for(20ms);  // poll interval
    }
    // A vouch given just before is good for one lease from the holder's question; one
    // interval more for clocks that run at slightly different rates.
    const auto until = Clock::now() + c_.lease + c_.interval;
    while (g_stop == 0 && Clock::now() < until) std::this_thread::sleep_for(10ms);
    if (g_stop != 0) throw std::runtime_error("stopping");
  }

  void restore(const std::string& name) {
    deposed_.clear();
    decider_.promoted(name);
    record_primary();
    publish();
    make_writable(name);
    say("restore {}: writable again, still the primary", name);
  }

  // The promotion, step by step: the old primary deposed and its lease waited out; the
  // candidate caught up and detached; named the primary (recorded first: a restarted
  // manager follows it); writable once its agent holds the lease. A failure before the
  // naming leaves every node read-only (the next rounds decide again).
  void promote(const std::string& next, const std::string& old) {
    const auto t0 = Clock::now();
    say("promote {} (primary was {}): begin", next, old);
    if (!old.empty()) depose(old);
    SqlSession& s = session(next);
    // Whatever it received is applied first, even where someone stopped its SQL thread.
    if (!view(next).sql_running && !view(next).master_host.empty()) {
      s.query("START SLAVE SQL_THREAD");
      say("  {}: its SQL thread was stopped: started, to apply its relay log", next);
    }
    const auto deadline = Clock::now() + 10s;
    for (;;) {
      NodeView v = probe_node(s, c_.db[index_of(next)]);
      if (!v.reachable) throw std::runtime_error(next + " stopped answering: " + v.error);
      if (v.relay_applied || v.master_host.empty()) {
        say("  {} applied what it received: GTID {} ({:.0f} ms)", next, v.gtid_current_pos,
            ms_between(t0, Clock::now()));
        break;
      }
      if (Clock::now() > deadline) {
        throw std::runtime_error(fmt::format("{} did not apply its relay log within 10 s (has {})",
                                             next, v.gtid_current_pos));
      }
      std::this_thread::sleep_for(20ms);  // poll interval
    }
    s.query("STOP SLAVE");
    s.query("RESET SLAVE ALL");
    deposed_.clear();
    decider_.promoted(next);
    record_primary();
    publish();
    make_writable(next);
    say("promote {}: done, it is writable ({:.0f} ms); the apps find it by themselves", next,
        ms_between(t0, Clock::now()));
  }

  void rejoin(const std::string& name) {
    const auto& p = c_.db[index_of(decider_.primary())];
    const std::string tls =
        c_.ssl_ca.empty()
            ? std::string()
            : fmt::format(", MASTER_SSL=1, MASTER_SSL_CA='{}', MASTER_SSL_VERIFY_SERVER_CERT=1",
                          c_.ssl_ca);
    // Read-only, its own waiting commits released, replicating from the primary.
    session(name).query("SET GLOBAL read_only = ON");
    session(name).query(release_semi_sync_sql(kShortSemiSyncTimeoutMs, false));
    session(name).query(fmt::format(
        "STOP SLAVE; CHANGE MASTER TO MASTER_HOST='{}', MASTER_PORT={}, MASTER_USER='repl', "
        "MASTER_PASSWORD='{}', MASTER_USE_GTID=current_pos, MASTER_CONNECT_RETRY=1{}; "
        "START SLAVE",
        p.address, p.port, repl_password_, tls));
    // A node holding a transaction the primary never had (its binlog diverged) is refused
    // by the primary (error 1236), which can come after the IO thread first said Yes: a
    // rejoin counts once the node has caught up with the primary's position of now.
    const std::string target = session(p.name).scalar("SELECT @@GLOBAL.gtid_binlog_pos");
    const auto check_until = Clock::now() + 5s;
    for (;;) {
      const auto rows = session(name).query("SHOW SLAVE STATUS");
      const Row& r = rows.empty() ? Row{} : rows.front();
      const auto get = [&](const char* k) {
        const auto it = r.find(k);
        return it == r.end() ? std::string() : it->second;
      };
      if (get("Last_IO_Errno") == "1236") {
        diverged_at_[name] = {view(name).gtid_binlog_pos, p.name};
        session(name).query("STOP SLAVE");
        throw std::runtime_error(fmt::format(
            "{} diverged from {}: {}; it stays read-only and not replicating until it is "
            "rebuilt (`webstack db rebuild {}` saves its extra transactions and replaces its "
            "data with the primary's)",
            name, p.name, get("Last_IO_Error"), name));
      }
      if (get("Slave_IO_Running") == "Yes" && get("Slave_SQL_Running") == "Yes" &&
          gtid_covers(session(name).scalar("SELECT @@GLOBAL.gtid_current_pos"), target)) {
        break;
      }
      if (Clock::now() > check_until) {
        throw std::runtime_error(
            fmt::format("{} did not catch up with {} ({}) within 5 s: IO {}, SQL {}, last error {}",
                        name, p.name, target, get("Slave_IO_Running"), get("Slave_SQL_Running"),
                        get("Last_IO_Error") + get("Last_SQL_Error")));
      }
      std::this_thread::sleep_for(50ms);  // poll interval
    }
    // A primary that was a replica reports semi-sync OFF (its own replicated commits had no
    // replica to wait for) until a replica acknowledges a commit made after it caught up:
    // the next commit would go unprotected. Switched off and on, it is ON at once; never
    // with a replica connected (failover/semi_sync_sql.hpp), and this account cannot end
    // another's dump thread: the caught-up replica's IO thread stops for that moment.
    SqlSession& primary = session(p.name);
    const auto status = [&] {
      return primary.scalar("SELECT " + global_status("RPL_SEMI_SYNC_MASTER_STATUS"));
    };
    if (primary.scalar("SELECT @@GLOBAL.rpl_semi_sync_master_enabled") == "1" &&
        status() == "OFF") {
      session(name).query("STOP SLAVE IO_THREAD");
      // Restarted whatever happens: a replica left with its IO thread stopped would never
      // be rejoined again (the decider leaves a stopped replica of the primary alone).
      std::exception_ptr failed;
      try {
        primary.query(release_semi_sync_sql(std::nullopt, false));
      } catch (const std::exception&) {
        failed = std::current_exception();
      }
      session(name).query("START SLAVE IO_THREAD");
      if (failed) std::rethrow_exception(failed);
    }
    say("rejoin {}: replicates from {} with GTID; semi-sync on {}: {}", name, p.name, p.name,
        text::trim(status()));
  }

  // A node the primary refused as diverged stays so while its binlog and the primary are
  // the same and it does not replicate (a rebuild empties its binlog; a person may repair
  // it otherwise), even where its GTID position looks in order. The rebuild's node is
  // marked while its data is still the old one, and nodes that cannot be rebuilt now.
  void mark_diverged() {
    for (auto& n : nodes_) {
      if (rebuild_pid_ > 0 && n.name == rebuild_host_ && !n.reachable) rebuild_seen_down_ = true;
      if (!n.reachable) continue;
      if (const auto it = diverged_at_.find(n.name); it != diverged_at_.end()) {
        if (n.gtid_binlog_pos != it->second.binlog || decider_.primary() != it->second.primary ||
            (n.io_running && n.sql_running)) {
          diverged_at_.erase(it);
        } else {
          n.diverged = true;
        }
      }
      // Its old data until the rebuild stopped it, or its binlog changed.
      n.rebuilding = rebuild_pid_ > 0 && n.name == rebuild_host_ && !rebuild_seen_down_ &&
                     n.gtid_binlog_pos == rebuild_binlog_;
      const auto retry = rebuild_retry_.find(n.name);
      n.rebuild_wait =
          rebuild_pid_ > 0 || (retry != rebuild_retry_.end() && Clock::now() < retry->second.at);
      // A rebuild this manager did not start (by hand, or before a restart) holds the
      // node's lock: no rebuild of it, and no promotion.
      if (rebuild_pid_ <= 0 && lock_held(n.name)) n.rebuild_wait = n.rebuild_locked = true;
    }
  }

  // The rebuild command's lock on `host` (`rebuild_lock`, an OFD lock) is held by someone:
  // tested without taking it (a rebuild starting now must not find it taken by us).
  bool lock_held(const std::string& host) const {
    if (c_.rebuild_lock.empty()) return false;
    std::string path = c_.rebuild_lock;
    if (const auto at = path.find("{host}"); at != std::string::npos) path.replace(at, 6, host);
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    struct flock probe {};
    probe.l_type = F_WRLCK;
    probe.l_whence = SEEK_SET;
    const bool held = ::fcntl(fd, F_OFD_GETLK, &probe) == 0 && probe.l_type != F_UNLCK;
    ::close(fd);
    return held;
  }

  // A rebuild killed part way (by a signal: the command itself starts the node again on
  // any error) can leave the node's MariaDB stopped, where the rules see nothing to
  // rebuild: tried again from here, while the site has its primary and failover is not
  // paused. A node that answers is the rules' again.
  void retry_unreachable_rebuild(Clock::time_point now) {
    if (rebuild_pid_ > 0 || decider_.down_since() || paused_) return;
    for (auto it = rebuild_retry_.begin(); it != rebuild_retry_.end();) {
      const NodeView* v = nullptr;
      for (const auto& n : nodes_)
        if (n.name == it->first) v = &n;
      if (v == nullptr || it->first == decider_.primary()) {
        it = rebuild_retry_.erase(it);
        continue;
      }
      if (!v->reachable && it->second.left_down && now >= it->second.at) {
        const std::string host = it->first;
        say("rebuild {}: it does not answer since its last rebuild failed: trying again", host);
        try {
          start_rebuild(host);
        } catch (const std::exception& e) {
          say("rebuild {} failed: {}", host, e.what());
        }
        return;
      }
      ++it;
    }
  }

  // The rebuild command runs in the background (minutes, for a large database) with this
  // log as its output, in a session of its own (stopping or killing the manager's service
  // leaves it running; a restarted manager sees the command's lock held, and waits) and
  // with no descriptor of ours but its output. Rounds go on meanwhile:
  // its last step waits for this manager to rejoin the node.
  void start_rebuild(const std::string& host) {
    if (rebuild_pid_ > 0) return;  // one at a time
    std::vector<std::string> args;
    args.reserve(c_.rebuild_command.size());
    for (std::string a : c_.rebuild_command) {
      for (auto at = a.find("{host}"); at != std::string::npos; at = a.find("{host}", at)) {
        a.replace(at, 6, host);
        at += host.size();
      }
      args.push_back(std::move(a));
    }
    std::vector<char*> argv;
    argv.reserve(args.size() + 1);
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    // The MariaDB client library's sockets are not close-on-exec.
    posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    // SIGPIPE back to its default: the command's pipelines count on it (this one ignores it).
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t defaults;
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSID);
    pid_t pid = -1;
    const int rc = ::posix_spawnp(&pid, argv[0], &fa, &attr, argv.data(), environ);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
      failed_rebuild(host, false);
      throw std::runtime_error(fmt::format("cannot start {}: {}", args.front(), std::strerror(rc)));
    }
    rebuild_pid_ = pid;
    rebuild_host_ = host;
    rebuild_seen_down_ = true;  // until it is seen answering, on its old data
    for (const auto& n : nodes_) {
      if (n.name == host && n.reachable) {
        rebuild_binlog_ = n.gtid_binlog_pos;
        rebuild_seen_down_ = false;
      }
    }
    rebuild_started_ = Clock::now();
    say("rebuild {}: started `{}` (pid {})", host, describe(args), pid);
  }

  void reap_rebuild() {
    if (rebuild_pid_ <= 0) return;
    int status = 0;
    const pid_t r = ::waitpid(rebuild_pid_, &status, WNOHANG);
    const int wait_errno = errno;
    if (r == 0) return;  // still running
    const double secs = std::chrono::duration<double>(Clock::now() - rebuild_started_).count();
    const bool ok = r == rebuild_pid_ && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (ok) {
      ++rebuilds_;
      diverged_at_.erase(rebuild_host_);
      rebuild_retry_.erase(rebuild_host_);
      say("rebuild {}: done ({:.1f} s)", rebuild_host_, secs);
    } else {
      const auto delay = failed_rebuild(rebuild_host_, r != rebuild_pid_ || WIFSIGNALED(status));
      say("rebuild {}: failed ({}, after {:.1f} s): tried again in {} s", rebuild_host_,
          r != rebuild_pid_     ? std::string("lost: ") + std::strerror(wait_errno)
          : WIFEXITED(status)   ? fmt::format("exit {}", WEXITSTATUS(status))
          : WIFSIGNALED(status) ? fmt::format("signal {}", WTERMSIG(status))
                                : std::string("ended"),
          secs, delay.count());
    }
    rebuild_pid_ = -1;
  }

  // A failed rebuild of `host`: tried again after 30 s, doubling up to 10 minutes while it
  // keeps failing. `left_down`: it ended by a signal, and may have left the node stopped.
  std::chrono::seconds failed_rebuild(const std::string& host, bool left_down) {
    ++rebuild_failures_;
    auto& r = rebuild_retry_[host];
    r.delay = r.delay.count() == 0 ? kRebuildRetry : std::min(r.delay * 2, kRebuildRetryMax);
    r.at = Clock::now() + r.delay;
    r.left_down = left_down;
    return r.delay;
  }

  // Nodes diverged: the rules' (reachable ones), the one being rebuilt, and those whose
  // rebuild failed while they do not answer. The site has no replica in them either way.
  std::vector<std::string> diverged_nodes() const {
    auto out = decider_.diverged();
    if (rebuild_pid_ > 0 && std::find(out.begin(), out.end(), rebuild_host_) == out.end()) {
      out.push_back(rebuild_host_);
    }
    for (const auto& [host, retry] : rebuild_retry_) {
      for (const auto& n : nodes_) {
        if (n.name == host && !n.reachable && retry.left_down &&
            std::find(out.begin(), out.end(), host) == out.end()) {
          out.push_back(host);
        }
      }
    }
    return out;
  }

  // How many files the rebuilds saved discarded transactions in (the operator reads them,
  // then moves them away): the ErrantTransactionsSaved alert.
  std::size_t errant_files() const {
    if (c_.errant_dir.empty()) return 0;
    std::error_code ec;
    std::size_t n = 0;
    for (std::filesystem::directory_iterator it(c_.errant_dir, ec), end; !ec && it != end;
         it.increment(ec)) {
      if (it->path().extension() == ".sql") ++n;
    }
    return n;
  }

  void record_primary() {
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
  Reply answer(const std::string& request, const std::string& peer) const {
    const Published p = published();
    if (request.starts_with("GET /vouch")) {
      const ManagerWord word{true, p.primary, p.deposed};
      return {"application/json", json::serialize(json::object{
                                      {"vouch", vouches_for(word, query_value(request, "for"))},
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

  // What the state port shows, as of the last round.
  struct Published {
    std::string primary;
    std::string deposed;  // a primary being replaced: no vote for it
    std::string refused;  // why the last round refused to promote
    std::optional<Clock::time_point> down_since;
    bool paused = false;
    std::string last_action, last_reason;
    unsigned long promotions = 0, fences = 0, rejoins = 0, restores = 0, failures = 0;
    std::vector<std::string> diverged;  // nodes holding what the primary lacks
    std::string rebuilding;             // the node a rebuild runs for ("": none)
    unsigned long rebuilds = 0, rebuild_failures = 0;
    std::size_t errant_files = 0;
  };
  void publish() {
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
  Published published() const {
    std::lock_guard lock(published_mutex_);
    return published_;
  }

  std::string state_json(const Published& p) const {
    const auto since = p.down_since;
    return json::serialize(json::object{
               {"primary", p.primary},
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
  std::string metrics_text(const Published& p) const {
    const auto since = p.down_since;
    std::string out;
    const auto metric = [&](const char* name, const char* type, const char* help,
                            const std::string& value) {
      out += fmt::format("# HELP {0} {1}\n# TYPE {0} {2}\n{0} {3}\n", name, help, type, value);
    };
    metric("webstack_failover_writable_primary", "gauge",
           "1 when exactly one database node is writable, as the manager sees it",
           since ? "0" : "1");
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

  const ManagerConfig& c_;
  Decider decider_;
  std::string repl_password_;
  std::vector<std::unique_ptr<SqlSession>> sessions_, action_sessions_;
  std::vector<NodeView> nodes_;
  std::string last_reason_, last_action_;
  bool paused_ = false;
  unsigned long promotions_ = 0, fences_ = 0, rejoins_ = 0, restores_ = 0, failures_ = 0;
  Clock::time_point quiet_until_{};
  // Nodes the primary refused as diverged: their binlog position then, and that primary.
  struct Refusal {
    std::string binlog, primary;
  };
  std::map<std::string, Refusal> diverged_at_;
  static constexpr auto kRebuildRetry = std::chrono::seconds(30);
  static constexpr auto kRebuildRetryMax = std::chrono::seconds(600);
  pid_t rebuild_pid_ = -1;                     // the running rebuild command
  std::string rebuild_host_, rebuild_binlog_;  // its node, and that node's binlog then
  bool rebuild_seen_down_ = false;             // its node stopped since (or at) its start
  Clock::time_point rebuild_started_{};
  unsigned long rebuilds_ = 0, rebuild_failures_ = 0;
  // Nodes whose last rebuild failed: no rebuild of them before `at`.
  struct Retry {
    Clock::time_point at{};
    std::chrono::seconds delay{0};
    bool left_down = false;
  };
  std::map<std::string, Retry> rebuild_retry_;
  std::string deposed_;  // set by depose(), cleared once another node is named
  mutable std::mutex published_mutex_;
  mutable std::string designate_request_;  // guarded by published_mutex_: GET /designate
  Published published_;  // guarded by published_mutex_: the server thread reads it
};

}  // namespace

int run_manager(const ManagerConfig& c) {
  install_signal_handlers();
  if (mysql_library_init(0, nullptr, nullptr) != 0) throw std::runtime_error("mysql_library_init");
  Manager m(c);
  const int rc = m.run();
  mysql_library_end();
  return rc;
}

}  // namespace webstack::failover
