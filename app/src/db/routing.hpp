// Pure routing decisions for the database cluster: which node takes writes, which serves
// reads, which GTIDs and error codes mean what. No Asio, no MariaDB headers, so the rules
// are unit-tested without a server (app/tests/db_routing_test.cpp).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "core/metrics.hpp"

namespace webstack::db {

// The state of one node as this thread's prober last saw it.
struct NodeStatus {
  std::string name;
  bool reachable = false;
  bool writable = false;               // @@read_only = 0
  bool replicating = false;            // a replica whose IO and SQL threads both run
  std::optional<std::int64_t> lag_ms;  // Seconds_Behind_Master * 1000, replicas only
  std::string last_error;
  std::chrono::system_clock::time_point checked_at{};
};

// The node that takes writes: the single reachable writable node. None when no node is
// writable, and none when several are (split brain, or a promotion half done): refusing
// writes for a moment beats writing to both sides.
std::optional<std::size_t> choose_writer(std::span<const NodeStatus> nodes);

// A replica fit to serve reads: reachable, read-only, both replication threads running,
// and a known lag within `max_lag`.
bool healthy_replica(const NodeStatus& node, std::chrono::milliseconds max_lag);

struct ReadChoice {
  std::optional<std::size_t> node;  // none: nothing can serve reads (503)
  ReadPath path = ReadPath::Replica;
};

// Reads go to a healthy replica (round-robin by `rr` among several), else to the writer
// (ReadPath::Fallback, or ReadPath::Primary when only one node is configured), else to the
// first reachable node (ReadPath::Fallback): with the primary down, a replica whose IO
// thread cannot connect still answers reads.
ReadChoice choose_reader(std::span<const NodeStatus> nodes, std::chrono::milliseconds max_lag,
                         std::uint64_t rr);

// A MariaDB GTID position as MASTER_GTID_WAIT accepts it: "domain-server-seq" triples of
// decimal numbers, comma-separated, at most 256 characters. Anything else is ignored by
// the read-your-writes path, so client input never reaches SQL unchecked.
bool valid_gtid(std::string_view gtid);

// Error codes (client CR_* or server ER_*) after which the connection cannot be trusted:
// it is closed and replaced, never returned to its pool.
bool is_connection_error(unsigned code);

}  // namespace webstack::db
