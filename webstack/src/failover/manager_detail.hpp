// What the failover manager's files share (manager.cpp: its loop, records and state port;
// manager_probe.cpp: its questions to the nodes and apps; manager_actions.cpp: promotion,
// deposing, rejoin; manager_rebuild.cpp: diverged nodes' rebuilds). Internal to the
// webstack-failover executable.
#pragma once

#include <sys/types.h>

#include <boost/json.hpp>

#include <chrono>
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "failover/config.hpp"
#include "failover/decide.hpp"
#include "failover/sql_session.hpp"
#include "failover/wire.hpp"

namespace webstack::failover::manager_detail {

namespace json = boost::json;

inline double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// manager_probe.cpp: one node's view of itself; one app's view of the nodes.
NodeView probe_node(SqlSession& s, const DbNode& n);
AppView probe_app(const AppEndpoint& a, const std::vector<DbNode>& db,
                  std::chrono::milliseconds timeout);

class Manager {
 public:
  explicit Manager(const ManagerConfig& c);

  int run();

 private:
  // manager.cpp: the loop's rounds and what they record.
  static std::string initial_primary(const ManagerConfig& c);

  void round(Clock::time_point now);

  std::string async_gtid_file() const;
  void record_async_gtid();

  std::size_t index_of(const std::string& name) const;
  SqlSession& session(const std::string& name) { return *action_sessions_[index_of(name)]; }
  const NodeView& view(const std::string& name) const { return nodes_[index_of(name)]; }

  void record_primary();

  // manager_actions.cpp: the primary adopted, designated, deposed, promoted, restored;
  // nodes fenced and rejoined.
  void adopt_the_lease_holder();
  void designate_if_asked();
  void fence(const std::string& name);
  std::optional<json::object> agent_state(const std::string& name) const;
  void make_writable(const std::string& name);
  void depose(const std::string& old);
  void restore(const std::string& name);
  void promote(const std::string& next, const std::string& old);
  void rejoin(const std::string& name);

  // manager_rebuild.cpp: diverged nodes and their rebuilds.
  void mark_diverged();
  bool lock_held(const std::string& host) const;
  void retry_unreachable_rebuild(Clock::time_point now);
  void start_rebuild(const std::string& host);
  void reap_rebuild();
  std::chrono::seconds failed_rebuild(const std::string& host, bool left_down);
  std::vector<std::string> diverged_nodes() const;
  std::size_t errant_files() const;

  // The state port (manager.cpp).
  Reply answer(const std::string& request, const std::string& peer) const;

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
  void publish();
  Published published() const;
  std::string state_json(const Published& p) const;
  std::string metrics_text(const Published& p) const;

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

}  // namespace webstack::failover::manager_detail
