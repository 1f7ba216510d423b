// Routing rules of the database cluster (db/routing.hpp): pure, no server needed.
#include "db/routing.hpp"

#include "db/cluster.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace webstack::db {
namespace {

using std::chrono::milliseconds;
constexpr milliseconds kMaxLag{1'000};

NodeStatus primary(std::string name = "p:3306") {
  NodeStatus n;
  n.name = std::move(name);
  n.reachable = true;
  n.writable = true;
  return n;
}

NodeStatus replica(std::string name, std::int64_t lag_ms = 0) {
  NodeStatus n;
  n.name = std::move(name);
  n.reachable = true;
  n.writable = false;
  n.replicating = true;
  n.lag_ms = lag_ms;
  return n;
}

NodeStatus down(std::string name) {
  NodeStatus n;
  n.name = std::move(name);
  return n;
}

TEST(DbRouting, WriterIsTheWritableNode) {
  std::vector<NodeStatus> nodes = {replica("r1"), primary(), replica("r2")};
  EXPECT_EQ(choose_writer(nodes), 1u);
}

TEST(DbRouting, HealthyReplicaServesReads) {
  std::vector<NodeStatus> nodes = {primary(), replica("r1", 200)};
  const ReadChoice c = choose_reader(nodes, kMaxLag, 0);
  ASSERT_TRUE(c.node);
  EXPECT_EQ(*c.node, 1u);
  EXPECT_EQ(c.path, ReadPath::Replica);
}

TEST(DbRouting, LagAtTheBoundIsAcceptedBeyondIsNot) {
  std::vector<NodeStatus> nodes = {primary(), replica("r1", 1'000)};
  EXPECT_EQ(choose_reader(nodes, kMaxLag, 0).path, ReadPath::Replica);
  nodes[1].lag_ms = 2'000;
  const ReadChoice c = choose_reader(nodes, kMaxLag, 0);
  ASSERT_TRUE(c.node);
  EXPECT_EQ(*c.node, 0u);
  EXPECT_EQ(c.path, ReadPath::Fallback);
}

TEST(DbRouting, UnknownLagIsNotHealthy) {
  std::vector<NodeStatus> nodes = {primary(), replica("r1")};
  nodes[1].lag_ms.reset();
  EXPECT_EQ(choose_reader(nodes, kMaxLag, 0).path, ReadPath::Fallback);
}

TEST(DbRouting, ReplicaDownFallsBackToPrimary) {
  std::vector<NodeStatus> nodes = {primary(), down("r1")};
  const ReadChoice c = choose_reader(nodes, kMaxLag, 7);
  ASSERT_TRUE(c.node);
  EXPECT_EQ(*c.node, 0u);
  EXPECT_EQ(c.path, ReadPath::Fallback);
}

TEST(DbRouting, ReplicaWithSqlThreadStoppedIsNotRead) {
  std::vector<NodeStatus> nodes = {primary(), replica("r1", 0)};
  nodes[1].replicating = false;  // Slave_SQL_Running: No
  EXPECT_FALSE(healthy_replica(nodes[1], kMaxLag));
  EXPECT_EQ(choose_reader(nodes, kMaxLag, 0).path, ReadPath::Fallback);
}

TEST(DbRouting, NoPrimaryRefusesWritesButReplicaServesReads) {
  std::vector<NodeStatus> nodes = {down("p"), replica("r1", 0)};
  EXPECT_FALSE(choose_writer(nodes));
  const ReadChoice c = choose_reader(nodes, kMaxLag, 0);
  ASSERT_TRUE(c.node);
  EXPECT_EQ(*c.node, 1u);
  EXPECT_EQ(c.path, ReadPath::Replica);
}

TEST(DbRouting, NothingReachableMeansUnavailable) {
  std::vector<NodeStatus> nodes = {down("p"), down("r1")};
  EXPECT_FALSE(choose_writer(nodes));
  EXPECT_FALSE(choose_reader(nodes, kMaxLag, 0).node);
}

TEST(DbRouting, PrimaryDownReplicaNotReplicatingStillServesReads) {
  // The primary is gone, so the replica's IO thread cannot connect: its data is possibly
  // stale, but reads continue from it while writes get 503.
  std::vector<NodeStatus> nodes = {down("p"), replica("r1", 0)};
  nodes[1].replicating = false;
  nodes[1].lag_ms.reset();
  const ReadChoice c = choose_reader(nodes, kMaxLag, 0);
  ASSERT_TRUE(c.node);
  EXPECT_EQ(*c.node, 1u);
  EXPECT_EQ(c.path, ReadPath::Fallback);
}

TEST(DbRouting, TwoWritableNodesRefuseWrites) {
  std::vector<NodeStatus> nodes = {primary("a"), primary("b"), replica("r1", 0)};
  EXPECT_FALSE(choose_writer(nodes));
  EXPECT_EQ(choose_reader(nodes, kMaxLag, 0).path, ReadPath::Replica);
  nodes.pop_back();
  const ReadChoice c = choose_reader(nodes, kMaxLag, 0);
  ASSERT_TRUE(c.node);  // reads still served by one of them
  EXPECT_EQ(*c.node, 0u);
}

TEST(DbRouting, UnreachableWritableNodeIsNotTheWriter) {
  std::vector<NodeStatus> nodes = {primary("a"), primary("b")};
  nodes[0].reachable = false;
  EXPECT_EQ(choose_writer(nodes), 1u);
}

TEST(DbRouting, PromotionMovesWritesAndReads) {
  std::vector<NodeStatus> nodes = {primary("a"), replica("b", 0)};
  EXPECT_EQ(choose_writer(nodes), 0u);
  EXPECT_EQ(*choose_reader(nodes, kMaxLag, 0).node, 1u);
  // b promoted (read_only=0, replication reset), a demoted to a replica of b.
  nodes[0] = replica("a", 0);
  nodes[1] = primary("b");
  EXPECT_EQ(choose_writer(nodes), 1u);
  const ReadChoice c = choose_reader(nodes, kMaxLag, 0);
  EXPECT_EQ(*c.node, 0u);
  EXPECT_EQ(c.path, ReadPath::Replica);
  // Half-way: a already read-only, not yet replicating; b not yet writable.
  nodes[0].replicating = false;
  nodes[1].writable = false;
  EXPECT_FALSE(choose_writer(nodes));
}

TEST(DbRouting, RoundRobinOverHealthyReplicas) {
  std::vector<NodeStatus> nodes = {replica("r1"), primary(), replica("r2"), replica("r3", 5'000)};
  std::vector<std::size_t> picked;
  for (std::uint64_t rr = 0; rr < 4; ++rr) {
    picked.push_back(*choose_reader(nodes, kMaxLag, rr).node);
  }
  EXPECT_EQ(picked, (std::vector<std::size_t>{0, 2, 0, 2}));  // r3 lags, skipped
}

TEST(DbRouting, SingleNodeReadsArePrimaryByChoice) {
  std::vector<NodeStatus> nodes = {primary()};
  const ReadChoice c = choose_reader(nodes, kMaxLag, 0);
  EXPECT_EQ(*c.node, 0u);
  EXPECT_EQ(c.path, ReadPath::Primary);
}

TEST(DbRouting, GtidValidation) {
  EXPECT_TRUE(valid_gtid("0-1-42"));
  EXPECT_TRUE(valid_gtid("0-1-42,1-2-7"));
  EXPECT_TRUE(valid_gtid("4294967295-4294967295-18446744073709551615"));
  EXPECT_FALSE(valid_gtid(""));
  EXPECT_FALSE(valid_gtid("0-1"));
  EXPECT_FALSE(valid_gtid("0-1-"));
  EXPECT_FALSE(valid_gtid("-1-2"));
  EXPECT_FALSE(valid_gtid("0-1-2,"));
  EXPECT_FALSE(valid_gtid("0-1-2-3"));
  EXPECT_FALSE(valid_gtid("0-1-2, 1-2-3"));
  EXPECT_FALSE(valid_gtid("0-1-2'); DROP TABLE World; --"));
  EXPECT_FALSE(valid_gtid("0-1-123456789012345678901"));
  std::string list = "0-1-1";
  while (list.size() <= 256) {
    list += ",0-1-1";
  }
  EXPECT_FALSE(valid_gtid(list));
}

TEST(DbRouting, ConnectionErrors) {
  for (unsigned code : {2002u, 2006u, 2013u, 2055u, 1927u, 1317u, 1053u}) {
    EXPECT_TRUE(is_connection_error(code)) << code;
  }
  for (unsigned code : {0u, 1062u, 1064u, 1146u, 1290u, 1969u, 2031u}) {
    EXPECT_FALSE(is_connection_error(code)) << code;
  }
}

TEST(DbRouting, OnlyLockConflictsAreRetryable) {
  EXPECT_TRUE(QueryError("deadlock", 1213).retryable());
  EXPECT_TRUE(QueryError("lock wait timeout", 1205).retryable());
  EXPECT_FALSE(QueryError("syntax", 1064).retryable());
  EXPECT_FALSE(QueryError("duplicate key", 1062).retryable());
  EXPECT_FALSE(QueryError("app-side").retryable());
}

}  // namespace
}  // namespace webstack::db
