// The failover manager (`webstack-failover manager CONFIG`), under s6 on the monitor host,
// and the fencing agent (`webstack-failover agent CONFIG`), under s6 on each database host.
//
// The manager watches the database nodes itself and asks every web host's app how it sees
// them. When the site has had no writable primary for failover_after, by its own view and
// by every app that answers, it promotes the most advanced reachable replica; it fences a
// second writable node at once, and makes a former primary the new one's replica. Each
// decision goes to its log (stdout, kept by s6-log) with its evidence.
//
// The agent is the other half of "no split brain": a primary that cannot reach a majority
// of its witnesses (the manager, the other database nodes) for fence_after fences itself
// (SIGKILL of mariadbd: s6 restarts it read-only, and crash recovery as a replica drops
// what no replica acknowledged). fence_after < failover_after, so a
// primary cut off from the manager is fenced before the manager promotes another.
#pragma once

#include "failover/config.hpp"

namespace webstack::failover {

// Both run until SIGTERM or SIGINT; they return the process exit code.
int run_manager(const ManagerConfig& c);
int run_agent(const AgentConfig& c);

}  // namespace webstack::failover
