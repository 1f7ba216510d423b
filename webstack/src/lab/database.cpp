#include "lab/database.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <stdexcept>
#include <thread>

#include <boost/json.hpp>

#include "common/process.hpp"
#include "common/steps.hpp"
#include "common/text.hpp"
#include "failover/lease.hpp"
#include "failover/semi_sync_sql.hpp"
#include "failover/sql_session.hpp"
#include "lab/control.hpp"
#include "lab/database_internal.hpp"
#include "lab/network.hpp"
#include "lab/paths.hpp"
#include "lab/site.hpp"
#include "lab/status.hpp"
#include "lab/tls.hpp"
#include "render/render.hpp"
#include "tools/mariadb.hpp"

namespace webstack::lab {

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
using topo::DbRole;
using topo::Role;
namespace fs = std::filesystem;

using detail::sql;
using detail::sql_checked;
using detail::sql_secret;

tools::MariaDbRoot root_of(const std::string& state_dir, const std::string& host) {
  return tools::MariaDbRoot(StatePaths(state_dir).mysqld_socket(host));
}

// A node made a replica under automatic failover: the short semi-sync timeout back (the
// lease holder's is a day), and any commit of its own still waiting released
// (docs/high-availability.md, "Lossless replication"), the safe way
// (failover/semi_sync_sql.hpp).
std::string demoted_semi_sync_sql() {
  return failover::for_mariadb_client(
      failover::release_semi_sync_sql(failover::kShortSemiSyncTimeoutMs, false));
}

}  // namespace

tools::SqlResult detail::sql(const std::string& state_dir, const std::string& host,
                             const std::string& statement, std::chrono::milliseconds timeout,
                             bool named) {
  return root_of(state_dir, host).query(statement, timeout, named);
}

std::string detail::sql_checked(const std::string& state_dir, const std::string& host,
                                const std::string& statement, std::chrono::milliseconds timeout,
                                bool named) {
  return root_of(state_dir, host).query_checked(host, statement, timeout, named);
}

// SQL holding a secret (the replication password): on stdin, never on a command line.
void detail::sql_secret(const std::string& state_dir, const std::string& host,
                        const std::string& statement) {
  tools::SqlResult r;
  // ERROR 1198 "running slave": someone (the failover manager, rejoining the same node to
  // the same primary) started replication between our STOP SLAVE and CHANGE MASTER; the
  // script stops replication before it points it, so running it again settles it.
  for (int attempt = 0; attempt < 3; ++attempt) {
    r = root_of(state_dir, host).script(statement, 30s);
    if (r.ok || r.err.find("ERROR 1198") == std::string::npos) break;
  }
  if (!r.ok) {
    throw std::runtime_error(
        fmt::format("{}: CHANGE MASTER failed: {}", host, tools::mariadb_errors(r.err)));
  }
}

namespace {

// One promotion of `next` in place of `old`: what its steps share, in the order `promote`
// runs them.
struct Promotion {
  Promotion(const topo::Topology& given, const SiteOptions& options, const topo::Topology& current,
            const topo::Host& old_primary, const topo::Host& next_primary, std::FILE* to);

  void step(const std::string& what, const std::function<std::string()>& f) {
    printer.note(what, f);
  }

  void fence_old();
  void apply_received();
  std::string wait_for_old_position() const;
  std::string apply_relay_log() const;
  void check_unacknowledged(bool force) const;
  void make_writable_under_lease();
  std::string designate() const;
  std::string take_lease() const;
  void make_writable();
  void demote_old();
  void semi_sync_then_replicate();
  void rerender();

