// `webstack bench`'s pure parts: reading wrk's output, medians, the tests' paths.
#include "bench/bench.hpp"

#include <gtest/gtest.h>

#include <stdexcept>

namespace {

using webstack::bench::median;
using webstack::bench::parse_wrk;
using webstack::bench::test_path;

// wrk 4.1 with --latency, as it prints through the lab (errors included).
constexpr const char* kWrk = R"(Running 2s test @ https://10.77.0.10/db
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    13.05ms   17.86ms 203.95ms   96.23%
    Req/Sec   755.88    190.13     0.95k    90.00%
  Latency Distribution
     50%  980.00us
     75%   13.90ms
     90%   18.62ms
     99%    1.15s
  3019 requests in 2.02s, 730.54KB read
  Socket errors: connect 1, read 2, write 0, timeout 4
  Non-2xx or 3xx responses: 12
Requests/sec:   1492.95
Transfer/sec:    361.26KB
)";

TEST(BenchWrk, ParsesRateLatenciesAndErrors) {
  const auto r = parse_wrk(kWrk);
  EXPECT_DOUBLE_EQ(r.requests_per_s, 1492.95);
  EXPECT_DOUBLE_EQ(r.p50_ms, 0.98);    // us -> ms
  EXPECT_DOUBLE_EQ(r.p99_ms, 1150.0);  // s -> ms
  EXPECT_EQ(r.requests, 3019);
  EXPECT_EQ(r.non_2xx, 12);
  EXPECT_EQ(r.socket_errors, 7);
}

TEST(BenchWrk, OutputWithoutARateIsAnError) {
  EXPECT_THROW(parse_wrk("unable to connect to 10.77.0.10:443 Connection refused\n"),
               std::runtime_error);
}

TEST(BenchMedian, OddEvenAndEmpty) {
  EXPECT_DOUBLE_EQ(median({3, 1, 2}), 2);
  EXPECT_DOUBLE_EQ(median({4, 1, 3, 2}), 2.5);
  EXPECT_DOUBLE_EQ(median({}), 0);
}

TEST(BenchTests, PathsAndUnknownNames) {
  EXPECT_EQ(test_path("queries"), "/queries?queries=20");
  EXPECT_EQ(test_path("updates"), "/updates?queries=20");
  EXPECT_EQ(test_path("plaintext"), "/plaintext");
  EXPECT_THROW(test_path("cached"), std::invalid_argument);
}

}  // namespace
