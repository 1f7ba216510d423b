#include "core/metrics.hpp"

#include <gtest/gtest.h>

#include <string>

namespace webstack {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::seconds;

TEST(MetricsTest, Names) {
  EXPECT_EQ(route_name(Route::Plaintext), "plaintext");
  EXPECT_EQ(route_name(Route::MessagesList), "messages_list");
  EXPECT_EQ(route_name(Route::MessagesPost), "messages_post");
  EXPECT_EQ(route_name(Route::NotFound), "not_found");
  EXPECT_EQ(read_path_name(ReadPath::Replica), "replica");
  EXPECT_EQ(read_path_name(ReadPath::Primary), "primary");
  EXPECT_EQ(read_path_name(ReadPath::Fallback), "fallback");
}

TEST(MetricsTest, EmptyRender) {
  Metrics m(1, {});
  EXPECT_EQ(m.render(),
            "# HELP webstack_http_requests_total HTTP responses sent, by route and status.\n"
            "# TYPE webstack_http_requests_total counter\n"
            "# HELP webstack_http_request_duration_seconds Time from request parsed to response "
            "written, by route.\n"
            "# TYPE webstack_http_request_duration_seconds histogram\n"
            "# HELP webstack_http_in_flight HTTP requests being handled.\n"
            "# TYPE webstack_http_in_flight gauge\n"
            "webstack_http_in_flight 0\n"
            "# HELP webstack_db_reads_total Database reads, by where they were served: replica, "
            "primary by choice, or primary as fallback.\n"
            "# TYPE webstack_db_reads_total counter\n"
            "webstack_db_reads_total{path=\"replica\"} 0\n"
            "webstack_db_reads_total{path=\"primary\"} 0\n"
            "webstack_db_reads_total{path=\"fallback\"} 0\n"
            "# HELP webstack_db_read_your_writes_total Read-your-writes checks of reads that named "
            "the client's last write: the node read from held it (caught_up), or not (behind: "
            "read from the primary instead, or refused with no primary).\n"
            "# TYPE webstack_db_read_your_writes_total counter\n"
            "webstack_db_read_your_writes_total{outcome=\"caught_up\"} 0\n"
            "webstack_db_read_your_writes_total{outcome=\"behind\"} 0\n"
            "# HELP webstack_idempotent_writes_total Writes with an Idempotency-Key, by outcome: "
            "stored, replayed (answered from the stored key), mismatch (422), in_progress (409), "
            "retried (attempts run again after an unknown outcome), expired (keys deleted by the "
            "cleanup).\n"
            "# TYPE webstack_idempotent_writes_total counter\n"
            "webstack_idempotent_writes_total{outcome=\"stored\"} 0\n"
            "webstack_idempotent_writes_total{outcome=\"replayed\"} 0\n"
            "webstack_idempotent_writes_total{outcome=\"mismatch\"} 0\n"
            "webstack_idempotent_writes_total{outcome=\"in_progress\"} 0\n"
            "webstack_idempotent_writes_total{outcome=\"retried\"} 0\n"
            "webstack_idempotent_writes_total{outcome=\"expired\"} 0\n"
            "# HELP webstack_db_pool_connections_in_use Pooled connections lent out, by node.\n"
            "# TYPE webstack_db_pool_connections_in_use gauge\n"
            "# HELP webstack_db_pool_connections_open Open pooled connections, by node.\n"
            "# TYPE webstack_db_pool_connections_open gauge\n"
            "# HELP webstack_db_pool_waits_total Requests that had to wait for a pooled "
            "connection, by node.\n"
            "# TYPE webstack_db_pool_waits_total counter\n"
            "# HELP webstack_db_pool_wait_timeouts_total Requests that gave up waiting for a "
            "pooled connection, by node.\n"
            "# TYPE webstack_db_pool_wait_timeouts_total counter\n"
            "# HELP webstack_db_replica_lag_seconds Replication lag of replica nodes, in seconds.\n"
            "# TYPE webstack_db_replica_lag_seconds gauge\n");
}

TEST(MetricsTest, RenderSumsShards) {
  Metrics m(2, {"db1:3306", "we\"ird\\\nnode"});
  ASSERT_EQ(m.shard_count(), 2u);
  MetricsShard& a = m.shard(0);
  MetricsShard& b = m.shard(1);

  a.record_request(Route::Json, 200, microseconds(300));     // le 0.0005
  a.record_request(Route::Json, 200, milliseconds(2));       // le 0.0025
  b.record_request(Route::Json, 599, seconds(20));           // +Inf, status "other"
  b.record_request(Route::Plaintext, 404, milliseconds(1));  // exactly on the 0.001 bound

  a.in_flight_add(2);
  b.in_flight_add(1);
  b.in_flight_add(-1);

  a.read_path(ReadPath::Replica);
  a.read_path(ReadPath::Replica);
  b.read_path(ReadPath::Fallback);
  a.read_your_writes(RywOutcome::CaughtUp);
  b.read_your_writes(RywOutcome::CaughtUp);
  b.read_your_writes(RywOutcome::Behind);
  a.keyed_write(KeyedOutcome::Stored);
  a.keyed_write(KeyedOutcome::Retried);
  b.keyed_write(KeyedOutcome::Retried);

  a.pool_in_use(0, 3);
  a.pool_open(0, 5);
  b.pool_in_use(0, 1);
  b.pool_open(0, 4);
  b.pool_open(1, 2);
  a.pool_wait(0);
  b.pool_wait(0);
  b.pool_wait(0);
  a.pool_wait_timeout(0);
  a.replica_lag(0, -1);
  a.replica_lag(1, 1500);
  b.replica_lag(1, 250);

  const std::string json_bucket =
      "webstack_http_request_duration_seconds_bucket{route=\"json\",le=";
  const std::string plain_bucket =
      "webstack_http_request_duration_seconds_bucket{route=\"plaintext\",le=";
  const std::string weird = "we\\\"ird\\\\\\nnode";
  EXPECT_EQ(
      m.render(),
      "# HELP webstack_http_requests_total HTTP responses sent, by route and status.\n"
      "# TYPE webstack_http_requests_total counter\n"
      "webstack_http_requests_total{route=\"plaintext\",status=\"404\"} 1\n"
      "webstack_http_requests_total{route=\"json\",status=\"200\"} 2\n"
      "webstack_http_requests_total{route=\"json\",status=\"other\"} 1\n"
      "# HELP webstack_http_request_duration_seconds Time from request parsed to response "
      "written, by route.\n"
      "# TYPE webstack_http_request_duration_seconds histogram\n" +
          plain_bucket + "\"0.0005\"} 0\n" + plain_bucket + "\"0.001\"} 1\n" + plain_bucket +
          "\"0.0025\"} 1\n" + plain_bucket + "\"0.005\"} 1\n" + plain_bucket + "\"0.01\"} 1\n" +
          plain_bucket + "\"0.025\"} 1\n" + plain_bucket + "\"0.05\"} 1\n" + plain_bucket +
          "\"0.1\"} 1\n" + plain_bucket + "\"0.25\"} 1\n" + plain_bucket + "\"0.5\"} 1\n" +
          plain_bucket + "\"1\"} 1\n" + plain_bucket + "\"2.5\"} 1\n" + plain_bucket +
          "\"5\"} 1\n" + plain_bucket + "\"10\"} 1\n" + plain_bucket + "\"+Inf\"} 1\n" +
          "webstack_http_request_duration_seconds_sum{route=\"plaintext\"} 0.001\n"
          "webstack_http_request_duration_seconds_count{route=\"plaintext\"} 1\n" +
          json_bucket + "\"0.0005\"} 1\n" + json_bucket + "\"0.001\"} 1\n" + json_bucket +
          "\"0.0025\"} 2\n" + json_bucket + "\"0.005\"} 2\n" + json_bucket + "\"0.01\"} 2\n" +
          json_bucket + "\"0.025\"} 2\n" + json_bucket + "\"0.05\"} 2\n" + json_bucket +
          "\"0.1\"} 2\n" + json_bucket + "\"0.25\"} 2\n" + json_bucket + "\"0.5\"} 2\n" +
          json_bucket + "\"1\"} 2\n" + json_bucket + "\"2.5\"} 2\n" + json_bucket + "\"5\"} 2\n" +
          json_bucket + "\"10\"} 2\n" + json_bucket + "\"+Inf\"} 3\n" +
          "webstack_http_request_duration_seconds_sum{route=\"json\"} 20.0023\n"
          "webstack_http_request_duration_seconds_count{route=\"json\"} 3\n"
          "# HELP webstack_http_in_flight HTTP requests being handled.\n"
          "# TYPE webstack_http_in_flight gauge\n"
          "webstack_http_in_flight 2\n"
          "# HELP webstack_db_reads_total Database reads, by where they were served: replica, "
          "primary by choice, or primary as fallback.\n"
          "# TYPE webstack_db_reads_total counter\n"
          "webstack_db_reads_total{path=\"replica\"} 2\n"
          "webstack_db_reads_total{path=\"primary\"} 0\n"
          "webstack_db_reads_total{path=\"fallback\"} 1\n"
          "# HELP webstack_db_read_your_writes_total Read-your-writes checks of reads that named "
          "the client's last write: the node read from held it (caught_up), or not (behind: "
          "read from the primary instead, or refused with no primary).\n"
          "# TYPE webstack_db_read_your_writes_total counter\n"
          "webstack_db_read_your_writes_total{outcome=\"caught_up\"} 2\n"
          "webstack_db_read_your_writes_total{outcome=\"behind\"} 1\n"
          "# HELP webstack_idempotent_writes_total Writes with an Idempotency-Key, by outcome: "
          "stored, replayed (answered from the stored key), mismatch (422), in_progress (409), "
          "retried (attempts run again after an unknown outcome), expired (keys deleted by the "
          "cleanup).\n"
          "# TYPE webstack_idempotent_writes_total counter\n"
          "webstack_idempotent_writes_total{outcome=\"stored\"} 1\n"
          "webstack_idempotent_writes_total{outcome=\"replayed\"} 0\n"
          "webstack_idempotent_writes_total{outcome=\"mismatch\"} 0\n"
          "webstack_idempotent_writes_total{outcome=\"in_progress\"} 0\n"
          "webstack_idempotent_writes_total{outcome=\"retried\"} 2\n"
          "webstack_idempotent_writes_total{outcome=\"expired\"} 0\n"
          "# HELP webstack_db_pool_connections_in_use Pooled connections lent out, by node.\n"
          "# TYPE webstack_db_pool_connections_in_use gauge\n"
          "webstack_db_pool_connections_in_use{node=\"db1:3306\"} 4\n"
          "webstack_db_pool_connections_in_use{node=\"" +
          weird +
          "\"} 0\n"
          "# HELP webstack_db_pool_connections_open Open pooled connections, by node.\n"
          "# TYPE webstack_db_pool_connections_open gauge\n"
          "webstack_db_pool_connections_open{node=\"db1:3306\"} 9\n"
          "webstack_db_pool_connections_open{node=\"" +
          weird +
          "\"} 2\n"
          "# HELP webstack_db_pool_waits_total Requests that had to wait for a pooled "
          "connection, by node.\n"
          "# TYPE webstack_db_pool_waits_total counter\n"
          "webstack_db_pool_waits_total{node=\"db1:3306\"} 3\n"
          "webstack_db_pool_waits_total{node=\"" +
          weird +
          "\"} 0\n"
          "# HELP webstack_db_pool_wait_timeouts_total Requests that gave up waiting for a "
          "pooled connection, by node.\n"
          "# TYPE webstack_db_pool_wait_timeouts_total counter\n"
          "webstack_db_pool_wait_timeouts_total{node=\"db1:3306\"} 1\n"
          "webstack_db_pool_wait_timeouts_total{node=\"" +
          weird +
          "\"} 0\n"
          "# HELP webstack_db_replica_lag_seconds Replication lag of replica nodes, in seconds.\n"
          "# TYPE webstack_db_replica_lag_seconds gauge\n"
          "webstack_db_replica_lag_seconds{node=\"" +
          weird + "\"} 1.5\n");
}

TEST(MetricsTest, BucketBoundsAreInclusive) {
  Metrics m(1, {});
  MetricsShard& s = m.shard(0);
  s.record_request(Route::Db, 200, microseconds(500));     // == 0.0005
  s.record_request(Route::Db, 200, nanoseconds(500'001));  // just above -> 0.001
  s.record_request(Route::Db, 200, seconds(10));           // == 10
  s.record_request(Route::Db, 200, nanoseconds(-5));       // clamped to 0
  const std::string text = m.render();
  const std::string b = "webstack_http_request_duration_seconds_bucket{route=\"db\",le=";
  EXPECT_NE(text.find(b + "\"0.0005\"} 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find(b + "\"0.001\"} 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find(b + "\"5\"} 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find(b + "\"10\"} 4\n"), std::string::npos) << text;
  EXPECT_NE(text.find(b + "\"+Inf\"} 4\n"), std::string::npos) << text;
  EXPECT_NE(text.find("webstack_http_requests_total{route=\"db\",status=\"200\"} 4\n"),
            std::string::npos);
}

TEST(MetricsTest, OutOfRangeNodeIsIgnored) {
  Metrics m(1, {"db1:3306"});
  m.shard(0).pool_open(5, 1);
  m.shard(0).replica_lag(5, 10);
  m.shard(0).pool_wait(1);
  EXPECT_NE(m.render().find("webstack_db_pool_connections_open{node=\"db1:3306\"} 0\n"),
            std::string::npos);
}

}  // namespace
}  // namespace webstack
