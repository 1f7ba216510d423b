#include "failover/lease.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace webstack::failover {

bool vouches_for(const ManagerWord& w, const std::string& node) {
  return w.known && w.primary == node && w.deposed != node;
}

std::size_t majority(std::size_t voters) {
  return voters / 2 + 1;
}

std::optional<LeaseClock::time_point> renewed_lease(
    std::optional<LeaseClock::time_point> held_until, LeaseClock::time_point sent,
    std::size_t votes, std::size_t voters, std::chrono::milliseconds lease) {
  if (votes < majority(voters)) return held_until;
  const auto until = sent + lease;
  return held_until ? std::max(*held_until, until) : until;
}

bool lease_unreachable(std::size_t silent, std::size_t voters) {
  return silent >= voters || voters - silent < majority(voters);
}

AgentStep agent_step(LeaseClock::time_point now, std::optional<LeaseClock::time_point> lease_until,
                     const LocalView& local, bool last_writable, const ManagerWord& word,
                     const std::string& self) {
  AgentStep s;
  if (lease_until && now < *lease_until) {
    // The lease holder: open until the lease ends, whatever the server does (a read-only
    // holder is about to be made writable by the manager).
    s.gate = Gate::UntilLeaseEnds;
    s.open_for = std::chrono::ceil<std::chrono::milliseconds>(*lease_until - now);
    return s;
  }
  const char* state = local.answered ? "writable" : "not answering, last seen writable";
  if (lease_until) {
    // The lease lapsed. Only an answer to a question sent after it ended says whether the
    // node is writable now (the manager may have made it so just before).
    const bool fresh = local.answered && local.asked >= *lease_until;
    if (fresh && !local.writable) {
      s.gate = Gate::Open;
      return s;
    }
    s.gate = Gate::Closed;
    if (fresh ? local.writable : last_writable || local.writable) {
      s.kill = true;
      s.reason = fmt::format(
          "{} and its lease lapsed: SIGKILL of mariadbd (it restarts read-only; commits no "
          "replica acknowledged are dropped by crash recovery)",
          state);
    }
    return s;
  }
  if (local.answered && !local.writable) {
    s.gate = Gate::Open;  // read-only: a replica, or a fenced node waiting to rejoin
    return s;
  }
  // Writable without a lease, or silent (stalled, frozen, restarting): nobody may reach it.
  s.gate = Gate::Closed;
  const bool may_be_writable = local.answered ? local.writable : last_writable;
  if (!may_be_writable) return s;
  // Never held by this agent: killed once the manager has named another primary or
  // deposed this one (until then the closed gate is enough).
  if (word.known && (word.primary != self || word.deposed == self)) {
    s.kill = true;
    s.reason = fmt::format(
        "{} without a lease and {} ({}): SIGKILL of mariadbd (it restarts read-only; commits "
        "no replica acknowledged are dropped by crash recovery)",
        state,
        word.deposed == self ? "deposed by the manager"
                             : "the manager's primary is " + word.primary,
        self);
  }
  return s;
}

SemiSyncAction semi_sync_step(LeaseClock::time_point now, bool holding, const LocalView& local,
                              const SemiSyncView& s, std::chrono::milliseconds fallback,
                              SemiSyncMemory& memory) {
  // The first look has nothing to compare with: only a later one shows acknowledgements.
  const bool acknowledging = memory.acknowledged >= 0 && s.acknowledged != memory.acknowledged;
  memory.acknowledged = s.acknowledged;
  if (!s.known || !local.answered) {
    memory.stuck_since.reset();
    return SemiSyncAction::None;
  }
  if (!local.writable) {
    memory.stuck_since.reset();
    return s.timeout_ms == kHolderSemiSyncTimeoutMs ? SemiSyncAction::Demoted
                                                    : SemiSyncAction::None;
  }
  if (s.waiting == 0 || acknowledging) {
    memory.stuck_since.reset();
  } else if (!memory.stuck_since) {
    memory.stuck_since = now;
  }
  if (!holding) return SemiSyncAction::None;
  if (memory.stuck_since && now - *memory.stuck_since >= fallback) {
    memory.stuck_since.reset();
    return SemiSyncAction::Release;
  }
  // The day only while semi-sync is on: fallen back, the short timeout lets MariaDB's own
  // fallback hold (no commit waits then).
  return s.on && s.timeout_ms != kHolderSemiSyncTimeoutMs ? SemiSyncAction::HoldCommits
                                                          : SemiSyncAction::None;
}

}  // namespace webstack::failover
