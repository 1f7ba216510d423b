// The load-balancer pair on the shared lab: lb-01 and lb-02 share the site's virtual
// address through keepalived (VRRP), one holds it. Under steady load from the client,
// the holder's HAProxy is killed, or its link goes down: the address moves, and each test
// prints how long requests failed and how many. The issue's target for both: the first
// request succeeds again within 4 s.
#include <unistd.h>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "http_client.hpp"
#include "lab/process.hpp"
#include "lab/status.hpp"
#include "test_lab.hpp"
#include "topology/topology.hpp"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using webstack::it::HttpClient;
using webstack::test::in_namespace;
using webstack::test::TestLab;
using webstack::test::wait_for;

class LoadBalancerPairTest : public webstack::test::SharedLabTest {
 protected:
  void SetUp() override {
    SharedLabTest::SetUp();
    if (HasFatalFailure()) return;
    // Every test starts with exactly one holder, lb-01 (the preferred one), both
    // balancers serving.
    ASSERT_TRUE(wait_for([] { return holders() == std::vector<std::string>{"lb-01"}; }, 30s))
        << "virtual address held by: " << fmt::format("{}", fmt::join(holders(), ", "));
  }

  static std::vector<std::string> holders() {
    return webstack::lab::address_holders(webstack::topo::load_topology_file(lab_->topology()),
                                          lab_->lb_address());
  }

  static void cli_ok(std::vector<std::string> args) {
    const auto r = lab_->cli(args, 60s);
    ASSERT_EQ(r.exit_code, 0) << fmt::format("{}", fmt::join(args, " ")) << ": " << r.out << r.err;
  }

  // Steady GETs from the client to the virtual address while `fault` runs; returns the
  // outage: from the fault to the first success after it, and the failures meanwhile.
  struct Outage {
    int requests = 0, failed = 0;
    double seconds = 0;      // from the fault until requests succeed again (0: none failed)
    bool came_back = false;  // no request failed after the fault, or one succeeded again
  };
  static Outage under_load(const std::function<void()>& fault) {
    std::atomic<bool> stop{false}, faulted{false};
    std::mutex m;
    Clock::time_point fault_at{}, last_failure{}, recovered{};
    Outage o;
    auto load = in_namespace(lab_->client_namespace(), [&] {
      const auto deadline = Clock::now() + 60s;  // bounded, whatever happens
      HttpClient c(443, 1s, lab_->lb_address());
      c.use_tls({lab_->ca_file(), "www.foobar.test"});
      while (!stop && Clock::now() < deadline) {
        bool ok = false;
        try {
          ok = c.get("/json").status == 200;
        } catch (const std::exception&) {
          c.close();
        }
        // A refused connection fails at once: pace the retries (10 ms) so the figure
        // counts attempts a real client would make, not a spin.
        if (!ok) std::this_thread::sleep_for(10ms);
        const auto now = Clock::now();
        std::lock_guard lock(m);
        ++o.requests;
        if (!ok) {
          ++o.failed;
          last_failure = now;
        } else if (faulted && recovered == Clock::time_point{} && last_failure > fault_at) {
          recovered = now;
        }
      }
    });
    // Some traffic first, then the fault.
    wait_for(
        [&] {
          std::lock_guard lock(m);
          return o.requests > 50;
        },
        10s, 10ms);
    {
      std::lock_guard lock(m);
      fault_at = Clock::now();
      faulted = true;
    }
    fault();
    // Until the site answers again after the fault, then a little more traffic.
    wait_for(
        [&] {
          std::lock_guard lock(m);
          return Clock::now() - fault_at > 10s || (recovered != Clock::time_point{}) ||
                 (last_failure < fault_at && Clock::now() - fault_at > 5s);
        },
        20s, 20ms);
    stop = true;
    load.join();
    if (recovered != Clock::time_point{}) {
      o.seconds = std::chrono::duration<double>(recovered - fault_at).count();
    }
    o.came_back = recovered != Clock::time_point{} || last_failure < fault_at;
    return o;
  }
};

