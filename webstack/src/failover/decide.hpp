// The failover manager's decisions, as pure functions of what it sees: the database
// nodes (from the manager itself) and the web hosts' apps (their own view of the same
// nodes). No I/O here, so every rule is unit-tested (webstack/tests/failover_decide_test.cpp);
// manager.cpp carries the decisions out.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "common/gtid.hpp"

namespace webstack::failover {

using Clock = std::chrono::steady_clock;

// One database node as the manager sees it this round.
struct NodeView {
  std::string name;
  std::string address;
  bool reachable = false;
  bool writable = false;       // @@read_only = 0
  std::string master_host;     // SHOW SLAVE STATUS Master_Host ("" when not a replica)
  bool io_running = false;     // Slave_IO_Running = Yes
  bool sql_running = false;    // Slave_SQL_Running = Yes
  bool relay_applied = false;  // the SQL thread has applied everything the IO thread received
  std::string gtid_current_pos;
  std::string gtid_binlog_pos;
  // Its primary side of semi-sync (read on every node; it matters on the primary).
  bool semi_sync_known = false;
  bool semi_sync_on = false;               // Rpl_semi_sync_master_status
  unsigned long long semi_sync_no_tx = 0;  // Rpl_semi_sync_master_no_tx: commits not acknowledged
  std::string error;                       // why it is unreachable
  int io_errno = 0;                        // Last_IO_Errno (1236: the primary refused it)
  // Set by the manager: the primary refused this node's replication as diverged (error
  // 1236) and its binlog has not changed since (a history that differs behind positions
  // gtid_covers finds in order: the same sequence numbers, another server's).
  bool diverged = false;
  // Set by the manager: a rebuild of this node runs and its data is still the old one
  // (neither promoted nor rejoined meanwhile); a rebuild cannot start now (one runs, or
  // this node's failed a moment ago: no Rebuild for it, the rounds go on to other nodes).
  bool rebuilding = false;
  bool rebuild_wait = false;
  // Set by the manager: a rebuild it did not start holds the node's lock: not promoted.
  bool rebuild_locked = false;
};

// ER_MASTER_FATAL_ERROR_READING_BINLOG: the primary cannot serve the replica from where it
// stands (a transaction the primary never had, or binlogs it purged): only a rebuild helps.
inline constexpr int kErrorDivergedOrPurged = 1236;

// One web host's app: whether it answered, and how it sees each node (by node name).
struct AppView {
  std::string name;
  bool answered = false;
  struct Seen {
    std::string node;
    bool reachable = false;
    bool writable = false;
  };
  std::vector<Seen> nodes;
  std::string error;  // why it did not answer
};

enum class Action {
  None,     // nothing to do (healthy, waiting, or nothing safe to do: see `reason`)
  Fence,    // make `targets` read-only: several nodes are writable
  Promote,  // make `targets[0]` the primary in place of `old_primary`
  Restore,  // make the recorded primary writable again: no other node can take over
  Rejoin,   // make `targets[0]` a replica of the primary
  Rebuild,  // replace `targets[0]`'s data with the primary's: it holds what the primary lacks
};

struct Decision {
  Action action = Action::None;
  std::vector<std::string> targets;
  std::string old_primary;
  std::string reason;  // the evidence, for the log
};

// GTID position `have` ("0-1-17,...") includes `want` (common/gtid.hpp, shared with the app).
using webstack::gtid_covers;

class Decider {
 public:
  // `primary`: the node the site starts with (may be "": the single writable node found).
  Decider(std::string primary, std::chrono::milliseconds failover_after);

  // One round. `paused`: decide nothing that changes roles (fencing of a second writable
  // node still happens: it is never wrong).
  Decision decide(Clock::time_point now, const std::vector<NodeView>& nodes,
                  const std::vector<AppView>& apps, bool paused);

  // The manager carried out a promotion (or a restore): `name` is the primary.
  void promoted(const std::string& name);

  const std::string& primary() const { return primary_; }
  // Since when the site has had no writable primary (unset while it has one).
  std::optional<Clock::time_point> down_since() const { return down_since_; }
  // Why the last round refused to promote ("" when it did not).
  const std::string& refused() const { return refused_; }
  // The position a candidate must hold since the primary committed without semi-sync
  // (kept by the manager across restarts: a restart must not forget it).
  const std::optional<std::string>& async_gtid() const { return async_gtid_; }
  void set_async_gtid(std::optional<std::string> gtid) { async_gtid_ = std::move(gtid); }
  // Whether a diverged node is rebuilt (Action::Rebuild) or only named in the reason.
  void set_rebuild_available(bool available) { rebuild_available_ = available; }
  // The reachable nodes the last round found diverged from the primary.
  const std::vector<std::string>& diverged() const { return diverged_; }

 private:
  // The primary's semi-sync this round: remembers the GTID a candidate must hold.
  void watch_semi_sync(const NodeView& primary, const std::vector<NodeView>& nodes);
  // decide()'s rounds: one writable node (the primary), or none.
  Decision with_writable(const NodeView& w, const std::vector<NodeView>& nodes, bool paused);
  void rejoin_or_rebuild(const NodeView& w, const NodeView& n, bool paused, Decision& d);
  Decision without_writable(Clock::time_point now, const std::vector<NodeView>& nodes,
                            const std::vector<AppView>& apps, bool paused,
                            const std::string& stray);
  Decision promote_or_restore(const NodeView* best, const NodeView* old,
                              const std::string& evidence);

  std::string primary_;
  std::chrono::milliseconds failover_after_;
  std::optional<Clock::time_point> down_since_;
  // The primary's binlog position when it last committed without a replica's
  // acknowledgement (or was seen with semi-sync off): a replica lacking it may lack
  // acknowledged writes. Cleared once a replica holds it and semi-sync is back.
  std::optional<std::string> async_gtid_;
  std::optional<unsigned long long> last_no_tx_;
  std::string refused_;
  bool rebuild_available_ = false;
  std::vector<std::string> diverged_;
};

const char* action_name(Action a);

}  // namespace webstack::failover
