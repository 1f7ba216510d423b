// The failover manager's rules (failover/decide.hpp) on made-up views of the nodes and
// the apps: when it waits, promotes, restores, fences and rejoins, and why.
#include "failover/decide.hpp"

#include <gtest/gtest.h>

namespace webstack::failover {
namespace {

using namespace std::chrono_literals;

NodeView primary(const std::string& name, const std::string& address, const std::string& gtid) {
  NodeView n;
  n.name = name;
  n.address = address;
  n.reachable = true;
  n.writable = true;
  n.gtid_current_pos = n.gtid_binlog_pos = gtid;
  return n;
}

NodeView replica(const std::string& name, const std::string& address, const std::string& of,
                 const std::string& gtid) {
  NodeView n = primary(name, address, gtid);
  n.writable = false;
  n.master_host = of;
  n.io_running = n.sql_running = n.relay_applied = true;
  return n;
}

NodeView gone(const std::string& name, const std::string& address) {
  NodeView n;
  n.name = name;
  n.address = address;
  n.error = "Can't connect";
  return n;
}

AppView app(const std::string& name, bool primary_reachable, bool primary_writable) {
  AppView a;
  a.name = name;
  a.answered = true;
  a.nodes = {{"db-1", primary_reachable, primary_writable}};
  return a;
}

class DeciderTest : public ::testing::Test {
 protected:
  Decider d{"db-1", 3000ms};
  Clock::time_point t0 = Clock::now();
  std::vector<AppView> apps_lost = {app("web-1", false, false), app("web-2", false, false)};
};

TEST_F(DeciderTest, HealthySiteNeedsNothing) {
  const auto r = d.decide(
      t0, {primary("db-1", "10.0.0.1", "0-1-5"), replica("db-2", "10.0.0.2", "10.0.0.1", "0-1-5")},
      {app("web-1", true, true)}, false);
  EXPECT_EQ(r.action, Action::None);
  EXPECT_FALSE(d.down_since().has_value());
}

TEST_F(DeciderTest, PromotesTheReplicaOnlyAfterFailoverAfter) {
  const std::vector<NodeView> nodes = {gone("db-1", "10.0.0.1"),
                                       replica("db-2", "10.0.0.2", "10.0.0.1", "0-1-5")};
  auto r = d.decide(t0, nodes, apps_lost, false);
  EXPECT_EQ(r.action, Action::None);
  EXPECT_NE(r.reason.find("waiting until 3.0 s"), std::string::npos) << r.reason;
  r = d.decide(t0 + 2900ms, nodes, apps_lost, false);
  EXPECT_EQ(r.action, Action::None);
  r = d.decide(t0 + 3000ms, nodes, apps_lost, false);
  EXPECT_EQ(r.action, Action::Promote);
  EXPECT_EQ(r.targets, std::vector<std::string>{"db-2"});
  EXPECT_EQ(r.old_primary, "db-1");
  EXPECT_NE(r.reason.find("db-1 unreachable (Can't connect)"), std::string::npos) << r.reason;
  EXPECT_NE(r.reason.find("app web-2 sees db-1 unreachable"), std::string::npos) << r.reason;
  d.promoted("db-2");
  EXPECT_EQ(d.primary(), "db-2");
  EXPECT_FALSE(d.down_since().has_value());
}

TEST_F(DeciderTest, AnAppThatStillWritesToThePrimaryHoldsThePromotionBack) {
  const std::vector<NodeView> nodes = {gone("db-1", "10.0.0.1"),
                                       replica("db-2", "10.0.0.2", "10.0.0.1", "0-1-5")};
  const std::vector<AppView> split = {app("web-1", true, true), app("web-2", false, false)};
  d.decide(t0, nodes, split, false);
  const auto r = d.decide(t0 + 10s, nodes, split, false);
  EXPECT_EQ(r.action, Action::None);
  EXPECT_NE(r.reason.find("an app still reaches a writable primary"), std::string::npos)
      << r.reason;
}

TEST_F(DeciderTest, NoAppAnsweringMeansNoConfirmationAndNoPromotion) {
  const std::vector<NodeView> nodes = {gone("db-1", "10.0.0.1"),
                                       replica("db-2", "10.0.0.2", "10.0.0.1", "0-1-5")};
  AppView silent;
  silent.name = "web-1";
  silent.error = "timed out";
  d.decide(t0, nodes, {silent}, false);
  const auto r = d.decide(t0 + 10s, nodes, {silent}, false);
  EXPECT_EQ(r.action, Action::None);
  EXPECT_NE(r.reason.find("no app answers"), std::string::npos) << r.reason;
}

TEST_F(DeciderTest, PausedItWaitsAndTheClockKeepsRunning) {
  const std::vector<NodeView> nodes = {gone("db-1", "10.0.0.1"),
                                       replica("db-2", "10.0.0.2", "10.0.0.1", "0-1-5")};
  d.decide(t0, nodes, apps_lost, true);
  auto r = d.decide(t0 + 5s, nodes, apps_lost, true);
  EXPECT_EQ(r.action, Action::None);
  EXPECT_NE(r.reason.find("paused"), std::string::npos);
  r = d.decide(t0 + 5100ms, nodes, apps_lost, false);
  EXPECT_EQ(r.action, Action::Promote);
}

TEST_F(DeciderTest, ACrashedPrimaryBackReadOnlyIsReplacedByTheReplica) {
  NodeView back = replica("db-1", "10.0.0.1", "", "0-1-5");
  back.io_running = back.sql_running = false;
  const std::vector<NodeView> nodes = {back, replica("db-2", "10.0.0.2", "10.0.0.1", "0-1-5")};
  const std::vector<AppView> ro = {app("web-1", true, false)};
  d.decide(t0, nodes, ro, false);
  const auto r = d.decide(t0 + 3s, nodes, ro, false);
  EXPECT_EQ(r.action, Action::Promote);
  EXPECT_EQ(r.targets, std::vector<std::string>{"db-2"});
}

TEST_F(DeciderTest, TheOldPrimaryStaysWhenTheReplicaLacksItsDataAndCannotFetchIt) {
  NodeView back = replica("db-1", "10.0.0.1", "", "0-1-9");
  NodeView behind = replica("db-2", "10.0.0.2", "10.0.0.1", "0-1-5");
  behind.io_running = false;
  d.decide(t0, {back, behind}, apps_lost, false);
  const auto r = d.decide(t0 + 3s, {back, behind}, apps_lost, false);
  EXPECT_EQ(r.action, Action::Restore);
  EXPECT_EQ(r.targets, std::vector<std::string>{"db-1"});
}

TEST_F(DeciderTest, TheMostAdvancedReplicaIsPromoted) {
  const std::vector<NodeView> nodes = {gone("db-1", "10.0.0.1"),
                                       replica("db-2", "10.0.0.2", "10.0.0.1", "0-1-5"),
                                       replica("db-3", "10.0.0.3", "10.0.0.1", "0-1-7")};
  d.decide(t0, nodes, apps_lost, false);
  const auto r = d.decide(t0 + 3s, nodes, apps_lost, false);
  EXPECT_EQ(r.targets, std::vector<std::string>{"db-3"});
}

TEST_F(DeciderTest, NothingReachableNothingDone) {
  const std::vector<NodeView> nodes = {gone("db-1", "10.0.0.1"), gone("db-2", "10.0.0.2")};
  d.decide(t0, nodes, apps_lost, false);
  const auto r = d.decide(t0 + 10s, nodes, apps_lost, false);
  EXPECT_EQ(r.action, Action::None);
  EXPECT_NE(r.reason.find("no node reachable"), std::string::npos) << r.reason;
}

TEST_F(DeciderTest, TwoWritableNodesTheOneThatIsNotThePrimaryIsFenced) {
  const auto r =
      d.decide(t0, {primary("db-1", "10.0.0.1", "0-1-5"), primary("db-2", "10.0.0.2", "0-2-6")},
               apps_lost, false);
  EXPECT_EQ(r.action, Action::Fence);
  EXPECT_EQ(r.targets, std::vector<std::string>{"db-2"});
}

// Only a promotion (the lease's deposition first) makes a node the primary: a node made
// writable behind the manager's back is not adopted, and counts as no primary at all.
TEST_F(DeciderTest, AWritableNodeThatIsNotThePrimaryIsNotAdopted) {
  NodeView old = replica("db-1", "10.0.0.1", "", "0-1-5");
  old.io_running = old.sql_running = false;
  const auto r = d.decide(t0, {old, primary("db-2", "10.0.0.2", "0-2-8")}, apps_lost, false);
  EXPECT_EQ(d.primary(), "db-1");
  EXPECT_EQ(r.action, Action::None);
  EXPECT_NE(r.reason.find("db-2 is writable but the primary is db-1: not adopted"),
            std::string::npos)
      << r.reason;
  EXPECT_TRUE(d.down_since().has_value());
}

// The primary the manager named, found writable, gets its former primary back as a replica.
TEST_F(DeciderTest, TheFormerPrimaryRejoinsTheNamedPrimary) {
  NodeView old = replica("db-1", "10.0.0.1", "", "0-1-5");
  old.io_running = old.sql_running = false;
  Decider named{"db-2", 3000ms};
  const auto r = named.decide(t0, {old, primary("db-2", "10.0.0.2", "0-2-8")}, apps_lost, false);
  EXPECT_EQ(r.action, Action::Rejoin);
  EXPECT_EQ(r.targets, std::vector<std::string>{"db-1"});
  // Paused: no role changes.
  Decider paused{"db-2", 3000ms};
  EXPECT_EQ(paused.decide(t0, {old, primary("db-2", "10.0.0.2", "0-2-8")}, apps_lost, true).action,
            Action::None);
}

TEST_F(DeciderTest, AReplicaOfThePrimaryWithStoppedThreadsIsLeftAlone) {
  NodeView stopped = replica("db-2", "10.0.0.2", "10.0.0.1", "0-1-5");
  stopped.sql_running = false;
  const auto r = d.decide(t0, {primary("db-1", "10.0.0.1", "0-1-5"), stopped}, apps_lost, false);
  EXPECT_EQ(r.action, Action::None);
}

TEST_F(DeciderTest, ANodeAheadOfThePrimaryIsNotRejoined) {
  NodeView ahead = replica("db-1", "10.0.0.1", "", "0-1-9");
  ahead.io_running = ahead.sql_running = false;  // replicating from nobody
  Decider named{"db-2", 3000ms};
  const auto r = named.decide(t0, {ahead, primary("db-2", "10.0.0.2", "0-1-5")}, apps_lost, false);
  EXPECT_EQ(r.action, Action::None);
  EXPECT_NE(r.reason.find("not rejoined automatically"), std::string::npos) << r.reason;
}

// A former primary holding what the primary lacks is rebuilt where a rebuild command is
// configured, also when its position looks in order but the primary refused it as
// diverged; it is counted as diverged either way, paused or not.
TEST_F(DeciderTest, ADivergedNodeIsRebuiltWhereRebuildIsAvailable) {
  NodeView ahead = replica("db-1", "10.0.0.1", "", "0-1-9");
  ahead.io_running = ahead.sql_running = false;  // replicating from nobody
  Decider named{"db-2", 3000ms};
  named.set_rebuild_available(true);
  auto r = named.decide(t0, {ahead, primary("db-2", "10.0.0.2", "0-1-5")}, apps_lost, false);
  EXPECT_EQ(r.action, Action::Rebuild);
  EXPECT_EQ(r.targets, std::vector<std::string>{"db-1"});
  EXPECT_EQ(named.diverged(), std::vector<std::string>{"db-1"});

  // Pointed at the primary by a rejoin that the primary refused (its threads stopped).
  NodeView refused = replica("db-1", "10.0.0.1", "10.0.0.2", "0-1-6");
  refused.io_running = refused.sql_running = false;
  refused.diverged = true;  // 0-2-8 covers 0-1-6 by number; the primary said otherwise
  r = named.decide(t0, {refused, primary("db-2", "10.0.0.2", "0-2-8")}, apps_lost, false);
  EXPECT_EQ(r.action, Action::Rebuild);
  EXPECT_NE(r.reason.find("refused by db-2 as diverged"), std::string::npos) << r.reason;

  r = named.decide(t0, {refused, primary("db-2", "10.0.0.2", "0-2-8")}, apps_lost, true);
  EXPECT_EQ(r.action, Action::None);
  EXPECT_EQ(named.diverged(), std::vector<std::string>{"db-1"});

  Decider manual{"db-2", 3000ms};
  r = manual.decide(t0, {refused, primary("db-2", "10.0.0.2", "0-2-8")}, apps_lost, false);
  EXPECT_EQ(r.action, Action::None);
  EXPECT_NE(r.reason.find("`webstack db rebuild db-1`"), std::string::npos) << r.reason;
  // Healthy again: nothing diverged.
  r = named.decide(
      t0, {replica("db-1", "10.0.0.1", "10.0.0.2", "0-2-8"), primary("db-2", "10.0.0.2", "0-2-8")},
      apps_lost, false);
  EXPECT_EQ(r.action, Action::None);
  EXPECT_TRUE(named.diverged().empty());
}

// A node refused by the primary with error 1236 after it looked rejoined is diverged; a
// node still applying from elsewhere is not judged by its moving position; a node whose
// rebuild cannot start now lets the round go on to the next node; a node being rebuilt is
// neither rebuilt again, rejoined nor promoted.
TEST_F(DeciderTest, RebuildsOnlyWhatIsSettledAndNeverPromotesANodeBeingRebuilt) {
  Decider named{"db-2", 3000ms};
  named.set_rebuild_available(true);
  const auto p = primary("db-2", "10.0.0.2", "0-2-8");
  NodeView late = replica("db-1", "10.0.0.1", "10.0.0.2", "0-2-8");
  late.io_running = false;
  late.io_errno = kErrorDivergedOrPurged;
  auto r = named.decide(t0, {late, p}, apps_lost, false);
  EXPECT_EQ(r.action, Action::Rebuild) << r.reason;

  NodeView moving = replica("db-1", "10.0.0.1", "10.0.0.9", "0-2-9");  // from another node
  r = named.decide(t0, {moving, p}, apps_lost, false);
  EXPECT_EQ(r.action, Action::None) << r.reason;
  EXPECT_TRUE(named.diverged().empty());

  NodeView waiting = replica("db-1", "10.0.0.1", "", "0-1-9");
  waiting.io_running = waiting.sql_running = false;
  waiting.rebuild_wait = true;
  NodeView former = replica("db-3", "10.0.0.3", "", "0-2-7");
  former.io_running = former.sql_running = false;
  r = named.decide(t0, {waiting, p, former}, apps_lost, false);
  EXPECT_EQ(r.action, Action::Rejoin) << r.reason;
  EXPECT_EQ(r.targets, std::vector<std::string>{"db-3"});
  EXPECT_EQ(named.diverged(), std::vector<std::string>{"db-1"});

  NodeView rebuilding = waiting;
  rebuilding.rebuilding = true;
  r = named.decide(t0, {rebuilding, p}, apps_lost, false);
  EXPECT_EQ(r.action, Action::None) << r.reason;
  // The primary lost meanwhile: the node being rebuilt is not a candidate, nor one whose
  // lock a rebuild started elsewhere holds; the same node otherwise is.
  const auto after_loss = [&](const NodeView& n) {
    Decider lost{"db-2", 3000ms};
    lost.decide(t0, {n, gone("db-2", "10.0.0.2")}, apps_lost, false);
    return lost.decide(t0 + 5s, {n, gone("db-2", "10.0.0.2")}, apps_lost, false);
  };
  EXPECT_NE(after_loss(rebuilding).action, Action::Promote);
  NodeView locked = waiting;
  locked.rebuild_locked = true;
  EXPECT_NE(after_loss(locked).action, Action::Promote);
  EXPECT_EQ(after_loss(waiting).action, Action::Promote);
}

// Semi-sync fell back (the primary committed without a replica's acknowledgement, the
// replica stopped): a replica lacking those commits is not promoted; once it has caught
// up and semi-sync is back, it is.
TEST_F(DeciderTest, RefusesAReplicaThatMayLackWritesAcknowledgedWithoutSemiSync) {
  NodeView p = primary("db-1", "10.0.0.1", "0-1-5");
  p.semi_sync_known = p.semi_sync_on = true;
  p.semi_sync_no_tx = 0;
  NodeView r = replica("db-2", "10.0.0.2", "10.0.0.1", "0-1-5");
  d.decide(t0, {p, r}, {app("web-1", true, true)}, false);
  // The replica stops; two commits go asynchronous.
  p.semi_sync_on = false;
  p.semi_sync_no_tx = 2;
  p.gtid_current_pos = p.gtid_binlog_pos = "0-1-7";
  r.io_running = false;
  d.decide(t0 + 1s, {p, r}, {app("web-1", true, true)}, false);
  // The primary dies.
  const std::vector<NodeView> lost = {gone("db-1", "10.0.0.1"), r};
  d.decide(t0 + 2s, lost, apps_lost, false);
  auto out = d.decide(t0 + 6s, lost, apps_lost, false);
  EXPECT_EQ(out.action, Action::None);
  EXPECT_NE(out.reason.find("refused: db-1 ran without semi-sync (asynchronous commits up to GTID "
                            "0-1-7) and db-2 has only 0-1-5"),
            std::string::npos)
      << out.reason;
  EXPECT_FALSE(d.refused().empty());

  // Had the replica caught up with semi-sync back on before the crash, it is promoted.
  Decider d2{"db-1", 3000ms};
  p.semi_sync_on = false;
  d2.decide(t0, {p, r}, {app("web-1", true, true)}, false);
  p.semi_sync_on = true;
  r.io_running = true;
  r.gtid_current_pos = r.gtid_binlog_pos = "0-1-7";
  d2.decide(t0 + 1s, {p, r}, {app("web-1", true, true)}, false);
  const std::vector<NodeView> lost2 = {gone("db-1", "10.0.0.1"), r};
  d2.decide(t0 + 2s, lost2, apps_lost, false);
  out = d2.decide(t0 + 6s, lost2, apps_lost, false);
  EXPECT_EQ(out.action, Action::Promote) << out.reason;
  EXPECT_TRUE(d2.refused().empty());
}

}  // namespace
}  // namespace webstack::failover