TEST_F(LoadBalancerPairTest, OneBalancerHoldsTheAddressAndTheSiteAnswersThroughIt) {
  EXPECT_EQ(holders(), std::vector<std::string>{"lb-01"});
  const auto body = lab_->client_curl({lab_->site_url("/json")});
  EXPECT_EQ(body, R"({"message":"Hello, World!"})");
  // The client's own hosts file names the virtual address (as DNS would).
  const auto hosts = lab_->cli({"exec", "client", "--", "getent", "hosts", "www.foobar.test"}, 20s);
  EXPECT_NE(hosts.out.find(lab_->lb_address()), std::string::npos) << hosts.out << hosts.err;
  const auto st = lab_->cli({"status"}, 30s);
  EXPECT_NE(st.out.find("virtual address " + lab_->lb_address() + ": held by lb-01"),
            std::string::npos)
      << st.out;
}

TEST_F(LoadBalancerPairTest, HaproxyKilledOnTheHolderTheSiteComesBack) {
  const auto o = under_load([] { cli_ok({"kill", "lb-01/haproxy"}); });
  std::printf(
      "kill -9 of lb-01's HAProxy: %d requests, %d failed, answering again after %.2f s "
      "(target <= 4 s)\n",
      o.requests, o.failed, o.seconds);
  EXPECT_TRUE(o.came_back) << "the site did not come back within 10 s of the fault";
  EXPECT_GT(o.requests, o.failed);
}

TEST_F(LoadBalancerPairTest, HoldersLinkDownTheAddressMovesToTheOther) {
  const auto o = under_load([] { cli_ok({"link", "lb-01", "down"}); });
  const auto during = holders();
  cli_ok({"link", "lb-01", "up"});
  std::printf(
      "lb-01's link down: %d requests, %d failed, answering again after %.2f s "
      "(target <= 4 s)\n",
      o.requests, o.failed, o.seconds);
  EXPECT_EQ(during, std::vector<std::string>{"lb-02"});
  EXPECT_TRUE(o.came_back) << "the site did not come back within 10 s of the fault";
  // lb-01 comes back and, after its preempt delay, takes the address back; never both.
  bool split = false;
  EXPECT_TRUE(wait_for(
      [&] {
        const auto h = holders();
        split = split || h.size() > 1;
        return h == std::vector<std::string>{"lb-01"};
      },
      30s));
  EXPECT_FALSE(split) << "both balancers held the address at once";
}

// `webstack deploy` restarts both web hosts' apps one at a time, drained first, under
// steady GETs and guestbook POSTs from the client: no request fails, every POST is
// acknowledged, and both apps run new processes afterwards.
TEST_F(LoadBalancerPairTest, RollingDeployUnderLoadFailsNoRequest) {
  const auto status_pid = [](const std::string& host) {
    const auto r = lab_->cli({"status", "--json"}, 30s);
    const auto at = r.out.find("\"name\":\"" + host + "\"");
    const auto app = r.out.find("\"name\":\"webstack-app\"", at);
    const auto pid = r.out.find("\"pid\":", app);
    return r.out.substr(pid + 6, r.out.find_first_of(",}", pid) - pid - 6);
  };
  const std::string before01 = status_pid("web-01"), before02 = status_pid("web-02");
  webstack::test::SiteLoad load(lab_->client_namespace(), lab_->lb_address(), lab_->ca_file(),
                                120s);
  const auto t0 = Clock::now();
  const auto deploy = lab_->cli({"deploy"}, 120s);
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  load.stop();
  EXPECT_EQ(deploy.exit_code, 0) << deploy.out << deploy.err;
  EXPECT_EQ(load.failed(), 0) << load.first_failure();
  EXPECT_GT(load.gets(), 0);
  EXPECT_GT(load.posts(), 0);
  EXPECT_NE(status_pid("web-01"), before01) << "web-01's app was not restarted";
  EXPECT_NE(status_pid("web-02"), before02) << "web-02's app was not restarted";
  std::printf("rolling deploy of 2 web hosts in %.1f s under load: %d GETs, %d POSTs, %d failed\n",
              seconds, load.gets(), load.posts(), load.failed());
}

