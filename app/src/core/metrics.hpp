// Prometheus metrics without a lock on the request path: each I/O thread owns one
// MetricsShard and is its only writer (relaxed atomics); /metrics, served by any
// thread, sums the shards when it renders.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/route.hpp"

namespace webstack {

// Where a read was served from: the replica, the primary by choice (read-your-writes
// wait failed, no replica configured), or the primary because no replica was healthy.
enum class ReadPath : std::uint8_t { Replica, Primary, Fallback, Count };
std::string_view read_path_name(ReadPath p);

// A read-your-writes check (a read that named the client's last GTID): the node read
// from held that write (a replica's wait, or the position of a node read with no
// primary), or it did not (the read went to the primary instead, or was refused).
enum class RywOutcome : std::uint8_t { CaughtUp, Behind, Count };
std::string_view ryw_outcome_name(RywOutcome o);

// What became of a write with an Idempotency-Key: stored (the first run committed),
// replayed (answered from the stored key), mismatch (the key came with another request:
// 422), in_progress (its first run held the key past the lock wait: 409), retried (an
// attempt run again after an unknown outcome: counted per retry), expired (keys deleted
// by the cleanup).
enum class KeyedOutcome : std::uint8_t {
  Stored,
  Replayed,
  Mismatch,
  InProgress,
  Retried,
  Expired,
  Count
};
std::string_view keyed_outcome_name(KeyedOutcome o);

// Status codes kept apart; anything else is counted under "other".
inline constexpr std::array<unsigned, 16> kTrackedStatuses = {
    200, 201, 301, 302, 303, 400, 404, 405, 408, 409, 413, 422, 431, 500, 503, 504};

// Histogram bucket upper bounds, in seconds.
inline constexpr std::array<double, 14> kLatencyBuckets = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0};

class MetricsShard {
 public:
  explicit MetricsShard(std::size_t db_nodes);

  void record_request(Route route, unsigned status, std::chrono::nanoseconds latency);
  void in_flight_add(int delta);
  void read_path(ReadPath path);
  void read_your_writes(RywOutcome outcome);
  void keyed_write(KeyedOutcome outcome, std::uint64_t n = 1);
  // Database pool, per node index (the order of db.nodes).
  void pool_in_use(std::size_t node, std::int64_t in_use);
  void pool_open(std::size_t node, std::int64_t open);
  void pool_wait(std::size_t node);          // a request had to wait for a connection
  void pool_wait_timeout(std::size_t node);  // ... and gave up (503)
  void replica_lag(std::size_t node, std::int64_t lag_ms);  // -1: unknown / not a replica

 private:
  friend class Metrics;
  using Counter = std::atomic<std::uint64_t>;
  static constexpr std::size_t kRoutes = static_cast<std::size_t>(Route::Count);
  static constexpr std::size_t kStatuses = kTrackedStatuses.size() + 1;  // + other
  static constexpr std::size_t kBuckets = kLatencyBuckets.size() + 1;    // + +Inf

  std::array<std::array<Counter, kStatuses>, kRoutes> requests_{};
  std::array<std::array<Counter, kBuckets>, kRoutes> latency_buckets_{};
  std::array<Counter, kRoutes> latency_sum_ns_{};
  std::atomic<std::int64_t> in_flight_{0};
  std::array<Counter, static_cast<std::size_t>(ReadPath::Count)> read_paths_{};
  std::array<Counter, static_cast<std::size_t>(RywOutcome::Count)> ryw_{};
  std::array<Counter, static_cast<std::size_t>(KeyedOutcome::Count)> keyed_{};
  struct Node {
    std::atomic<std::int64_t> in_use{0};
    std::atomic<std::int64_t> open{0};
    Counter waits{0};
    Counter wait_timeouts{0};
    std::atomic<std::int64_t> lag_ms{-1};
  };
  std::unique_ptr<Node[]> nodes_;
  std::size_t node_count_;
};

class Metrics {
 public:
  Metrics(std::size_t shards, std::vector<std::string> db_node_names);
  MetricsShard& shard(std::size_t i) { return *shards_[i]; }
  std::size_t shard_count() const { return shards_.size(); }
  // Prometheus text exposition format 0.0.4, metric names prefixed "webstack_".
  std::string render() const;

 private:
  std::vector<std::unique_ptr<MetricsShard>> shards_;
  std::vector<std::string> node_names_;
};

}  // namespace webstack
