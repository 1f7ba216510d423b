// The database pair at run time: `webstack db promote`, rejoin and rebuild, the failover
// manager's controls. Which node is the primary now: lab/recorded.hpp.
#pragma once

#include <cstdio>
#include <string>
#include <string_view>

#include "failover/decide.hpp"
#include "lab/recorded.hpp"
#include "lab/site.hpp"
#include "topology/topology.hpp"

namespace webstack::lab {

// GTID position `have` includes `want` (failover/decide.hpp).
using failover::gtid_covers;

// `webstack db promote [HOST]`: makes replica HOST (default: the first replica) the
// primary, printing each step with its time:
//   1. fence the old primary: read_only (if it answers; in-flight writes finish first);
//   2. the new one applies everything it has received (and all the old primary had,
//      when it answers);
//   3. the new one stops replicating and becomes writable;
//   4. the old one (if it answers) replicates from the new one, with GTID;
//   5. <state>/primary names the new one.
// Throws std::runtime_error naming the step; a failure before step 3 leaves the old
// primary fenced and the target a replica (no two writable nodes, ever).
//   6. both nodes' my.cnf rendered again (read_only follows the roles across restarts).
// With automatic failover, a candidate lacking what the old primary (gone) committed
// without semi-sync (the manager's <state>/async-gtid) is refused, naming what would be
// lost, unless `force` (then the loss is printed, and the promotion goes on).
void promote(const topo::Topology& t, const SiteOptions& o, std::string_view target, bool force,
             std::FILE* out);

// `webstack db rejoin HOST`: a former primary (or any stopped replica) comes back as a
// read-only replica of the current primary, from its own GTID position.
void rejoin(const topo::Topology& t, const std::string& state_dir, std::string_view host,
            std::FILE* out);

// `webstack db rebuild HOST`: replaces HOST's data with a backup of the current primary
// (mariadb-backup, streamed over the lab network with TLS: socat, both ends' database
// certificates from the lab CA), after saving the transactions HOST holds that the
// primary lacks (a diverged former primary's) to <state>/errant/HOST-<UTC time>.sql
// (mariadb-binlog --verbose). The new data's replication position is recorded before
// anyone sees the node; it then replicates from the primary (the failover manager
// rejoins it where there is one). Prints each step with its time; throws
// std::invalid_argument for a host that is not a replica, std::runtime_error naming the
// step that failed (HOST's old data is kept as data/HOST/mysql.old until a rebuild ends).
void rebuild(const topo::Topology& t, const std::string& state_dir, std::string_view host,
             std::FILE* out);

// `webstack failover pause|resume|status`: the failover manager's switch (a file it
// looks for every round) and its state (asked from inside the monitor host). Throws
// std::invalid_argument when the topology's failover is not automatic.
void failover_control(const topo::Topology& t, const std::string& state_dir,
                      std::string_view action, std::FILE* out);

}  // namespace webstack::lab
