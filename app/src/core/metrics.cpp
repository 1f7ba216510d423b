#include "core/metrics.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <iterator>

namespace webstack {
namespace {

constexpr auto kRelaxed = std::memory_order_relaxed;

// Single writer per shard: a plain load + store is enough, no read-modify-write needed.
template <typename T>
void bump(std::atomic<T>& a, T by) {
  a.store(a.load(kRelaxed) + by, kRelaxed);
}

std::size_t status_index(unsigned status) {
  const auto* it = std::find(kTrackedStatuses.begin(), kTrackedStatuses.end(), status);
  return static_cast<std::size_t>(it - kTrackedStatuses.begin());  // size(): "other"
}

std::size_t bucket_index(double seconds) {
  const auto* it = std::lower_bound(kLatencyBuckets.begin(), kLatencyBuckets.end(), seconds);
  return static_cast<std::size_t>(it - kLatencyBuckets.begin());  // size(): +Inf
}

// Label value escaping of the text format: backslash, double quote, line feed.
std::string escape_label(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
  return out;
}

void header(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
  fmt::format_to(std::back_inserter(out), "# HELP webstack_{} {}\n# TYPE webstack_{} {}\n", name,
                 help, name, type);
}

constexpr std::size_t kRoutes = static_cast<std::size_t>(Route::Count);
constexpr std::size_t kStatuses = kTrackedStatuses.size() + 1;  // + other
constexpr std::size_t kBuckets = kLatencyBuckets.size() + 1;    // + +Inf

// What render() prints: the shards summed.
struct Totals {
  explicit Totals(std::size_t nodes)
      : in_use(nodes, 0),
        open(nodes, 0),
        waits(nodes, 0),
        wait_timeouts(nodes, 0),
        lag_ms(nodes, -1) {}

