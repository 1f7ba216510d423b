#pragma once
// The one way webstack switches the primary side of semi-sync off and on again (which
// releases the commits waiting for a replica's acknowledgement, and reports the status
// at once): MariaDB 10.11 can hang for good in SET GLOBAL rpl_semi_sync_master_enabled =
// OFF while a semi-sync replica is connected (its ACK receiver thread never stops; seen
// in the nemesis campaign, docs/high-availability.md), and semi-sync then stays off.
// So the replicas' dump threads are ended first (a replica that is alive reconnects at
// once), and the switch happens only while none is connected.

#include <optional>
#include <string>

namespace webstack::failover {

// One compound statement (BEGIN NOT ATOMIC ... END: through the C API as it is; the
// mariadb client needs it wrapped by `for_mariadb_client`). Sets the semi-sync timeout
// to `timeout_ms` when given (whether or not it then switches); with `only_if_read_only`,
// does nothing on a writable server. Ending another account's dump thread needs PROCESS
// (to see it) and CONNECTION ADMIN: root has them, the failover manager's account does
// not (it stops the replica's IO thread instead, manager.cpp). Not atomic: a replica can
// connect between the last look and the switch (a window of microseconds).
// Waits at most half a second for the dump threads to end, and switches nothing if a
// replica is still connected then: one that is alive reconnects at once, and its new
// connection acknowledges the waiting commits (the release is for a replica that went
// silent: frozen, cut off, dead).
std::string release_semi_sync_sql(std::optional<long long> timeout_ms, bool only_if_read_only);

// `statement` for the mariadb command-line client, which splits its input at ';'.
std::string for_mariadb_client(const std::string& statement);

}  // namespace webstack::failover
