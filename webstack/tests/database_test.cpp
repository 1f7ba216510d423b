// The mariadb client's error lines `webstack db` commands may show.
#include "lab/database.hpp"

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
  const auto kept = webstack::lab::mariadb_errors(err);
  EXPECT_EQ(kept.find("s3cretPassw0rd"), std::string::npos) << kept;
  EXPECT_EQ(kept.rfind("ERROR 1198 (HY000)", 0), 0u) << kept;
  EXPECT_EQ(webstack::lab::mariadb_errors("sh: 1: cannot open /x.sql: No such file\n"),
            "sh: 1: cannot open /x.sql: No such file");
  EXPECT_EQ(webstack::lab::mariadb_errors("CREATE USER 'a' IDENTIFIED BY 'pw'\n"),
            "(no error message)");
}

}  // namespace