  const topo::Topology& topology;  // as given: the configs are rendered from it
  const SiteOptions& o;
  const std::string& state_dir;
  const topo::Topology& t;  // with the primary as it is now
  const topo::Host& old;
  const topo::Host& next;
  std::FILE* out;
  StepPrinter printer;
  const std::optional<render::Profile> profile;
  const bool leased;
  bool old_answers = false;
  std::string old_pos;
};

Promotion::Promotion(const topo::Topology& given, const SiteOptions& options,
                     const topo::Topology& current, const topo::Host& old_primary,
                     const topo::Host& next_primary, std::FILE* to)
    : topology(given),
      o(options),
      state_dir(options.state_dir),
      t(current),
      old(old_primary),
      next(next_primary),
      out(to),
      printer(to),
      profile(recorded_profile(state_dir)),
      leased(t.automatic_failover() && profile && *profile == render::Profile::Hardened) {}

void Promotion::fence_old() {
  step("fence " + old.name + ": read_only (in-flight writes finish)", [&] {
    const auto r = sql(state_dir, old.name,
                       "SET GLOBAL read_only = ON; "
                       "SELECT @@GLOBAL.gtid_binlog_pos",
                       20s);
    if (!r.ok)
      return std::string("does not answer (") + r.err.substr(0, 60) + "): nothing to fence";
    old_answers = true;
    old_pos = r.out;
    return "its last GTID " + (old_pos.empty() ? std::string("(none)") : old_pos);
  });
}

void Promotion::apply_received() {
  step(next.name + " applies everything it has received", [&] {
    if (old_answers) return wait_for_old_position();
    return apply_relay_log();
  });
}

std::string Promotion::wait_for_old_position() const {
  // Everything the old primary committed: semi-sync's AFTER_SYNC means an
  // acknowledged commit is in the replica's relay log already. Compared per GTID
  // domain by sequence number (monotonic in gtid_strict_mode), against the replica's
  // gtid_current_pos: it holds the old primary's own earlier events too, which
  // MASTER_GTID_WAIT (gtid_slave_pos only) would wait for in vain.
  const auto deadline = Clock::now() + 30s;
  for (;;) {
    const auto have = sql_checked(state_dir, next.name, "SELECT @@GLOBAL.gtid_current_pos");
    if (gtid_covers(have, old_pos)) return "reached " + old_pos;
    if (Clock::now() > deadline) {
      throw std::runtime_error(
          fmt::format("{} did not reach the old primary's GTID {} within 30 s (it has {})",
                      next.name, old_pos, have));
    }
    std::this_thread::sleep_for(50ms);  // poll interval
  }
}

// The old primary is gone: apply what the relay log holds.
std::string Promotion::apply_relay_log() const {
  const auto deadline = Clock::now() + 30s;
  for (;;) {
    const auto st = sql_checked(state_dir, next.name, "SHOW SLAVE STATUS\\G", 30s, true);
    const auto field = [&](const std::string& name) {
      const auto at = st.find(name + ": ");
      if (at == std::string::npos) return std::string();
      const auto end = st.find('\n', at);
      return text::trim(st.substr(at + name.size() + 2, end - at - name.size() - 2));
    };
    const auto applied = sql_checked(state_dir, next.name, "SELECT @@GLOBAL.gtid_slave_pos");
    if (field("Gtid_IO_Pos") == applied ||
        field("Slave_SQL_Running_State").find("read all relay log") != std::string::npos) {
      return "applied " + applied;
    }
    if (Clock::now() > deadline) {
      throw std::runtime_error(next.name + " did not apply its relay log within 30 s");
    }
    std::this_thread::sleep_for(100ms);  // poll interval
  }
}

// The failover manager's memory (<state>/async-gtid): the old primary committed without a
// replica's acknowledgement up to that GTID. With the old primary gone, a candidate that
// lacks it would lose acknowledged writes: refused, unless forced (then said).
void Promotion::check_unacknowledged(bool force) const {
  const std::string async =
      leased ? text::trim(read_text_or_empty(StatePaths(state_dir).async_gtid())) : std::string();
  if (old_answers || async.empty()) return;
  const std::string have = sql_checked(state_dir, next.name, "SELECT @@GLOBAL.gtid_current_pos");
  if (gtid_covers(have, async)) return;
  const std::string what = fmt::format(
      "{} committed without a replica's acknowledgement up to GTID {}, and {} has {}: "
      "the acknowledged writes after that are lost if {} is promoted",
      old.name, async, next.name, have.empty() ? "nothing" : have, next.name);
  if (!force) {
    throw std::runtime_error(
        fmt::format("{}. Bring {} back (the failover manager then catches the replica up), or "
                    "`webstack db promote --force {}` to promote it anyway",
                    what, old.name, next.name));
  }
  std::fprintf(out, "  forced: %s\n", what.c_str());
}

// Only the lease holder may be writable (docs/high-availability.md): the manager
// names the new primary (deposing the old one and waiting out its lease), the voters
// vouch for it, and once its agent holds the lease it is made writable.
void Promotion::make_writable_under_lease() {
  step(next.name + ": stop replicating", [&] {
    sql_checked(state_dir, next.name, "STOP SLAVE; RESET SLAVE ALL");
    return std::string();
  });
  step("the failover manager names " + next.name + " the primary (" + old.name +
           "'s lease waited out)",
       [&] { return designate(); });
  step(next.name + ": its agent holds the lease; writable", [&] { return take_lease(); });
}

std::string Promotion::designate() const {
  const auto* mon = t.monitor();
  const auto url = [&](const std::string& address, int port, const std::string& path) {
    return fmt::format("http://{}:{}{}", address, port, path);
  };
  run_checked(in_host(t, mon->name,
                      {"curl", "-sS", "--fail", "--max-time", "5",
                       url(mon->address, 9096, "/designate?node=" + next.name)}),
              10s);
  const auto deadline = Clock::now() + 30s;
  while (failover_state(t).find("\"primary\":\"" + next.name + "\"") == std::string::npos) {
    if (Clock::now() > deadline) {
      throw std::runtime_error("the failover manager did not name " + next.name +
                               " the primary within 30 s: " + failover_state(t));
    }
    std::this_thread::sleep_for(50ms);  // poll interval
  }
  return std::string();
}

std::string Promotion::take_lease() const {
  // The lease with at least half of it left, and a gate nftables accepted: the SET
  // below lands well within the lease (a late one would find the node killed).
  const auto* mon = t.monitor();
  const auto deadline = Clock::now() + 30s;
  std::string last;
  for (;;) {
    const auto r = run(
        in_host(t, mon->name,
                {"curl", "-sS", "--max-time", "2", fmt::format("http://{}:9097/", next.address)}),
        10s);
    last = text::trim(r.out + r.err);
    try {
      const auto st = boost::json::parse(r.out).as_object();
      if (r.exit_code == 0 && st.at("holder").as_bool() && st.at("gate_ok").as_bool() &&
          st.at("lease_ms").to_number<std::int64_t>() >= 500) {
        break;
      }
    } catch (const std::exception&) {
      // Not the agent's answer (yet): asked again below.
    }
    if (Clock::now() > deadline) {
      throw std::runtime_error("the agent of " + next.name +
                               " did not take the lease within 30 s: " + last);
    }
    std::this_thread::sleep_for(50ms);  // poll interval
  }
  sql_checked(state_dir, next.name,
              fmt::format("SET GLOBAL rpl_semi_sync_master_timeout = {}; "
                          "SET GLOBAL read_only = OFF",
                          failover::kHolderSemiSyncTimeoutMs),
              5s);
  return std::string();
}

void Promotion::make_writable() {
  step(next.name + ": stop replicating, writable", [&] {
    sql_checked(state_dir, next.name, "STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = OFF");
    return std::string();
  });
}

void Promotion::demote_old() {
  step(old.name + ": replica of " + next.name, [&] {
    if (!old_answers) return std::string("later: `webstack db rejoin " + old.name + "`");
    const std::string ca =
        profile && *profile == render::Profile::Seed ? std::string() : lab_ca_path(state_dir);
    const std::string password =
        text::trim(read_text_or_empty(StatePaths(state_dir).repl_password()));
    // Pointed at the new primary, started only once semi-sync there is on (below).
    sql_secret(state_dir, old.name,
               (leased ? demoted_semi_sync_sql() : std::string()) + "STOP SLAVE; " +
                   tools::change_master_sql(next.address, t.db_port, password, ca, "current_pos") +
                   ";\n");
    return std::string();
  });
}

void Promotion::semi_sync_then_replicate() {
  step("semi-sync on " + next.name + ", then " + old.name + " replicating", [&] {
    if (!old_answers) return std::string("no replica yet: asynchronous until one acknowledges");
    const bool enabled =
        sql_checked(state_dir, next.name, "SELECT @@GLOBAL.rpl_semi_sync_master_enabled") == "1";
    // A node that was a replica reports its master side OFF (its replicated commits had
    // no replica to wait for) until a replica acknowledges a later commit: the next one
    // would go unprotected, and SemiSyncFallenBack would fire for nothing. Switched off
    // and on before its replica connects (never with one connected), it is ON at once.
    if (enabled &&
        sql_checked(state_dir, next.name,
                    "SELECT " + failover::global_status("RPL_SEMI_SYNC_MASTER_STATUS")) == "OFF") {
      sql_checked(
          state_dir, next.name,
          failover::for_mariadb_client(failover::release_semi_sync_sql(std::nullopt, false)));
    }
    sql_checked(state_dir, old.name, "START SLAVE");
    if (!enabled) return std::string("disabled (asynchronous replication)");
    const auto deadline = Clock::now() + 10s;
    while (sql_checked(state_dir, next.name,
                       "SELECT " + failover::global_status("RPL_SEMI_SYNC_MASTER_CLIENTS")) ==
           "0") {
      if (Clock::now() > deadline) return std::string("no semi-sync replica connected within 10 s");
      std::this_thread::sleep_for(50ms);  // poll interval
    }
    return std::string("on, ") + old.name + " connected";
  });
}

void Promotion::rerender() {
  step("my.cnf of both nodes rendered for their new roles", [&] {
    rerender_database_configs(topology, o);
    return std::string();
  });
}

// The replica `promote` is asked for (the first one when `target` is empty), refused when
// it is not one.
const topo::Host& promotion_target(const topo::Topology& t, std::string_view target) {
  const auto replicas = t.replicas();
  if (replicas.empty()) throw std::runtime_error("the site has no replica to promote");
  const topo::Host* next = target.empty() ? replicas.front() : t.find(target);
  if (next == nullptr || !next->has(Role::Database)) {
    throw std::invalid_argument(fmt::format("\"{}\" is not a database host", target));
  }
  if (next->db != DbRole::Replica) {
    throw std::invalid_argument(fmt::format("{} is the primary already", next->name));
  }
  return *next;
}

}  // namespace

