// GTID positions compared per domain by sequence number (common/gtid.hpp): what `webstack db
// promote` and the failover manager wait on, and what read-your-writes checks on a node
// that is not a replica.
#include "common/gtid.hpp"

#include <gtest/gtest.h>

namespace webstack {
namespace {

TEST(GtidCovers, PerDomainBySequenceNumber) {
  EXPECT_TRUE(gtid_covers("0-1-17", "0-1-17"));
  EXPECT_TRUE(gtid_covers("0-2-18", "0-1-17")) << "another server's later event in domain 0";
  EXPECT_FALSE(gtid_covers("0-1-16", "0-1-17"));
  EXPECT_TRUE(gtid_covers("0-1-17,1-3-4", "1-3-4"));
  EXPECT_FALSE(gtid_covers("0-1-17", "0-1-17,1-3-4")) << "domain 1 missing";
  EXPECT_TRUE(gtid_covers("0-1-5", "")) << "nothing to wait for";
  EXPECT_FALSE(gtid_covers("", "0-1-1"));
  EXPECT_FALSE(gtid_covers("garbage", "0-1-1")) << "not a GTID: nothing covered";
}

}  // namespace
}  // namespace webstack
