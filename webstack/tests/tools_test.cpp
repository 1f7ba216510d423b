// The tool clients' parsers: the mariadb client's error lines `webstack db` commands may
// show, vertical results, s6-svstat lines and HAProxy's show stat CSV.
#include "tools/haproxy.hpp"
#include "tools/mariadb.hpp"
#include "tools/s6.hpp"

#include <gtest/gtest.h>

namespace {

// A failed CHANGE MASTER read from a file: the client echoes the statement (with the
// replication password) between dashes; only its ERROR line may reach a message.
TEST(MariadbErrors, KeepsTheErrorLinesAndNeverTheEchoedStatement) {
  const std::string err =
      "--------------\n"
      "CHANGE MASTER TO MASTER_HOST='10.0.0.11', MASTER_PASSWORD='s3cretPassw0rd'\n"
      "--------------\n"
      "\n"
      "ERROR 1198 (HY000) at line 1: This operation cannot be performed as you have a "
      "running slave ''; run STOP SLAVE '' first\n";
  const auto kept = webstack::tools::mariadb_errors(err);
  EXPECT_EQ(kept.find("s3cretPassw0rd"), std::string::npos) << kept;
  EXPECT_EQ(kept.rfind("ERROR 1198 (HY000)", 0), 0u) << kept;
  EXPECT_EQ(webstack::tools::mariadb_errors("sh: 1: cannot open /x.sql: No such file\n"),
            "sh: 1: cannot open /x.sql: No such file");
  EXPECT_EQ(webstack::tools::mariadb_errors("CREATE USER 'a' IDENTIFIED BY 'pw'\n"),
            "(no error message)");
}

TEST(ParseVertical, NamesAndValuesOfAVerticalResult) {
  const auto kv = webstack::tools::parse_vertical(
      "*************************** 1. row ***************************\n"
      "   Slave_IO_Running: Yes\n"
      "Seconds_Behind_Master: NULL\n"
      "         Last_Error: a: b\n");
  EXPECT_EQ(kv.at("Slave_IO_Running"), "Yes");
  EXPECT_EQ(kv.at("Seconds_Behind_Master"), "NULL");
  EXPECT_EQ(kv.at("Last_Error"), "a: b");
}

TEST(ParseSvstat, UpWithPidAndUptimeAndDown) {
  webstack::tools::ServiceState up;
  webstack::tools::parse_svstat("up (pid 4242) 17 seconds, normally up", up);
  EXPECT_TRUE(up.up);
  EXPECT_EQ(up.pid, 4242);
  EXPECT_EQ(up.seconds, 17);
  webstack::tools::ServiceState down;
  webstack::tools::parse_svstat("down (exitcode 0) 3 seconds, normally up, ready 3 seconds", down);
  EXPECT_FALSE(down.up);
  EXPECT_EQ(down.pid, -1);
  EXPECT_EQ(down.seconds, 3);
}

TEST(ParseShowStat, TheServersOfOneBackendInOrder) {
  const std::string csv =
      "# pxname,svname,qcur,scur,stot,status,check_status\n"
      "web,FRONTEND,,0,5,OPEN,\n"
      "web,web-01,0,2,100,UP,L7OK\n"
      "web,web-02,0,0,90,DOWN,L4CON\n"
      "web,BACKEND,0,2,190,UP,\n"
      "stats,stats-01,0,0,1,UP,L7OK\n";
  const auto servers = webstack::tools::parse_show_stat(csv, "web");
  ASSERT_EQ(servers.size(), 2u);
  EXPECT_EQ(servers[0].name, "web-01");
  EXPECT_EQ(servers[0].sessions, 2);
  EXPECT_EQ(servers[0].sessions_total, 100);
  EXPECT_EQ(servers[1].status, "DOWN");
  EXPECT_EQ(servers[1].check, "L4CON");
  EXPECT_THROW(webstack::tools::parse_show_stat("no header\n", "web"), std::runtime_error);
}

}  // namespace