void promote(const topo::Topology& topology, const SiteOptions& o, std::string_view target,
             bool force, std::FILE* out) {
  const std::string& state_dir = o.state_dir;
  require_up(topology, state_dir);
  const topo::Topology t = with_current_primary(topology, state_dir);
  const topo::Host& old = t.primary();
  const topo::Host& next = promotion_target(t, target);
  const auto t0 = Clock::now();
  Promotion p(topology, o, t, old, next, out);
  if (p.leased) {
    // The manager names the new primary (below): without it nothing is changed.
    failover_state(t);  // throws "the failover manager on mon-01 does not answer: ..."
  }
  std::fprintf(out, "promoting %s (primary now: %s)\n", next.name.c_str(), old.name.c_str());

  p.fence_old();
  p.apply_received();
  p.check_unacknowledged(force);
  if (p.leased) {
    p.make_writable_under_lease();
  } else {
    p.make_writable();
  }
  { std::ofstream(StatePaths(state_dir).primary()) << next.name << "\n"; }
  p.demote_old();
  p.semi_sync_then_replicate();
  p.rerender();
  std::fprintf(out, "%s is the primary (%.1f s); the apps find it by themselves\n",
               next.name.c_str(), std::chrono::duration<double>(Clock::now() - t0).count());
}

void rejoin(const topo::Topology& topology, const std::string& state_dir, std::string_view host,
            std::FILE* out) {
  const topo::Topology t = with_current_primary(topology, state_dir);
  const topo::Host* h = t.find(host);
  if (h == nullptr || !h->has(Role::Database)) {
    throw std::invalid_argument(fmt::format("\"{}\" is not a database host", host));
  }
  if (h->db == DbRole::Primary) {
    throw std::invalid_argument(fmt::format("{} is the primary", host));
  }
  const auto profile = recorded_profile(state_dir);
  const std::string ca =
      profile && *profile == render::Profile::Seed ? std::string() : lab_ca_path(state_dir);
  const std::string password =
      text::trim(read_text_or_empty(StatePaths(state_dir).repl_password()));
  // A node just started (`webstack start HOST/mariadb`, then rejoin) answers once it has
  // recovered: wait for that rather than fail on its socket.
  const auto deadline = Clock::now() + 60s;
  for (tools::SqlResult r; !(r = sql(state_dir, h->name, "SELECT 1", 5s)).ok;) {
    if (Clock::now() > deadline) {
      throw std::runtime_error(
          fmt::format("{}: MariaDB does not answer within 60 s ({}): start "
                      "it first (webstack start {}/mariadb)",
                      h->name, r.err.substr(0, 120), h->name));
    }
    std::this_thread::sleep_for(200ms);  // poll interval
  }
  sql_secret(
      state_dir, h->name,
      "SET GLOBAL read_only = ON; " +
          (t.automatic_failover() && profile && *profile == render::Profile::Hardened
               ? demoted_semi_sync_sql()
               : std::string()) +
          "STOP SLAVE; " +
          tools::change_master_sql(t.primary().address, t.db_port, password, ca, "current_pos") +
          "; START SLAVE;\n");
  std::fprintf(out, "%s replicates from %s (read_only)\n", h->name.c_str(),
               t.primary().name.c_str());
}

void failover_control(const topo::Topology& t, const std::string& state_dir,
                      std::string_view action, std::FILE* out) {
  if (!t.automatic_failover()) {
    throw std::invalid_argument(
        "failover is manual in this topology ([db] failover, a monitor host and a replica "
        "make it automatic): `webstack db promote` is the way");
  }
  const std::string pause_file = StatePaths(state_dir).failover_paused();
  if (action == "pause") {
    std::ofstream(pause_file) << "paused by webstack failover pause\n";
    std::fprintf(out,
                 "failover paused: the manager promotes nothing until `webstack failover "
                 "resume` (a writable node without the lease is still cut off by its agent)\n");
  } else if (action == "resume") {
    std::error_code ec;
    std::filesystem::remove(pause_file, ec);
    std::fprintf(out, "failover resumed\n");
  } else if (action == "status") {
    std::fputs((failover_state(t) + "\n").c_str(), out);
  } else {
    throw std::invalid_argument(
        fmt::format("unknown failover action \"{}\" (known: pause, resume, status)", action));
  }
}

}  // namespace webstack::lab
