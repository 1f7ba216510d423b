// Proves the MariaDbPair fixture: seeded data on both nodes, replication, read_only replica,
// least-privilege accounts (app, probe, repl), restart of the replica.
#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

#include "common/text.hpp"
#include "mariadb_pair.hpp"

namespace webstack::it {
namespace {

// SHOW GRANTS FOR `account`, one grant a line, without the password hash.
std::vector<std::string> grants_of(const MariaDbPair& db, int node, const std::string& account) {
  std::vector<std::string> grants;
  std::istringstream lines(db.root_sql(node, "SHOW GRANTS FOR " + account));
  for (std::string line; std::getline(lines, line);) {
    if (const auto hash = line.find(" IDENTIFIED BY PASSWORD "); hash != std::string::npos) {
      line.resize(hash);
    }
    grants.push_back(line);
  }
  return grants;
}

class MariaDbPairTest : public ::testing::Test {
 protected:
  MariaDbPair& db = MariaDbPair::shared();
};

TEST_F(MariaDbPairTest, NodesListenOnDistinctLoopbackPorts) {
  EXPECT_NE(db.port(MariaDbPair::kPrimary), 0);
  EXPECT_NE(db.port(MariaDbPair::kReplica), 0);
  EXPECT_NE(db.port(MariaDbPair::kPrimary), db.port(MariaDbPair::kReplica));
  EXPECT_EQ(db.db_nodes(),
            db.address(MariaDbPair::kPrimary) + "," + db.address(MariaDbPair::kReplica));
  EXPECT_TRUE(db.running(MariaDbPair::kPrimary));
  EXPECT_TRUE(db.running(MariaDbPair::kReplica));
}

TEST_F(MariaDbPairTest, ReplicaHasTheSeedData) {
  for (int node : {MariaDbPair::kPrimary, MariaDbPair::kReplica}) {
    SCOPED_TRACE(node);
    EXPECT_EQ(db.root_sql(node,
                          "SELECT COUNT(*), MIN(id), MAX(id), MIN(randomNumber) >= 1, "
                          "MAX(randomNumber) <= 10000 FROM webstack.World"),
              "10000\t1\t10000\t1\t1\n");
    EXPECT_EQ(db.root_sql(node, "SELECT COUNT(*) FROM webstack.Fortune"), "12\n");
    EXPECT_EQ(db.root_sql(node, "SELECT message FROM webstack.Fortune WHERE id = 12"),
              "フレームワークのベンチマーク\n");
    EXPECT_EQ(
        db.root_sql(node, "SELECT message FROM webstack.Fortune WHERE id = 11"),
        "<script>alert(\"This should not be displayed in a browser alert box.\");</script>\n");
    EXPECT_EQ(db.root_sql(node, "SELECT message FROM webstack.Fortune WHERE id = 6"),
              "Emacs is a nice operating system, but I prefer UNIX. — Tom Christaensen\n");
  }
  // Same random numbers on both: the replica replayed the primary's rows.
  const char* checksum = "SELECT SUM(id * randomNumber) FROM webstack.World";
  EXPECT_EQ(db.root_sql(MariaDbPair::kPrimary, checksum),
            db.root_sql(MariaDbPair::kReplica, checksum));
}

TEST_F(MariaDbPairTest, SchemaAndSeedAreIdempotent) {
  const char* checksum = "SELECT COUNT(*), SUM(id * randomNumber) FROM webstack.World";
  const auto before = db.root_sql(MariaDbPair::kPrimary, checksum);
  db.root_sql_file(MariaDbPair::kPrimary, WEBSTACK_SQL_DIR "/schema.sql");
  db.root_sql_file(MariaDbPair::kPrimary, WEBSTACK_SQL_DIR "/seed.sql");
  EXPECT_EQ(db.root_sql(MariaDbPair::kPrimary, checksum), before);
  EXPECT_EQ(db.root_sql(MariaDbPair::kPrimary, "SELECT COUNT(*) FROM webstack.Fortune"), "12\n");
  db.wait_replica_caught_up();  // and replication did not break on the repeated DDL
  EXPECT_EQ(db.root_sql(MariaDbPair::kReplica, checksum), before);
}

TEST_F(MariaDbPairTest, InsertOnPrimaryReachesReplica) {
  const auto r = db.user_sql(MariaDbPair::kPrimary,
                             "INSERT INTO messages (author, body) VALUES ('fixture', 'héllo ✓'); "
                             "SELECT LAST_INSERT_ID()");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string id = webstack::text::trim(r.out);
  db.wait_replica_caught_up();
  EXPECT_EQ(db.root_sql(MariaDbPair::kReplica,
                        "SELECT author, body FROM webstack.messages WHERE id = " + id),
            "fixture\théllo ✓\n");
}

TEST_F(MariaDbPairTest, ReplicaIsReadOnlyAndReplicating) {
  EXPECT_EQ(db.root_sql(MariaDbPair::kReplica, "SELECT @@GLOBAL.read_only"), "1\n");
  EXPECT_EQ(db.root_sql(MariaDbPair::kPrimary, "SELECT @@GLOBAL.read_only"), "0\n");
  auto status = db.slave_status(MariaDbPair::kReplica);
  EXPECT_EQ(status["Slave_IO_Running"], "Yes");
  EXPECT_EQ(status["Slave_SQL_Running"], "Yes");
  EXPECT_EQ(status["Using_Gtid"], "Slave_Pos");
  EXPECT_EQ(status["Master_Port"], std::to_string(db.port(MariaDbPair::kPrimary)));
  EXPECT_TRUE(db.slave_status(MariaDbPair::kPrimary).empty());

  const auto r =
      db.user_sql(MariaDbPair::kReplica, "INSERT INTO messages (author, body) VALUES ('x', 'y')");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("ERROR 1290"), std::string::npos) << r.err;  // --read-only
}

// Least privilege (sql/users.sql.in), on both nodes: the replica got the accounts through the
// binlog. SHOW GRANTS lists USAGE for an account without global privileges.
void expect_least_privilege(const MariaDbPair& db, int node) {
  SCOPED_TRACE("node " + std::to_string(node));
  EXPECT_EQ(grants_of(db, node, "'webstack'@'%'"),
            (std::vector<std::string>{
                "GRANT USAGE ON *.* TO `webstack`@`%`",
                "GRANT SELECT, INSERT, UPDATE, DELETE ON `webstack`.* TO `webstack`@`%`"}));
  EXPECT_EQ(grants_of(db, node, "'webstack_probe'@'%'"),
            (std::vector<std::string>{"GRANT SLAVE MONITOR ON *.* TO `webstack_probe`@`%`"}));
  EXPECT_EQ(grants_of(db, node, "'repl'@'%'"),
            (std::vector<std::string>{"GRANT REPLICATION SLAVE ON *.* TO `repl`@`%`"}));
}

TEST_F(MariaDbPairTest, AccountsHoldOnlyWhatTheyNeed) {
  expect_least_privilege(db, MariaDbPair::kPrimary);
  expect_least_privilege(db, MariaDbPair::kReplica);
}

TEST_F(MariaDbPairTest, AppUserHasDataAccessOnly) {
  const auto create = db.user_sql(MariaDbPair::kPrimary, "CREATE TABLE webstack.nope (id INT)");
  EXPECT_NE(create.exit_code, 0);
  EXPECT_NE(create.err.find("ERROR 1142"), std::string::npos) << create.err;  // denied

  const auto other_db = db.user_sql(MariaDbPair::kPrimary, "SELECT COUNT(*) FROM mysql.user");
  EXPECT_NE(other_db.exit_code, 0);
  EXPECT_NE(other_db.err.find("ERROR 1142"), std::string::npos) << other_db.err;

  // Replication status is the probe account's, not the app's.
  const auto status = db.user_sql(MariaDbPair::kReplica, "SHOW SLAVE STATUS");
  EXPECT_NE(status.exit_code, 0);
  EXPECT_NE(status.err.find("ERROR 1227"), std::string::npos) << status.err;  // SLAVE MONITOR

  const auto wrong_password = db.user_sql(MariaDbPair::kPrimary, "SELECT 1", "webstack", "wrong");
  EXPECT_NE(wrong_password.exit_code, 0);
  EXPECT_NE(wrong_password.err.find("ERROR 1045"), std::string::npos) << wrong_password.err;

  const auto read = db.user_sql(MariaDbPair::kReplica, "SELECT COUNT(*) FROM World");
  ASSERT_EQ(read.exit_code, 0) << read.err;  // the account replicated too
  EXPECT_EQ(read.out, "10000\n");

  // Read-your-writes on a replica needs no privilege beyond these.
  const auto ryw = db.user_sql(MariaDbPair::kReplica,
                               "SELECT MASTER_GTID_WAIT(@@GLOBAL.gtid_slave_pos, 1), @@last_gtid");
  ASSERT_EQ(ryw.exit_code, 0) << ryw.err;
  EXPECT_EQ(ryw.out, "0\t\n");
}

TEST_F(MariaDbPairTest, ProbeUserSeesReplicationStatusOnly) {
  // What the app's topology probe runs, without a schema (it has none).
  const auto probe = db.user_sql(MariaDbPair::kReplica, "SELECT @@read_only; SHOW SLAVE STATUS",
                                 db.probe_user(), db.probe_password(), "");
  ASSERT_EQ(probe.exit_code, 0) << probe.err;
  EXPECT_EQ(probe.out.rfind("1\n", 0), 0u) << probe.out;
  EXPECT_NE(probe.out.find("\t127.0.0.1\trepl\t"), std::string::npos) << probe.out;
  const auto on_primary =
      db.user_sql(MariaDbPair::kPrimary, "SELECT @@read_only; SHOW SLAVE STATUS", db.probe_user(),
                  db.probe_password(), "");
  ASSERT_EQ(on_primary.exit_code, 0) << on_primary.err;
  EXPECT_EQ(on_primary.out, "0\n");  // not a replica: no row

  const auto read = db.user_sql(MariaDbPair::kReplica, "SELECT COUNT(*) FROM webstack.World",
                                db.probe_user(), db.probe_password(), "");
  EXPECT_NE(read.exit_code, 0);
  EXPECT_NE(read.err.find("ERROR 1142"), std::string::npos) << read.err;
  const auto write = db.user_sql(MariaDbPair::kPrimary,
                                 "INSERT INTO webstack.messages (author, body) VALUES ('p', 'x')",
                                 db.probe_user(), db.probe_password(), "");
  EXPECT_NE(write.exit_code, 0);
  EXPECT_NE(write.err.find("ERROR 1142"), std::string::npos) << write.err;
  const auto schema =
      db.user_sql(MariaDbPair::kPrimary, "SELECT 1", db.probe_user(), db.probe_password());
  EXPECT_NE(schema.exit_code, 0);
  EXPECT_NE(schema.err.find("ERROR 1044"), std::string::npos) << schema.err;
}

TEST_F(MariaDbPairTest, ReplUserReadsNoData) {
  const auto read = db.user_sql(MariaDbPair::kPrimary, "SELECT COUNT(*) FROM webstack.World",
                                "repl", db.repl_password(), "");
  EXPECT_NE(read.exit_code, 0);
  EXPECT_NE(read.err.find("ERROR 1142"), std::string::npos) << read.err;
  const auto messages = db.user_sql(MariaDbPair::kPrimary, "SELECT * FROM webstack.messages",
                                    "repl", db.repl_password(), "");
  EXPECT_NE(messages.exit_code, 0);
  EXPECT_NE(messages.err.find("ERROR 1142"), std::string::npos) << messages.err;
}

// Running users.sql.in again changes nothing, and takes SLAVE MONITOR back from an app user
// made by an older version of the file.
TEST_F(MariaDbPairTest, UsersSqlIsIdempotentAndRevokesTheOldGrant) {
  struct Revoke {  // whatever happens, later tests see the least-privilege app user
    const MariaDbPair& db;
    ~Revoke() {
      db.root_sql(MariaDbPair::kPrimary, "REVOKE SLAVE MONITOR ON *.* FROM 'webstack'@'%'");
      db.wait_replica_caught_up();
    }
  } revoke{db};
  db.root_sql(MariaDbPair::kPrimary, "GRANT SLAVE MONITOR ON *.* TO 'webstack'@'%'");
  db.root_sql(MariaDbPair::kPrimary, db.users_sql());
  db.root_sql(MariaDbPair::kPrimary, db.users_sql());
  db.wait_replica_caught_up();
  expect_least_privilege(db, MariaDbPair::kPrimary);
  expect_least_privilege(db, MariaDbPair::kReplica);
  // The existing accounts kept their passwords.
  EXPECT_EQ(db.user_sql(MariaDbPair::kReplica, "SELECT 1").exit_code, 0);
  EXPECT_EQ(db.user_sql(MariaDbPair::kReplica, "SELECT 1", db.probe_user(), db.probe_password(), "")
                .exit_code,
            0);
}

TEST_F(MariaDbPairTest, StoppedReplicaCatchesUpAfterStart) {
  db.stop(MariaDbPair::kReplica);
  EXPECT_FALSE(db.running(MariaDbPair::kReplica));
  db.root_sql(MariaDbPair::kPrimary,
              "UPDATE webstack.World SET randomNumber = 4242 WHERE id = 4242");
  db.start(MariaDbPair::kReplica);
  ASSERT_TRUE(db.running(MariaDbPair::kReplica));
  db.wait_replica_caught_up();
  EXPECT_EQ(
      db.root_sql(MariaDbPair::kReplica, "SELECT randomNumber FROM webstack.World WHERE id = 4242"),
      "4242\n");
  EXPECT_EQ(db.root_sql(MariaDbPair::kReplica, "SELECT @@GLOBAL.read_only"), "1\n");
}

TEST_F(MariaDbPairTest, ReplicaReconnectsAfterPrimaryRestart) {
  db.stop(MariaDbPair::kPrimary);
  EXPECT_FALSE(db.running(MariaDbPair::kPrimary));
  db.start(MariaDbPair::kPrimary);
  db.root_sql(MariaDbPair::kPrimary, "UPDATE webstack.World SET randomNumber = 777 WHERE id = 777");
  db.wait_replica_caught_up();  // the replica's I/O thread retries every second
  EXPECT_EQ(
      db.root_sql(MariaDbPair::kReplica, "SELECT randomNumber FROM webstack.World WHERE id = 777"),
      "777\n");
  EXPECT_EQ(db.slave_status(MariaDbPair::kReplica)["Slave_IO_Running"], "Yes");
}

TEST_F(MariaDbPairTest, RootSqlReportsErrors) {
  try {
    db.root_sql(MariaDbPair::kPrimary, "SELECT * FROM webstack.does_not_exist");
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("doesn't exist"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace webstack::it
