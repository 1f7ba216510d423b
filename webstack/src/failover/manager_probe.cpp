// The failover manager's questions: each database node about itself, each app about how
// it sees the nodes.
#include <fmt/format.h>
#include <boost/json.hpp>

#include <chrono>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/process.hpp"
#include "common/text.hpp"
#include "failover/manager_detail.hpp"
#include "failover/semi_sync_sql.hpp"

namespace webstack::failover::manager_detail {

namespace {

using namespace std::chrono_literals;

// The SHOW SLAVE STATUS row's view of replication.
void read_replication(SqlSession& s, NodeView& v) {
  const auto rows = s.query("SHOW SLAVE STATUS");
  if (rows.empty()) return;
  const auto& r = rows.front();
  const auto get = [&](const char* k) {
    const auto it = r.find(k);
    return it == r.end() ? std::string() : it->second;
  };
  v.master_host = get("Master_Host");
  v.io_running = get("Slave_IO_Running") == "Yes";
  v.sql_running = get("Slave_SQL_Running") == "Yes";
  v.relay_applied = get("Relay_Master_Log_File") == get("Master_Log_File") &&
                    get("Exec_Master_Log_Pos") == get("Read_Master_Log_Pos");
  const std::string io_errno = get("Last_IO_Errno");
  v.io_errno = io_errno.empty() ? 0 : std::atoi(io_errno.c_str());
}

}  // namespace

NodeView probe_node(SqlSession& s, const DbNode& n) {
  NodeView v;
  v.name = n.name;
  v.address = n.address;
  try {
    const auto rows = s.query(
        "SELECT @@GLOBAL.read_only AS ro, @@GLOBAL.gtid_current_pos AS cur, "
        "@@GLOBAL.gtid_binlog_pos AS bin, " +
        global_status("RPL_SEMI_SYNC_MASTER_STATUS") + " AS ss, " +
        global_status("RPL_SEMI_SYNC_MASTER_NO_TX") + " AS notx");
    if (rows.empty()) throw std::runtime_error("no answer to SELECT @@read_only");
    const Row& r = rows.front();
    v.writable = r.at("ro") == "0";
    v.gtid_current_pos = r.at("cur");
    v.gtid_binlog_pos = r.at("bin");
    if (!r.at("ss").empty() && !r.at("notx").empty()) {
      v.semi_sync_known = true;
      v.semi_sync_on = r.at("ss") == "ON";
      v.semi_sync_no_tx = std::stoull(r.at("notx"));
    }
    read_replication(s, v);
    v.reachable = true;
  } catch (const std::exception& e) {
    v.error = e.what();
  }
  return v;
}

// The app's GET /api/info: {"db": {"nodes": [{"name": "10.77.0.11:3306", "reachable":
// true, "writable": true, ...}]}}. Node names there are address:port.
AppView probe_app(const AppEndpoint& a, const std::vector<DbNode>& db,
                  std::chrono::milliseconds timeout) {
  AppView v;
  v.name = a.name;
  const auto secs = fmt::format("{:.1f}", std::chrono::duration<double>(timeout).count());
  const auto r = run({"curl", "-sS", "--fail", "--max-time", secs, a.url}, timeout + 2s);
  if (r.exit_code != 0) {
    v.error = text::trim(r.err).substr(0, 120);
    return v;
  }
  try {
    const auto info = json::parse(r.out);
    for (const auto& node : info.at("db").at("nodes").as_array()) {
      const std::string name(node.at("name").as_string());
      for (const auto& d : db) {
        if (name == fmt::format("{}:{}", d.address, d.port) || name == d.name) {
          v.nodes.push_back(
              {d.name, node.at("reachable").as_bool(), node.at("writable").as_bool()});
        }
      }
    }
    v.answered = true;
  } catch (const std::exception& e) {
    v.error = std::string("not the app's /api/info: ") + e.what();
  }
  return v;
}

}  // namespace webstack::failover::manager_detail
