// The failover manager (`webstack-failover manager CONFIG`), under s6 on the monitor host,
// and the fencing agent (`webstack-failover agent CONFIG`), under s6 on each database host.
//
// The manager watches the database nodes itself and asks every web host's app how it sees
// them. When the site has had no writable primary for failover_after, by its own view and
// by every app that answers, it deposes the primary, waits until it can hold no lease
// (failover/lease.hpp), and promotes the most advanced reachable replica; a former primary
// becomes the new one's replica. Each decision goes to its log (stdout) with its evidence.
//
// The agent holds its node's lease and keeps the database port's nftables gate: only the
// lease holder may be writable and reachable; a writable node replaced by another primary
// is killed (s6 or systemd restarts it read-only, and crash recovery as a replica drops
// what no replica acknowledged).
#pragma once

#include "failover/config.hpp"

namespace webstack::failover {

// Both run until SIGTERM or SIGINT; they return the process exit code.
int run_manager(const ManagerConfig& c);
int run_agent(const AgentConfig& c);

}  // namespace webstack::failover