// The database pair under guestbook POSTs from the client, each acknowledgement
// recorded, while `fault` takes the primary away: every POST acknowledged before, during
// and after is on the new primary; at no moment are two nodes writable (both nodes'
// read_only sampled every 20 ms throughout, over their sockets); the figures say how long
// writes failed. Returns once a node other than the old primary is writable and writes
// have gone on for a while.
struct WriteFigures {
  std::string old_primary, new_primary;
  std::size_t acknowledged = 0, stored = 0;
  int failed = 0, samples = 0, both_writable = 0;
  double back_after = 0;  // from the fault to the first POST acknowledged after the last failure
  std::string line() const {
    return fmt::format(
        "{} acknowledged, {} stored on the new primary {}, {} failed, writes back {:.2f} s after "
        "the fault, {} of {} samples with two writable nodes",
        acknowledged, stored, new_primary, failed, back_after, both_writable, samples);
  }
};

// The failover manager's log (the last 4000 characters: what a failure message needs).
std::string manager_log() {
  const auto log = webstack::test::read_file(webstack::test::SharedLabTest::lab()->state() +
                                             "/log/mon-01/failover-manager/current");
  return log.size() > 4000 ? log.substr(log.size() - 4000) : log;
}

std::string writable_node() {
  for (const char* host : {"web-01", "web-02"}) {
    if (webstack::test::SharedLabTest::lab()->try_sql(host, "SELECT @@GLOBAL.read_only") == "0\n") {
      return host;
    }
  }
  return "";
}

WriteFigures writes_across(const std::string& author, const std::function<void()>& fault) {
  const auto* lab = webstack::test::SharedLabTest::lab();
  WriteFigures f;
  f.old_primary = writable_node();
  std::atomic<bool> stop{false};
  std::mutex m;
  std::vector<std::string> acknowledged;
  std::vector<std::pair<Clock::time_point, bool>> outcomes;
  auto writer = in_namespace(lab->client_namespace(), [&] {
    // 3 s: a POST stuck on a host that dropped off counts as failed, and the next one
    // shows whether writes work again (a commit waits at most the semi-sync timeout).
    HttpClient c(443, 3s, lab->lb_address());
    c.use_tls({lab->ca_file(), "www.foobar.test"});
    const auto deadline = Clock::now() + 120s;  // bounded, whatever happens
    for (int i = 0; !stop && Clock::now() < deadline; ++i) {
      const std::string text = fmt::format("w{}", i);
      bool ok = false;
      try {
        ok = c.post("/api/messages", R"({"author":")" + author + R"(","text":")" + text + R"("})",
                    "application/json")
                 .status == 201;
      } catch (const std::exception&) {
        c.close();
      }
      {
        std::lock_guard lock(m);
        if (ok) acknowledged.push_back(text);
        outcomes.emplace_back(Clock::now(), ok);
      }
      if (!ok) std::this_thread::sleep_for(20ms);  // pacing of retries after a failure
    }
  });
  std::atomic<int> both{0}, samples{0};
  std::thread watcher([&] {
    while (!stop) {
      const auto a = lab->try_sql("web-01", "SELECT @@GLOBAL.read_only");
      const auto b = lab->try_sql("web-02", "SELECT @@GLOBAL.read_only");
      if (a == "0\n" && b == "0\n") ++both;
      ++samples;
      std::this_thread::sleep_for(20ms);  // sampling interval
    }
  });
  const auto count = [&] {
    std::lock_guard lock(m);
    return acknowledged.size();
  };
  wait_for([&] { return count() > 100; }, 20s, 10ms);
  const auto fault_at = Clock::now();
  fault();
  // A new primary, and writes going on against it.
  std::size_t before = 0;
  EXPECT_TRUE(wait_for(
      [&] {
        const auto w = writable_node();
        if (w.empty() || w == f.old_primary) return false;
        if (before == 0) before = count();
        return count() > before + 100;
      },
      60s, 50ms))
      << "no new primary taking writes within 60 s of the fault";
  stop = true;
  writer.join();
  watcher.join();
  f.new_primary = writable_node();
  f.acknowledged = acknowledged.size();
  f.samples = samples;
  f.both_writable = both;
  Clock::time_point last_failure{};
  for (const auto& [at, ok] : outcomes) {
    if (!ok && at > fault_at) {
      ++f.failed;
      last_failure = at;
    }
  }
  for (const auto& [at, ok] : outcomes) {
    if (ok && at > last_failure && at > fault_at && last_failure != Clock::time_point{}) {
      f.back_after = std::chrono::duration<double>(at - fault_at).count();
      break;
    }
  }
  // Every acknowledged text is stored (a POST whose answer was lost may be stored too:
  // a failure, not a loss).
  std::set<std::string> stored;
  if (!f.new_primary.empty()) {
    std::istringstream rows(lab->sql(
        f.new_primary, "SELECT body FROM webstack.messages WHERE author = '" + author + "'"));
    for (std::string row; std::getline(rows, row);) stored.insert(row);
  }
  std::size_t missing = 0;
  for (const auto& text : acknowledged) {
    if (stored.count(text) != 0) {
      ++f.stored;
    } else {
      ++missing;
    }
  }
  EXPECT_NE(f.new_primary, f.old_primary);
  EXPECT_EQ(missing, 0u) << "acknowledged writes lost\n" << manager_log();
  EXPECT_EQ(f.both_writable, 0) << "two writable nodes at once\n" << manager_log();
  return f;
}

