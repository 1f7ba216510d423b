// The one way webstack switches semi-sync off and on (failover/semi_sync_sql.hpp), on a
// real MariaDB pair of its own: with the replica frozen (connected, silent) and a commit
// waiting for it, the replica's dump thread is ended first, the switch made with none
// connected (MariaDB 10.11 can hang in it otherwise), the commit released; thawed, the
// replica comes back by itself and acknowledges again. The read-only guard leaves a
// writable server alone.
#include <gtest/gtest.h>

#include <signal.h>

#include <future>
#include <string>

#include "common/text.hpp"
#include "eventually.hpp"
#include "failover/semi_sync_sql.hpp"
#include "mariadb_pair.hpp"

namespace webstack::it {
namespace {

using namespace std::chrono_literals;

TEST(SemiSyncRelease, EndsTheReplicasDumpThreadSwitchesAndTheReplicaAcknowledgesAgain) {
  MariaDbPair db;
  constexpr int kPrimary = MariaDbPair::kPrimary;
  const auto primary = [&](const std::string& sql) {
    return webstack::text::trim(db.root_sql(kPrimary, sql));
  };
  const auto status = [&](const std::string& name) {
    return primary(
        "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = '" +
        name + "'");
  };
  const auto dump_threads = [&] {
    return primary("SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND = 'Binlog Dump'");
  };
  // The table first: with semi-sync on and no replica acknowledging yet, a commit waits.
  primary(
      "CREATE DATABASE semi_sync_release; CREATE TABLE semi_sync_release.t (i INT); "
      "SET GLOBAL rpl_semi_sync_master_enabled = ON; "
      "SET GLOBAL rpl_semi_sync_master_timeout = 86400000");
  db.root_sql(MariaDbPair::kReplica,
              "SET GLOBAL rpl_semi_sync_slave_enabled = ON; STOP SLAVE IO_THREAD; "
              "START SLAVE IO_THREAD");
  ASSERT_TRUE(eventually([&] { return status("RPL_SEMI_SYNC_MASTER_CLIENTS") == "1"; }, 20s, 50ms))
      << db.error_log_tail(kPrimary);
  const std::string dump = dump_threads();
  ASSERT_FALSE(dump.empty());

  // Guarded by read_only: a writable server is left as it is.
  db.root_sql(kPrimary, failover::for_mariadb_client(failover::release_semi_sync_sql(1000, true)));
  EXPECT_EQ(primary("SELECT @@GLOBAL.rpl_semi_sync_master_timeout"), "86400000");
  EXPECT_EQ(dump_threads(), dump);

  // The replica freezes (SIGSTOP: its connection stays, silent); a commit waits for it.
  const pid_t replica = db.pid(MariaDbPair::kReplica);
  ASSERT_GT(replica, 0);
  // Declared before the thaw: on a failed assertion the replica is thawed first, and the
  // waiting commit can end before its future is destroyed.
  std::future<std::string> commit;
  ::kill(replica, SIGSTOP);
  struct Thaw {
    pid_t pid;
    ~Thaw() { ::kill(pid, SIGCONT); }
  } thaw{replica};
  commit = std::async(std::launch::async,
                      [&] { return primary("INSERT INTO semi_sync_release.t VALUES (0)"); });
  ASSERT_TRUE(
      eventually([&] { return status("RPL_SEMI_SYNC_MASTER_WAIT_SESSIONS") == "1"; }, 20s, 50ms));

  db.root_sql(kPrimary, failover::for_mariadb_client(failover::release_semi_sync_sql(1000, false)));
  EXPECT_EQ(commit.wait_for(20s), std::future_status::ready)
      << "the waiting commit was not released";
  EXPECT_EQ(primary("SELECT @@GLOBAL.rpl_semi_sync_master_timeout"), "1000");
  EXPECT_NE(dump_threads(), dump) << "the replica's dump thread was not ended";
  const std::string log = db.error_log_tail(kPrimary, 16384);
  const auto off = log.rfind("Semi-sync replication switched OFF.");
  ASSERT_NE(off, std::string::npos) << log;
  EXPECT_NE(log.find("Stopping ack receiver thread", off), std::string::npos) << log;
  EXPECT_NE(log.find("Semi-sync replication enabled on the master.", off), std::string::npos)
      << log;

  ::kill(replica, SIGCONT);
  // The replica reconnects by itself (MASTER_CONNECT_RETRY=1) and acknowledges a commit.
  ASSERT_TRUE(eventually([&] { return status("RPL_SEMI_SYNC_MASTER_CLIENTS") == "1"; }, 20s, 50ms))
      << db.error_log_tail(kPrimary);
  const long long acknowledged = std::stoll(status("RPL_SEMI_SYNC_MASTER_YES_TX"));
  primary("INSERT INTO semi_sync_release.t VALUES (1)");
  EXPECT_EQ(std::stoll(status("RPL_SEMI_SYNC_MASTER_YES_TX")), acknowledged + 1);
  EXPECT_EQ(status("RPL_SEMI_SYNC_MASTER_STATUS"), "ON");
}

}  // namespace
}  // namespace webstack::it
