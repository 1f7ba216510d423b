#include "failover/decide.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <optional>

namespace webstack::failover {

namespace {

const NodeView* find(const std::vector<NodeView>& nodes, const std::string& name) {
  for (const auto& n : nodes)
    if (n.name == name) return &n;
  return nullptr;
}

std::string seconds(Clock::duration d) {
  return fmt::format("{:.1f} s", std::chrono::duration<double>(d).count());
}

// "web-01 unreachable (Can't connect ...)", "web-01 read-only", "web-01 writable".
std::string describe(const NodeView& n) {
  if (!n.reachable) return fmt::format("{} unreachable ({})", n.name, n.error);
  if (n.writable) return n.name + " writable";
  return fmt::format(
      "{} read-only{}", n.name,
      n.master_host.empty() ? ", replicating from nobody" : ", replica of " + n.master_host);
}

}  // namespace

const char* action_name(Action a) {
  switch (a) {
    case Action::None:
      return "none";
    case Action::Fence:
      return "fence";
    case Action::Promote:
      return "promote";
    case Action::Restore:
      return "restore";
    case Action::Rejoin:
      return "rejoin";
    case Action::Rebuild:
      return "rebuild";
  }
  return "?";
}

Decider::Decider(std::string primary, std::chrono::milliseconds failover_after)
    : primary_(std::move(primary)), failover_after_(failover_after) {}

void Decider::promoted(const std::string& name) {
  primary_ = name;
  down_since_.reset();
  last_no_tx_.reset();
  refused_.clear();
}

void Decider::watch_semi_sync(const NodeView& w, const std::vector<NodeView>& nodes) {
  if (!w.semi_sync_known) return;
  const bool grew = last_no_tx_ && w.semi_sync_no_tx > *last_no_tx_;
  last_no_tx_ = w.semi_sync_no_tx;
  if (!w.semi_sync_on || grew) {
    async_gtid_ = w.gtid_binlog_pos;
    return;
  }
  if (!async_gtid_) return;
  for (const auto& n : nodes) {
    if (&n != &w && n.reachable && gtid_covers(n.gtid_current_pos, *async_gtid_)) {
      async_gtid_.reset();
      return;
    }
  }
}

namespace {

// Several writable nodes: the recorded primary keeps its role, every other is fenced.
Decision fence_others(const std::vector<const NodeView*>& writable, const std::string& primary) {
  Decision d{Action::Fence, {}, primary, ""};
  std::string who;
  for (const auto* n : writable) {
    who += (who.empty() ? "" : ", ") + n->name;
    if (n->name != primary) d.targets.push_back(n->name);
  }
  d.reason = fmt::format("{} writable at once; the primary is {}: fencing the others", who,
                         primary.empty() ? "unknown" : primary);
  return d;
}

// The apps' view, added to `evidence`: the reason to wait, if an app still reaches a
// writable primary or none answers.
std::optional<std::string> apps_objection(const std::vector<AppView>& apps,
                                          const std::string& primary, std::string& evidence) {
  int answered = 0;
  for (const auto& a : apps) {
    if (!a.answered) {
      evidence += fmt::format("app {} does not answer ({}); ", a.name, a.error);
      continue;
    }
    ++answered;
    for (const auto& s : a.nodes) {
      if (s.node != primary) continue;
      evidence += fmt::format("app {} sees {} {}; ", a.name, s.node,
                              !s.reachable ? "unreachable"
                              : s.writable ? "writable"
                                           : "read-only");
      if (s.reachable && s.writable) return "waiting: an app still reaches a writable primary";
    }
  }
  if (answered == 0) return "waiting: no app answers to confirm";
  return std::nullopt;
}

// The candidate: the reachable read-only node with the most transactions (every one
// acknowledged to a client is on it: semi-sync AFTER_SYNC), file order among equals.
const NodeView* candidate(const std::vector<NodeView>& nodes, const std::string& primary) {
  const NodeView* best = nullptr;
  for (const auto& n : nodes) {
    // Not a node whose data a rebuild is about to replace.
    if (!n.reachable || n.name == primary || n.rebuilding || n.rebuild_locked) continue;
    if (best == nullptr || !gtid_covers(best->gtid_current_pos, n.gtid_current_pos)) best = &n;
  }
  return best;
}

}  // namespace

Decision Decider::decide(Clock::time_point now, const std::vector<NodeView>& nodes,
                         const std::vector<AppView>& apps, bool paused) {
  diverged_.clear();
  std::vector<const NodeView*> writable;
  for (const auto& n : nodes)
    if (n.reachable && n.writable) writable.push_back(&n);

  // Several writable nodes: whatever happened, only one may stay so. The recorded primary
  // keeps its role; without it among them, none is trusted.
  if (writable.size() > 1) return fence_others(writable, primary_);

  // A writable node that is not the primary was not made so through a promotion (only
  // the lease holder may be writable): never adopted, it counts for nothing; its agent
  // cuts it off and kills it.
  std::string stray;
  if (writable.size() == 1 && !primary_.empty() && writable.front()->name != primary_) {
    stray = fmt::format("{} is writable but the primary is {}: not adopted; ",
                        writable.front()->name, primary_);
    writable.clear();
  }

  if (writable.size() == 1) return with_writable(*writable.front(), nodes, paused);

  return without_writable(now, nodes, apps, paused, stray);
}

Decision Decider::with_writable(const NodeView& w, const std::vector<NodeView>& nodes,
                                bool paused) {
  Decision d;
  if (w.name != primary_) {
    d.reason = fmt::format("{} is writable: it is the primary now{}", w.name,
                           primary_.empty() ? "" : " (was " + primary_ + ")");
    primary_ = w.name;
    last_no_tx_.reset();
  }
  down_since_.reset();
  refused_.clear();
  watch_semi_sync(w, nodes);
  // A reachable read-only node that replicates from nobody, or from another address
  // than the primary's (a former primary), becomes the primary's replica, if it holds
  // nothing the primary lacks; one that does (diverged) is rebuilt from the primary,
  // where a rebuild command is configured. A replica of the primary whose threads
  // stopped is left alone (someone stopped them, or the monitoring's ReplicationStopped
  // says why), unless the primary refused it.
  for (const auto& n : nodes) {
    if (&n == &w || !n.reachable || n.writable) continue;
    if (n.rebuilding) continue;  // its rebuild runs, on its old data still
    rejoin_or_rebuild(w, n, paused, d);
  }
  return d;
}

// One reachable read-only node `n` beside the writable primary `w`, added to `d`.
void Decider::rejoin_or_rebuild(const NodeView& w, const NodeView& n, bool paused, Decision& d) {
  // Refused by the primary (error 1236: it holds what the primary never had, or needs
  // what the primary no longer has): diverged, though it may look like its replica.
  const bool refused = n.diverged || (n.master_host == w.address && !n.io_running &&
                                      n.io_errno == kErrorDivergedOrPurged);
  if (n.master_host == w.address && !refused) return;
  // Ahead of the primary by sequence number, judged only once it applies nothing more
  // (a node still applying from elsewhere moves under the manager's two questions).
  const bool settled = !n.io_running && (!n.sql_running || n.relay_applied);
  const bool ahead = !gtid_covers(w.gtid_current_pos, n.gtid_binlog_pos);
  if (ahead && !settled && !refused) return;
  const bool diverged = refused || ahead;
  if (diverged) diverged_.push_back(n.name);
  if (paused) return;
  if (diverged) {
    const std::string why =
        refused ? fmt::format("{}'s replication was refused by {} as diverged", n.name, w.name)
                : fmt::format(
                      "{} holds transactions the primary {} lacks (its binlog {}, "
                      "the primary has {})",
                      n.name, w.name, n.gtid_binlog_pos, w.gtid_current_pos);
    if (rebuild_available_ && !n.rebuild_wait && d.action == Action::None) {
      d.action = Action::Rebuild;
      d.targets = {n.name};
      d.reason += fmt::format(
          "{}{}: rebuilding it from {} (what it holds that {} lacks is "
          "saved first)",
          d.reason.empty() ? "" : "; ", why, w.name, w.name);
    } else if (rebuild_available_ && n.rebuild_wait) {
      d.reason += fmt::format("{}{}: its rebuild waits (one runs, or its last failed a moment ago)",
                              d.reason.empty() ? "" : "; ", why);
    } else if (!rebuild_available_) {
      d.reason += fmt::format(
          "{}{}: not rejoined automatically; `webstack db rebuild {}` saves them and "
          "replaces its data with the primary's",
          d.reason.empty() ? "" : "; ", why, n.name);
    }
    return;
  }
  if (d.action != Action::None) return;  // one action a round
  d.action = Action::Rejoin;
  d.targets = {n.name};
  d.reason += fmt::format("{}{}: it becomes a replica of {} (its binlog {} is within {}'s {})",
                          d.reason.empty() ? "" : "; ", describe(n), w.name,
                          n.gtid_binlog_pos.empty() ? "empty" : n.gtid_binlog_pos, w.name,
                          w.gtid_current_pos);
}

Decision Decider::without_writable(Clock::time_point now, const std::vector<NodeView>& nodes,
                                   const std::vector<AppView>& apps, bool paused,
                                   const std::string& stray) {
  // No writable node.
  if (!down_since_) down_since_ = now;
  const auto down_for = now - *down_since_;

  const NodeView* old = find(nodes, primary_);
  std::string evidence =
      fmt::format("{}no writable primary for {}; manager sees: ", stray, seconds(down_for));
  for (const auto& n : nodes) evidence += describe(n) + "; ";
  // The apps' view: every app that answered must also see no writable primary. One that
  // still writes to it means the manager's own path is what failed.
  if (auto wait = apps_objection(apps, primary_, evidence)) {
    return {Action::None, {}, primary_, evidence + *wait};
  }
  if (down_for < failover_after_) {
    return {Action::None,
            {},
            primary_,
            evidence + fmt::format("waiting until {}", seconds(failover_after_))};
  }
  if (paused) return {Action::None, {}, primary_, evidence + "paused: no promotion"};

  return promote_or_restore(candidate(nodes, primary_), old, evidence);
}

// The failover itself, the primary down long enough: `best` promoted, or `old` kept.
Decision Decider::promote_or_restore(const NodeView* best, const NodeView* old,
                                     const std::string& evidence) {
  // A reachable old primary holding transactions the candidate lacks and cannot fetch
  // (its replication is not running) is the more complete copy: it stays the primary.
  if (best != nullptr && old != nullptr && old->reachable &&
      !gtid_covers(best->gtid_current_pos, old->gtid_binlog_pos) && !best->io_running) {
    return {Action::Restore,
            {old->name},
            primary_,
            evidence + fmt::format("{} lacks {}'s transactions ({} of {}) and does not replicate: "
                                   "{} made writable again",
                                   best->name, old->name, best->gtid_current_pos,
                                   old->gtid_binlog_pos, old->name)};
  }
  // Every acknowledged write is on a replica only while semi-sync held: after the primary
  // committed without an acknowledgement, the candidate must hold what it had then.
  if (best != nullptr && async_gtid_ && !gtid_covers(best->gtid_current_pos, *async_gtid_)) {
    refused_ = fmt::format(
        "{} ran without semi-sync (asynchronous commits up to GTID {}) and {} has only {}: "
        "promoting it could lose acknowledged writes; start {} again, or `webstack db promote "
        "{}` by hand, accepting the loss",
        primary_, *async_gtid_, best->name, best->gtid_current_pos, primary_, best->name);
    return {Action::None, {}, primary_, evidence + "refused: " + refused_};
  }
  if (best != nullptr) {
    return {Action::Promote,
            {best->name},
            primary_,
            evidence + fmt::format("promoting {} (GTID {})", best->name, best->gtid_current_pos)};
  }
  if (old != nullptr && old->reachable) {
    return {Action::Restore,
            {old->name},
            primary_,
            evidence + fmt::format("no other node to promote: {} made writable again", old->name)};
  }
  return {Action::None, {}, primary_, evidence + "no node reachable to promote"};
}

}  // namespace webstack::failover
