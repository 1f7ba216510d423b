// The primary's lease (failover/lease.hpp): who may vouch, when a lease holds, when a
// deposed primary can hold one no more, and what the agent does with its node's gate.
#include "failover/lease.hpp"

#include <gtest/gtest.h>

namespace webstack::failover {
namespace {

using namespace std::chrono_literals;

const ManagerWord kWeb01{true, "web-01", ""};
const ManagerWord kWeb01Deposed{true, "web-01", "web-01"};
const ManagerWord kWeb02{true, "web-02", ""};

TEST(Lease, VotersVouchForTheManagersPrimaryOnlyAndNeverForADeposedOne) {
  EXPECT_TRUE(vouches_for(kWeb01, "web-01"));
  EXPECT_FALSE(vouches_for(kWeb01, "web-02"));
  EXPECT_FALSE(vouches_for(kWeb01Deposed, "web-01"));
  EXPECT_FALSE(vouches_for(ManagerWord{}, "web-01")) << "a voter that never heard the manager";
}

TEST(Lease, AMajorityRenewsFromTheMomentTheQuestionWasSent) {
  const auto sent = LeaseClock::now();
  EXPECT_EQ(majority(3), 2u);
  EXPECT_EQ(majority(4), 3u);
  EXPECT_FALSE(renewed_lease(std::nullopt, sent, 1, 3, 1000ms).has_value());
  const auto held = renewed_lease(std::nullopt, sent, 2, 3, 1000ms);
  ASSERT_TRUE(held.has_value());
  EXPECT_EQ(*held, sent + 1000ms);
  // A minority keeps what was held, never extends it; an older answer never shortens it.
  EXPECT_EQ(*renewed_lease(held, sent + 500ms, 1, 3, 1000ms), sent + 1000ms);
  EXPECT_EQ(*renewed_lease(held, sent - 500ms, 3, 3, 1000ms), sent + 1000ms);
}

TEST(Lease, ADeposedPrimaryHoldsNoLeaseOnceAMajorityIsSilent) {
  EXPECT_FALSE(lease_unreachable(1, 3)) << "the manager alone: the primary and the other agent";
  EXPECT_TRUE(lease_unreachable(2, 3));
  EXPECT_FALSE(lease_unreachable(2, 5));
  EXPECT_TRUE(lease_unreachable(3, 5));
}

TEST(Lease, TheGateFollowsTheLeaseAndTheServersRole) {
  const auto now = LeaseClock::now();
  // The holder: open until its lease ends, whatever the server answers.
  auto s = agent_step(now, now + 700ms, {true, true}, true, kWeb01, "web-01");
  EXPECT_EQ(s.gate, Gate::UntilLeaseEnds);
  EXPECT_EQ(s.open_for, 700ms);
  EXPECT_FALSE(s.kill);
  s = agent_step(now, now + 700ms, {false, false}, true, kWeb01, "web-01");
  EXPECT_EQ(s.gate, Gate::UntilLeaseEnds) << "a stalled holder keeps its lease until deposed";
  // A read-only node takes reads without a lease.
  s = agent_step(now, std::nullopt, {true, false}, false, kWeb01, "web-02");
  EXPECT_EQ(s.gate, Gate::Open);
  // A lapsed lease on a writable node: cut off and killed at once, whatever the manager
  // said last (its commits waiting for an acknowledgement die before they turn
  // asynchronous).
  s = agent_step(now, now - 1ms, {true, true}, true, kWeb01, "web-01");
  EXPECT_EQ(s.gate, Gate::Closed);
  EXPECT_TRUE(s.kill);
  EXPECT_NE(s.reason.find("writable and its lease lapsed"), std::string::npos) << s.reason;
  // Stalled (SIGSTOP) and last seen writable: killed too (SIGKILL ends a stopped process).
  s = agent_step(now, now - 1ms, {false, false}, true, kWeb01Deposed, "web-01");
  EXPECT_EQ(s.gate, Gate::Closed);
  EXPECT_TRUE(s.kill);
  EXPECT_NE(s.reason.find("not answering, last seen writable"), std::string::npos) << s.reason;
  // A lapsed lease on a read-only node: open for reads once an answer to a question sent
  // after the lease ended says so (an older one may predate the manager's SET).
  s = agent_step(now, now - 10ms, {true, false, now - 5ms}, false, kWeb02, "web-01");
  EXPECT_EQ(s.gate, Gate::Open);
  EXPECT_FALSE(s.kill);
  s = agent_step(now, now - 10ms, {true, false, now - 20ms}, false, kWeb02, "web-01");
  EXPECT_EQ(s.gate, Gate::Closed) << "a read-only answer from before the lease ended";
  EXPECT_FALSE(s.kill);
  s = agent_step(now, now - 10ms, {true, true, now - 5ms}, false, kWeb02, "web-01");
  EXPECT_TRUE(s.kill) << "writable since";
  // Writable, and this agent never held the lease (it restarted): cut off, and killed once
  // the manager names another primary or deposes it, not before.
  s = agent_step(now, std::nullopt, {true, true}, true, kWeb01, "web-01");
  EXPECT_EQ(s.gate, Gate::Closed);
  EXPECT_FALSE(s.kill) << "still the manager's primary: the lease comes at the next round";
  s = agent_step(now, std::nullopt, {true, true}, true, kWeb02, "web-01");
  EXPECT_TRUE(s.kill);
  EXPECT_NE(s.reason.find("the manager's primary is web-02"), std::string::npos) << s.reason;
  s = agent_step(now, std::nullopt, {true, true}, true, kWeb01Deposed, "web-01");
  EXPECT_TRUE(s.kill);
  // Silent and last seen read-only (restarting after a kill): closed, left alone.
  s = agent_step(now, std::nullopt, {false, false}, false, kWeb02, "web-01");
  EXPECT_EQ(s.gate, Gate::Closed);
  EXPECT_FALSE(s.kill);
  // Never heard from the manager: nothing is killed.
  s = agent_step(now, std::nullopt, {true, true}, true, ManagerWord{}, "web-01");
  EXPECT_EQ(s.gate, Gate::Closed);
  EXPECT_FALSE(s.kill);
}

// The lease-aware semi-sync fallback: commits stuck (waiting, none acknowledged) for the
// fallback time are released only by the lease holder; the holder's MariaDB timeout is a
// day while semi-sync is on; a demoted node gets a short one back.
TEST(Lease, OnlyTheLeaseHolderReleasesCommitsStuckWaitingForAReplica) {
  const auto t0 = LeaseClock::now();
  const LocalView primary{true, true, t0};
  const auto day = kHolderSemiSyncTimeoutMs;
  SemiSyncMemory m;
  const SemiSyncView stuck{true, true, 2, 100, day};
  EXPECT_EQ(semi_sync_step(t0, true, primary, stuck, 3000ms, m), SemiSyncAction::None);
  EXPECT_EQ(semi_sync_step(t0 + 2900ms, true, primary, stuck, 3000ms, m), SemiSyncAction::None);
  EXPECT_EQ(semi_sync_step(t0 + 3000ms, false, primary, stuck, 3000ms, m), SemiSyncAction::None)
      << "its lease lapsed (a freeze, a partition): the commits die with the node";
  EXPECT_EQ(semi_sync_step(t0 + 3000ms, true, primary, stuck, 3000ms, m), SemiSyncAction::Release);
  // Under load some commit always waits a moment: acknowledgements going on reset the clock.
  SemiSyncMemory busy;
  for (int i = 0; i < 20; ++i) {
    const SemiSyncView moving{true, true, 1, 100 + i, day};
    EXPECT_EQ(semi_sync_step(t0 + i * 500ms, true, primary, moving, 3000ms, busy),
              SemiSyncAction::None);
  }
  // The holder with semi-sync on gets a day; fallen back (off), it keeps the short one
  // (MariaDB's own fallback holds, and MariaDB turns semi-sync on again by itself).
  SemiSyncMemory fresh;
  EXPECT_EQ(semi_sync_step(t0, true, primary, {true, true, 0, 100, 3000}, 3000ms, fresh),
            SemiSyncAction::HoldCommits);
  EXPECT_EQ(semi_sync_step(t0, true, primary, {true, false, 0, 100, 1000}, 3000ms, fresh),
            SemiSyncAction::None);
  EXPECT_EQ(semi_sync_step(t0, false, primary, {true, true, 0, 100, 3000}, 3000ms, fresh),
            SemiSyncAction::None)
      << "not the holder";
  // A read-only node that still has the day (it was the primary): back to short.
  EXPECT_EQ(semi_sync_step(t0, false, {true, false, t0}, {true, true, 1, 100, day}, 3000ms, fresh),
            SemiSyncAction::Demoted);
  EXPECT_EQ(semi_sync_step(t0, false, {true, false, t0}, {true, true, 0, 100, 1000}, 3000ms, fresh),
            SemiSyncAction::None);
}

}  // namespace
}  // namespace webstack::failover