  std::array<std::array<std::uint64_t, kStatuses>, kRoutes> requests{};
  std::array<std::array<std::uint64_t, kBuckets>, kRoutes> buckets{};
  std::array<std::uint64_t, kRoutes> sum_ns{};
  std::int64_t in_flight = 0;
  std::array<std::uint64_t, static_cast<std::size_t>(ReadPath::Count)> reads{};
  std::array<std::uint64_t, static_cast<std::size_t>(RywOutcome::Count)> ryw{};
  std::array<std::uint64_t, static_cast<std::size_t>(KeyedOutcome::Count)> keyed{};
  std::vector<std::int64_t> in_use;
  std::vector<std::int64_t> open;
  std::vector<std::uint64_t> waits;
  std::vector<std::uint64_t> wait_timeouts;
  std::vector<std::int64_t> lag_ms;
};

}  // namespace

std::string_view ryw_outcome_name(RywOutcome o) {
  return o == RywOutcome::CaughtUp ? "caught_up" : o == RywOutcome::Behind ? "behind" : "unknown";
}

std::string_view keyed_outcome_name(KeyedOutcome o) {
  switch (o) {
    case KeyedOutcome::Stored:
      return "stored";
    case KeyedOutcome::Replayed:
      return "replayed";
    case KeyedOutcome::Mismatch:
      return "mismatch";
    case KeyedOutcome::InProgress:
      return "in_progress";
    case KeyedOutcome::Retried:
      return "retried";
    case KeyedOutcome::Expired:
      return "expired";
    case KeyedOutcome::Count:
      break;
  }
  return "unknown";
}

std::string_view read_path_name(ReadPath p) {
  switch (p) {
    case ReadPath::Replica:
      return "replica";
    case ReadPath::Primary:
      return "primary";
    case ReadPath::Fallback:
      return "fallback";
    case ReadPath::Count:
      break;
  }
  return "unknown";
}

MetricsShard::MetricsShard(std::size_t db_nodes)
    : nodes_(std::make_unique<Node[]>(db_nodes)), node_count_(db_nodes) {}

void MetricsShard::record_request(Route route, unsigned status, std::chrono::nanoseconds latency) {
  const auto r = static_cast<std::size_t>(route);
  if (r >= kRoutes) {
    return;
  }
  bump(requests_[r][status_index(status)], std::uint64_t{1});
  const auto ns = std::max<std::int64_t>(latency.count(), 0);
  bump(latency_buckets_[r][bucket_index(static_cast<double>(ns) / 1e9)], std::uint64_t{1});
  bump(latency_sum_ns_[r], static_cast<std::uint64_t>(ns));
}

void MetricsShard::in_flight_add(int delta) {
  bump(in_flight_, std::int64_t{delta});
}

void MetricsShard::read_your_writes(RywOutcome outcome) {
  const auto o = static_cast<std::size_t>(outcome);
  if (o < ryw_.size()) {
    bump(ryw_[o], std::uint64_t{1});
  }
}

void MetricsShard::keyed_write(KeyedOutcome outcome, std::uint64_t n) {
  const auto o = static_cast<std::size_t>(outcome);
  if (o < keyed_.size()) {
    bump(keyed_[o], n);
  }
}

void MetricsShard::read_path(ReadPath path) {
  const auto p = static_cast<std::size_t>(path);
  if (p < read_paths_.size()) {
    bump(read_paths_[p], std::uint64_t{1});
  }
}

void MetricsShard::pool_in_use(std::size_t node, std::int64_t in_use) {
  if (node < node_count_) {
    nodes_[node].in_use.store(in_use, kRelaxed);
  }
}

void MetricsShard::pool_open(std::size_t node, std::int64_t open) {
  if (node < node_count_) {
    nodes_[node].open.store(open, kRelaxed);
  }
}

void MetricsShard::pool_wait(std::size_t node) {
  if (node < node_count_) {
    bump(nodes_[node].waits, std::uint64_t{1});
  }
}

void MetricsShard::pool_wait_timeout(std::size_t node) {
  if (node < node_count_) {
    bump(nodes_[node].wait_timeouts, std::uint64_t{1});
  }
}

void MetricsShard::replica_lag(std::size_t node, std::int64_t lag_ms) {
  if (node < node_count_) {
    nodes_[node].lag_ms.store(lag_ms, kRelaxed);
  }
}

Metrics::Metrics(std::size_t shards, std::vector<std::string> db_node_names)
    : node_names_(std::move(db_node_names)) {
  shards_.reserve(shards);
  for (std::size_t i = 0; i < shards; ++i) {
    shards_.push_back(std::make_unique<MetricsShard>(node_names_.size()));
  }
}

namespace {

void write_requests(std::string& out, const Totals& t) {
  auto it = std::back_inserter(out);
  header(out, "http_requests_total", "counter", "HTTP responses sent, by route and status.");
  for (std::size_t r = 0; r < kRoutes; ++r) {
    const std::string_view route = route_name(static_cast<Route>(r));
    for (std::size_t s = 0; s < kStatuses; ++s) {
      if (t.requests[r][s] == 0) {
        continue;
      }
      const std::string status =
          s < kTrackedStatuses.size() ? std::to_string(kTrackedStatuses[s]) : "other";
      fmt::format_to(it, "webstack_http_requests_total{{route=\"{}\",status=\"{}\"}} {}\n", route,
                     status, t.requests[r][s]);
    }
  }
}

void write_durations(std::string& out, const Totals& t) {
  auto it = std::back_inserter(out);
  header(out, "http_request_duration_seconds", "histogram",
         "Time from request parsed to response written, by route.");
  for (std::size_t r = 0; r < kRoutes; ++r) {
    std::uint64_t count = 0;
    for (std::size_t b = 0; b < kBuckets; ++b) {
      count += t.buckets[r][b];
    }
    if (count == 0) {
      continue;
    }
    const std::string_view route = route_name(static_cast<Route>(r));
    std::uint64_t cumulative = 0;
    for (std::size_t b = 0; b < kBuckets; ++b) {
      cumulative += t.buckets[r][b];
      const std::string le =
          b < kLatencyBuckets.size() ? fmt::format("{}", kLatencyBuckets[b]) : "+Inf";
      fmt::format_to(it,
                     "webstack_http_request_duration_seconds_bucket{{route=\"{}\",le=\"{}\"}} {}\n",
                     route, le, cumulative);
    }
    fmt::format_to(it, "webstack_http_request_duration_seconds_sum{{route=\"{}\"}} {}\n", route,
                   static_cast<double>(t.sum_ns[r]) / 1e9);
    fmt::format_to(it, "webstack_http_request_duration_seconds_count{{route=\"{}\"}} {}\n", route,
                   count);
  }
}

// The in-flight gauge and the counters by outcome: reads, read-your-writes, keyed writes.
void write_outcomes(std::string& out, const Totals& t) {
  auto it = std::back_inserter(out);
  header(out, "http_in_flight", "gauge", "HTTP requests being handled.");
  fmt::format_to(it, "webstack_http_in_flight {}\n", t.in_flight);

  header(out, "db_reads_total", "counter",
         "Database reads, by where they were served: replica, primary by choice, or primary "
         "as fallback.");
  for (std::size_t p = 0; p < t.reads.size(); ++p) {
    fmt::format_to(it, "webstack_db_reads_total{{path=\"{}\"}} {}\n",
                   read_path_name(static_cast<ReadPath>(p)), t.reads[p]);
  }

  header(out, "db_read_your_writes_total", "counter",
         "Read-your-writes checks of reads that named the client's last write: the node "
         "read from held it (caught_up), or not (behind: read from the primary instead, or "
         "refused with no primary).");
  for (std::size_t o = 0; o < t.ryw.size(); ++o) {
    fmt::format_to(it, "webstack_db_read_your_writes_total{{outcome=\"{}\"}} {}\n",
                   ryw_outcome_name(static_cast<RywOutcome>(o)), t.ryw[o]);
  }

  header(out, "idempotent_writes_total", "counter",
         "Writes with an Idempotency-Key, by outcome: stored, replayed (answered from the "
         "stored key), mismatch (422), in_progress (409), retried (attempts run again after "
         "an unknown outcome), expired (keys deleted by the cleanup).");
  for (std::size_t o = 0; o < t.keyed.size(); ++o) {
    fmt::format_to(it, "webstack_idempotent_writes_total{{outcome=\"{}\"}} {}\n",
                   keyed_outcome_name(static_cast<KeyedOutcome>(o)), t.keyed[o]);
  }
}

// The database pools and the replicas' lag, by node.
void write_nodes(std::string& out, const Totals& t, const std::vector<std::string>& node_names) {
  auto it = std::back_inserter(out);
  const std::size_t nodes = node_names.size();
  std::vector<std::string> labels;
  labels.reserve(nodes);
  for (const auto& name : node_names) {
    labels.push_back(escape_label(name));
  }

  header(out, "db_pool_connections_in_use", "gauge", "Pooled connections lent out, by node.");
  for (std::size_t i = 0; i < nodes; ++i) {
    fmt::format_to(it, "webstack_db_pool_connections_in_use{{node=\"{}\"}} {}\n", labels[i],
                   t.in_use[i]);
  }
  header(out, "db_pool_connections_open", "gauge", "Open pooled connections, by node.");
  for (std::size_t i = 0; i < nodes; ++i) {
    fmt::format_to(it, "webstack_db_pool_connections_open{{node=\"{}\"}} {}\n", labels[i],
                   t.open[i]);
  }
  header(out, "db_pool_waits_total", "counter",
         "Requests that had to wait for a pooled connection, by node.");
  for (std::size_t i = 0; i < nodes; ++i) {
    fmt::format_to(it, "webstack_db_pool_waits_total{{node=\"{}\"}} {}\n", labels[i], t.waits[i]);
  }
  header(out, "db_pool_wait_timeouts_total", "counter",
         "Requests that gave up waiting for a pooled connection, by node.");
  for (std::size_t i = 0; i < nodes; ++i) {
    fmt::format_to(it, "webstack_db_pool_wait_timeouts_total{{node=\"{}\"}} {}\n", labels[i],
                   t.wait_timeouts[i]);
  }
  header(out, "db_replica_lag_seconds", "gauge", "Replication lag of replica nodes, in seconds.");
  for (std::size_t i = 0; i < nodes; ++i) {
    if (t.lag_ms[i] < 0) {
      continue;
    }
    fmt::format_to(it, "webstack_db_replica_lag_seconds{{node=\"{}\"}} {}\n", labels[i],
                   static_cast<double>(t.lag_ms[i]) / 1000.0);
  }
}

}  // namespace

std::string Metrics::render() const {
  static_assert(kRoutes == MetricsShard::kRoutes && kStatuses == MetricsShard::kStatuses &&
                kBuckets == MetricsShard::kBuckets);
  const std::size_t nodes = node_names_.size();

  // Sum the shards first (one pass over each shard's atomics).
  Totals t(nodes);
  for (const auto& shard : shards_) {
    for (std::size_t r = 0; r < kRoutes; ++r) {
      for (std::size_t s = 0; s < kStatuses; ++s) {
        t.requests[r][s] += shard->requests_[r][s].load(kRelaxed);
      }
      for (std::size_t b = 0; b < kBuckets; ++b) {
        t.buckets[r][b] += shard->latency_buckets_[r][b].load(kRelaxed);
      }
      t.sum_ns[r] += shard->latency_sum_ns_[r].load(kRelaxed);
    }
    t.in_flight += shard->in_flight_.load(kRelaxed);
    for (std::size_t p = 0; p < t.reads.size(); ++p) {
      t.reads[p] += shard->read_paths_[p].load(kRelaxed);
    }
    for (std::size_t o = 0; o < t.ryw.size(); ++o) {
      t.ryw[o] += shard->ryw_[o].load(kRelaxed);
    }
    for (std::size_t o = 0; o < t.keyed.size(); ++o) {
      t.keyed[o] += shard->keyed_[o].load(kRelaxed);
    }
    const std::size_t n = std::min(nodes, shard->node_count_);
    for (std::size_t i = 0; i < n; ++i) {
      const MetricsShard::Node& node = shard->nodes_[i];
      t.in_use[i] += node.in_use.load(kRelaxed);
      t.open[i] += node.open.load(kRelaxed);
      t.waits[i] += node.waits.load(kRelaxed);
      t.wait_timeouts[i] += node.wait_timeouts.load(kRelaxed);
      t.lag_ms[i] = std::max(t.lag_ms[i], node.lag_ms.load(kRelaxed));
    }
  }

  std::string out;
  out.reserve(8192);
  write_requests(out, t);
  write_durations(out, t);
  write_outcomes(out, t);
  write_nodes(out, t, node_names_);
  return out;
}

}  // namespace webstack
