// The primary's lease, as pure functions (no I/O; unit-tested in
// webstack/tests/failover_lease_test.cpp). The argument is in docs/high-availability.md,
// "Why two nodes are never writable at once":
//
// - The voters are the failover manager and every database host's fencing agent. A node
//   holds the lease while a strict majority of them (its own agent counts) vouched for it
//   within the last lease period, counted from when its agent *sent* the question.
// - A voter vouches for the manager's primary only, never for a deposed one. The manager
//   deposes a primary first, then waits until enough agents confirm they stopped vouching
//   that no majority is left, then waits out a whole lease (plus margin), and only then
//   promotes another node.
// - The agent enforces the lease below MariaDB: a kernel nftables set element, with the
//   lease's remaining time as its timeout, keeps the database port open. When the lease
//   lapses the kernel closes the port by itself, even if every process on the host is
//   frozen. A writable node without a lease is unreachable, and its agent SIGKILLs it once
//   the manager names another primary (or deposes it).
#pragma once

#include <chrono>
#include <optional>
#include <string>

namespace webstack::failover {

using LeaseClock = std::chrono::steady_clock;

// What an agent knows of the manager's decision (from its last answer; kept when the
// manager does not answer, so a dead manager does not take the site down).
struct ManagerWord {
  bool known = false;
  std::string primary;  // the node the manager follows
  std::string deposed;  // a primary being replaced ("" when none)
};

// Whether a voter vouches for `node` now.
bool vouches_for(const ManagerWord& w, const std::string& node);

// A holder's lease from one round of questions: sent at `sent`, `votes` vouches (its own
// included) out of `voters`. Returns the lease's new end (never earlier than `held_until`).
std::optional<LeaseClock::time_point> renewed_lease(
    std::optional<LeaseClock::time_point> held_until, LeaseClock::time_point sent,
    std::size_t votes, std::size_t voters, std::chrono::milliseconds lease);

// A strict majority of `voters`.
std::size_t majority(std::size_t voters);

// Whether a deposed node can hold a lease no more: `silent` voters (the manager and the
// agents that confirmed) no longer vouch for it, out of `voters`.
bool lease_unreachable(std::size_t silent, std::size_t voters);

// The local MariaDB as the agent saw it this round.
struct LocalView {
  bool answered = false;
  bool writable = false;
  LeaseClock::time_point asked{};  // when the question that got this answer was sent
};

// The database port's gate: open while read-only (a replica takes reads; for a few rounds,
// renewed every round, so a dead agent does not leave it open), open until the lease ends
// while this node holds it, closed otherwise.
enum class Gate { Closed, Open, UntilLeaseEnds };

struct AgentStep {
  Gate gate = Gate::Closed;
  std::chrono::milliseconds open_for{0};  // Gate::UntilLeaseEnds: the lease's remaining time
  bool kill = false;                      // SIGKILL the local mariadbd
  std::string reason;                     // for the log, when kill or the gate changes
};

// One round of the agent. `last_writable`: the last answer the local server gave said
// writable (a stalled primary answers nothing, and is still one). A node whose lease
// lapsed (held by this agent, then not renewed) while it may be writable is killed at
// once: commits waiting for an acknowledgement that cannot come must die before the
// semi-sync timeout turns them asynchronous (render_test checks the timings). A node this
// agent never held the lease for (the agent restarted) is killed once the manager names
// another primary or deposes it.
AgentStep agent_step(LeaseClock::time_point now, std::optional<LeaseClock::time_point> lease_until,
                     const LocalView& local, bool last_writable, const ManagerWord& word,
                     const std::string& self);

// The primary side of semi-sync on the local server, as the agent last read it.
struct SemiSyncView {
  bool known = false;          // the variables are there
  bool on = false;             // Rpl_semi_sync_master_status: commits wait for a replica
  long long waiting = 0;       // Rpl_semi_sync_master_wait_sessions: commits waiting now
  long long acknowledged = 0;  // Rpl_semi_sync_master_yes_tx: commits a replica acknowledged
  long long timeout_ms = 0;    // @@rpl_semi_sync_master_timeout
};

// MariaDB's semi-sync timeout on the lease holder while semi-sync is on: a day (it never
// releases a waiting commit by itself; the agent does, while it holds the lease).
constexpr long long kHolderSemiSyncTimeoutMs = 86400000;
// Everywhere else: short. On a read-only node its own binlog commits (a replica's,
// log_slave_updates) have no replica of their own to wait for; on a primary that fell
// back, the next commit's wait turns semi-sync off (MariaDB turns it on again by itself
// once a replica has caught up).
constexpr long long kShortSemiSyncTimeoutMs = 1000;

// What the agent remembers between rounds: since when commits have waited with no
// acknowledgement coming (under load some commit is always waiting a moment: only a wait
// during which no commit was acknowledged counts).
struct SemiSyncMemory {
  std::optional<LeaseClock::time_point> stuck_since;
  long long acknowledged = -1;
};

enum class SemiSyncAction {
  None,
  // Commits stuck: the timeout made short, and semi-sync switched off and on (which
  // releases the waiting commits); the next commit's wait turns it off, MariaDB's own
  // fallback, and MariaDB turns it on again once a replica has caught up.
  Release,
  HoldCommits,  // the lease holder with semi-sync on: the timeout made a day
  Demoted,      // a read-only node with a day: the timeout made short, waiting ones released
};

// The lease-aware fallback. Only the lease holder, writable, with commits stuck for
// `fallback` (none acknowledged meanwhile), releases them. A node whose lease lapsed (a
// freeze, a partition) never does: they die with it.
SemiSyncAction semi_sync_step(LeaseClock::time_point now, bool holding, const LocalView& local,
                              const SemiSyncView& s, std::chrono::milliseconds fallback,
                              SemiSyncMemory& memory);

}  // namespace webstack::failover