// `node` replicates from the current primary again (its IO thread connected), read-only.
bool rejoined(const std::string& node) {
  const auto* lab = webstack::test::SharedLabTest::lab();
  return lab->try_sql(node,
                      "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE COMMAND "
                      "IN ('Slave_IO', 'Slave_SQL')") == "2\n" &&
         lab->try_sql(node, "SELECT @@GLOBAL.read_only") == "1\n";
}

// The tests leave web-01 the primary, as the lab started (other suites share the lab).
void primary_back_to_web01() {
  if (writable_node() == "web-01") return;
  const auto r = webstack::test::SharedLabTest::lab()->cli({"db", "promote", "web-01"}, 90s);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_TRUE(wait_for([] { return rejoined("web-02"); }, 30s)) << "web-02 did not rejoin";
}

// `webstack db promote` under writes: the replica becomes the primary by hand, and the
// failover manager takes the new primary as it finds it.
TEST_F(LoadBalancerPairTest, PromotionUnderWritesLosesNoAcknowledgedWrite) {
  const std::string old = writable_node();
  ASSERT_FALSE(old.empty());
  const std::string next = old == "web-01" ? "web-02" : "web-01";
  webstack::lab::ProcessResult promote;
  const auto f = writes_across(fmt::format("promote-{}", ::getpid()), [&] {
    promote = lab_->cli({"db", "promote", next}, 90s);
  });
  ASSERT_EQ(promote.exit_code, 0) << promote.out << promote.err;
  std::printf("%s", promote.out.c_str());
  std::printf("db promote under writes: %s\n", f.line().c_str());
  // Semi-synchronous again at once (the new replica connected), not fallen back.
  const auto st = lab_->cli({"status"}, 30s);
  EXPECT_NE(st.out.find("semi-sync=on"), std::string::npos) << st.out;
  EXPECT_TRUE(wait_for([&] { return rejoined(old); }, 30s));
  primary_back_to_web01();
}

// `webstack db promote` by hand while the primary's MariaDB is down (automatic failover
// paused, as an operator would first): nothing to fence, the replica applies what its
// relay log holds (read from SHOW SLAVE STATUS's named fields), becomes writable, and the
// site takes writes again; the old primary, started again, rejoins as a replica.
TEST_F(LoadBalancerPairTest, PromotionWithThePrimaryDownAppliesTheRelayLogAndTakesWrites) {
  // A settled lab first: right after another test's promotion, the failover manager's
  // record of the primary (state/primary, which `db promote` reads) may lag the
  // databases for a moment. Nothing is touched until both agree.
  std::string old, recorded;
  ASSERT_TRUE(wait_for(
      [&] {
        old = writable_node();
        recorded = webstack::lab::trim(webstack::test::read_file(lab_->state() + "/primary"));
        return !old.empty() && recorded == old;
      },
      30s, 100ms))
      << "writable: " << old << ", recorded primary: " << recorded;
  const std::string next = old == "web-01" ? "web-02" : "web-01";
  cli_ok({"failover", "pause"});
  cli_ok({"stop", old + "/mariadb"});
  // Whatever happens below: the old primary's MariaDB runs again and failover resumes.
  struct Restore {
    std::string host;
    ~Restore() {
      const auto* lab = webstack::test::SharedLabTest::lab();
      lab->cli({"start", host + "/mariadb"}, 60s);
      lab->cli({"failover", "resume"}, 30s);
    }
  } restore{old};
  const auto t0 = Clock::now();
  const auto promote = lab_->cli({"db", "promote", next}, 90s);
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  ASSERT_EQ(promote.exit_code, 0) << promote.out << promote.err;
  std::printf("%s", promote.out.c_str());
  EXPECT_NE(promote.out.find("nothing to fence"), std::string::npos) << promote.out;
  EXPECT_NE(promote.out.find("applied "), std::string::npos) << promote.out;
  EXPECT_LT(seconds, 20.0) << "the relay-log step waited for its deadline\n" << promote.out;
  EXPECT_EQ(writable_node(), next);
  const auto posted = lab_->client_curl(
      {"-o", "/dev/null", "-w", "%{http_code}", "-H", "Content-Type: application/json", "-d",
       R"({"author":"promote-down","text":"after a promotion with the primary down"})",
       lab_->site_url("/api/messages")});
  EXPECT_EQ(posted, "201");
  cli_ok({"start", old + "/mariadb"});
  cli_ok({"db", "rejoin", old});
  EXPECT_TRUE(wait_for([&] { return rejoined(old); }, 30s)) << old << " did not rejoin";
  // Back to the lab's first layout while failover is still paused (the manager then
  // resumes on the primary it knew).
  primary_back_to_web01();
}

