// The failover manager's actions on the primary: a writable lease holder adopted, a node
// designated by hand, the old primary deposed, a replica promoted, the old primary
// restored, a former primary rejoined as a replica.
#include <fmt/format.h>
#include <boost/json.hpp>

#include <chrono>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>

#include "common/text.hpp"
#include "failover/daemon.hpp"
#include "failover/lease.hpp"
#include "failover/manager_detail.hpp"
#include "failover/semi_sync_sql.hpp"

namespace webstack::failover::manager_detail {

using namespace std::chrono_literals;

// A single writable node other than the primary this manager follows, whose agent holds
// the lease (a majority vouched for it: the word of a manager before a restart, or of
// one whose record of the primary was lost): the primary, adopted. Without the lease it
// is not (the decider counts it as no primary; its agent kills it).
void Manager::adopt_the_lease_holder() {
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
void Manager::designate_if_asked() {
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
    say("designate {}: asynchronous commits up to GTID {} no longer held against a promotion", next,
        *gtid);
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
void Manager::fence(const std::string& name) {
  say("fence {}: left to its agent (a writable node without the lease is cut off and killed)",
      name);
}

// The agent of `name` as it answers on its port (std::nullopt: it does not).
std::optional<json::object> Manager::agent_state(const std::string& name) const {
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
void Manager::make_writable(const std::string& name) {
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
void Manager::depose(const std::string& old) {
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

void Manager::restore(const std::string& name) {
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
void Manager::promote(const std::string& next, const std::string& old) {
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

void Manager::rejoin(const std::string& name) {
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
  if (primary.scalar("SELECT @@GLOBAL.rpl_semi_sync_master_enabled") == "1" && status() == "OFF") {
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

}  // namespace webstack::failover::manager_detail
