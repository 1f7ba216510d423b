// The GTID comparison `webstack db promote` waits on.
#include "lab/database.hpp"

#include <gtest/gtest.h>

namespace {

using webstack::lab::gtid_covers;

TEST(GtidCovers, PerDomainBySequenceNumber) {
  EXPECT_TRUE(gtid_covers("0-1-17", "0-1-17"));
  EXPECT_TRUE(gtid_covers("0-2-18", "0-1-17")) << "another server's later event in domain 0";
  EXPECT_FALSE(gtid_covers("0-1-16", "0-1-17"));
  EXPECT_TRUE(gtid_covers("0-1-17,1-3-4", "1-3-4"));
  EXPECT_FALSE(gtid_covers("0-1-17", "0-1-17,1-3-4")) << "domain 1 missing";
  EXPECT_TRUE(gtid_covers("0-1-5", "")) << "nothing to wait for";
  EXPECT_FALSE(gtid_covers("", "0-1-1"));
  EXPECT_FALSE(gtid_covers("garbage", "0-1-1")) << "not a GTID: nothing covered";
}

}  // namespace

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
  const auto kept = webstack::lab::mariadb_errors(err);
  EXPECT_EQ(kept.find("s3cretPassw0rd"), std::string::npos) << kept;
  EXPECT_EQ(kept.rfind("ERROR 1198 (HY000)", 0), 0u) << kept;
  EXPECT_EQ(webstack::lab::mariadb_errors("sh: 1: cannot open /x.sql: No such file\n"),
            "sh: 1: cannot open /x.sql: No such file");
  EXPECT_EQ(webstack::lab::mariadb_errors("CREATE USER 'a' IDENTIFIED BY 'pw'\n"),
            "(no error message)");
}

}  // namespace