// kill -9 of the primary's MariaDB under writes: s6 restarts it read-only (every node
// starts so); the failover manager finds no writable primary, from itself and from both
// apps, for failover_after (3 s in the lab), promotes the replica, and makes the old
// primary its replica.
TEST_F(LoadBalancerPairTest, PrimaryKilledTheManagerPromotesTheReplica) {
  const std::string old = writable_node();
  ASSERT_FALSE(old.empty());
  const auto f = writes_across(fmt::format("kill-{}", ::getpid()), [&] {
    cli_ok({"kill", old + "/mariadb"});
  });
  std::printf("kill -9 of the primary's MariaDB (%s): %s (target: writes back <= 10 s)\n",
              old.c_str(), f.line().c_str());
  EXPECT_TRUE(wait_for([&] { return rejoined(old); }, 30s)) << old << " did not rejoin\n"
                                                            << manager_log();
  const auto log = manager_log();
  EXPECT_NE(log.find("promote " + f.new_primary + ": done"), std::string::npos) << log;
  EXPECT_NE(log.find("rejoin " + old + ": replicates from " + f.new_primary), std::string::npos)
      << log;
  const auto st = lab_->cli({"status"}, 30s);
  EXPECT_NE(st.out.find("database failover: automatic\n  primary " + f.new_primary + ", writable"),
            std::string::npos)
      << st.out;
  EXPECT_NE(st.out.find("last action: rejoin " + old), std::string::npos) << st.out;
  // Monitoring says so too (the manager's promotions counter, scraped every 2 s).
  EXPECT_TRUE(wait_for(
      [] { return lab_->cli({"alerts"}, 30s).out.find("DatabaseFailedOver") != std::string::npos; },
      30s, 500ms))
      << lab_->cli({"alerts"}, 30s).out;
  primary_back_to_web01();
}

// The primary's host drops off the network under writes: its fencing agent, cut off from
// the manager and the other node, fences it (SIGKILL of mariadbd: s6 restarts it
// read-only) before the manager, which no longer reaches it and hears the same from the
// apps, promotes the replica. The link comes back: the old primary rejoins as a replica.
TEST_F(LoadBalancerPairTest, PrimarysLinkDownTheManagerPromotesTheReplica) {
  const std::string old = writable_node();
  ASSERT_FALSE(old.empty());
  const auto f = writes_across(fmt::format("link-{}", ::getpid()), [&] {
    cli_ok({"link", old, "down"});
  });
  cli_ok({"link", old, "up"});
  std::printf("the primary's link down (%s): %s (target: writes back <= 10 s)\n", old.c_str(),
              f.line().c_str());
  EXPECT_TRUE(wait_for([&] { return rejoined(old); }, 30s)) << old << " did not rejoin\n"
                                                            << manager_log();
  const auto agent =
      webstack::test::read_file(lab_->state() + "/log/" + old + "/failover-agent/current");
  EXPECT_NE(agent.find("fence " + old + ": cut off"), std::string::npos) << agent;
  EXPECT_NE(manager_log().find("promote " + f.new_primary + ": done"), std::string::npos);
  primary_back_to_web01();
}

