#include "failover/semi_sync_sql.hpp"

#include <fmt/format.h>

#include "failover/sql_session.hpp"

namespace webstack::failover {

std::string release_semi_sync_sql(std::optional<long long> timeout_ms, bool only_if_read_only) {
  const std::string clients = global_status("RPL_SEMI_SYNC_MASTER_CLIENTS");
  return fmt::format(
      "BEGIN NOT ATOMIC DECLARE n INT DEFAULT 0; "
      // A dump thread that ended meanwhile: its KILL fails with 1094 (unknown thread).
      "DECLARE CONTINUE HANDLER FOR 1094 BEGIN END; "
      "IF {0} THEN {2}"
      "FOR t IN (SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND = 'Binlog Dump') "
      "DO EXECUTE IMMEDIATE CONCAT('KILL CONNECTION ', t.ID); END FOR; "
      "WHILE n < 10 AND {1} <> '0' DO DO SLEEP(0.05); SET n = n + 1; END WHILE; "
      "IF {1} = '0' THEN "
      "SET GLOBAL rpl_semi_sync_master_enabled = OFF; "
      "SET GLOBAL rpl_semi_sync_master_enabled = ON; END IF; "
      "END IF; END",
      only_if_read_only ? "@@GLOBAL.read_only = 1" : "TRUE", clients,
      timeout_ms ? fmt::format("SET GLOBAL rpl_semi_sync_master_timeout = {}; ", *timeout_ms)
                 : std::string());
}

std::string for_mariadb_client(const std::string& statement) {
  return "\nDELIMITER //\n" + statement + "\n//\nDELIMITER ;\n";
}

}  // namespace webstack::failover
