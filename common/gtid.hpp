// GTID positions as MariaDB prints them ("0-1-17,1-2-5": domain-server-sequence, one per
// domain), compared the way gtid_strict_mode allows: per domain, by sequence number. Shared
// by the app (read-your-writes on a node that is not a replica), the failover manager and
// the lab (common/).
#pragma once

#include <string>

namespace webstack {

// Position `have` includes `want`: every domain of `want` is in `have` with a sequence
// number at least as high ("" wants nothing; what is not a GTID counts as missing).
bool gtid_covers(const std::string& have, const std::string& want);

}  // namespace webstack