// Active-active on a lab of its own: lb-01 holds 10.x.x.5, lb-02 10.x.x.6, the client
// resolves the site's name to both, and both balancers carry requests. lb-01's link goes
// down: lb-02 takes its address too, and the site answers on both; the link back, lb-01
// takes its address back (after its preempt delay).
TEST(ActiveActiveTest, BothBalancersCarryTrafficAndEachCoversTheOther) {
  if (::geteuid() != 0) GTEST_FAIL() << "needs root";
  TestLab lab("wsa", "", true);
  const auto up = lab.cli({"up"}, 180s);
  ASSERT_EQ(up.exit_code, 0) << up.out << up.err;
  const auto topology = webstack::topo::load_topology_file(lab.topology());
  const std::string a = lab.address(5), b = lab.address(6);
  const auto holders = [&](const std::string& vip) {
    return webstack::lab::address_holders(topology, vip);
  };
  EXPECT_EQ(holders(a), std::vector<std::string>{"lb-01"});
  EXPECT_EQ(holders(b), std::vector<std::string>{"lb-02"});
  const auto hosts = lab.cli({"exec", "client", "--", "getent", "ahosts", "www.foobar.test"}, 20s);
  EXPECT_NE(hosts.out.find(a), std::string::npos) << hosts.out;
  EXPECT_NE(hosts.out.find(b), std::string::npos) << hosts.out;

  // Requests each balancer's HAProxy has taken so far (show info: CumReq).
  const auto served = [&](const std::string& lb) {
    const auto info =
        webstack::lab::haproxy_command(lab.state() + "/run/" + lb + "/haproxy.sock", "show info\n");
    const auto at = info.find("\nCumReq: ");
    return at == std::string::npos ? -1L : std::stol(info.substr(at + 9));
  };
  // `n` GETs to each address from the client; how many failed.
  const auto load = [&](int n) {
    int failed = 0;
    auto t = in_namespace(lab.client_namespace(), [&] {
      for (const auto& vip : {a, b}) {
        HttpClient c(443, 5s, vip);
        c.use_tls({lab.ca_file(), "www.foobar.test"});
        for (int i = 0; i < n; ++i) {
          try {
            if (c.get("/json").status != 200) ++failed;
          } catch (const std::exception&) {
            ++failed;
            c.close();
          }
        }
      }
    });
    t.join();
    return failed;
  };
  const long before1 = served("lb-01"), before2 = served("lb-02");
  EXPECT_EQ(load(200), 0);
  const long by1 = served("lb-01") - before1, by2 = served("lb-02") - before2;
  EXPECT_GE(by1, 200) << "lb-01 carried " << by1;
  EXPECT_GE(by2, 200) << "lb-02 carried " << by2;

  // lb-01 drops off: its address moves to lb-02, and both addresses answer.
  const auto t0 = Clock::now();
  ASSERT_EQ(lab.cli({"link", "lb-01", "down"}, 30s).exit_code, 0);
  EXPECT_TRUE(wait_for([&] { return holders(a) == std::vector<std::string>{"lb-02"}; }, 10s))
      << fmt::format("{}", fmt::join(holders(a), ", "));
  const double moved = std::chrono::duration<double>(Clock::now() - t0).count();
  EXPECT_EQ(holders(b), std::vector<std::string>{"lb-02"});
  EXPECT_EQ(load(50), 0) << "the site through both addresses with lb-01 gone";
  ASSERT_EQ(lab.cli({"link", "lb-01", "up"}, 30s).exit_code, 0);
  EXPECT_TRUE(wait_for([&] { return holders(a) == std::vector<std::string>{"lb-01"}; }, 30s));
  EXPECT_EQ(holders(b), std::vector<std::string>{"lb-02"});
  std::printf(
      "active-active: of 200 GETs to each address lb-01 carried %ld, lb-02 %ld; lb-01's link "
      "down: its address on lb-02 after %.2f s, then 100 of 100 GETs answered\n",
      by1, by2, moved);
}

}  // namespace
