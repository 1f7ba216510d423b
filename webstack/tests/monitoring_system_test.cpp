// Monitoring, on the shared lab (its mon-01 runs Prometheus, Alertmanager and the
// blackbox prober; every site host runs its exporters): every scrape target is up, the
// app's counters agree with what the client sent, and each alert fires for a real cause
// within 30 s, then resolves once the cause is gone. Prometheus and Alertmanager are read
// through the edge on 127.0.0.1 (as an operator would) and through `webstack alerts`;
// traffic comes from the client host only.
#include <unistd.h>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <boost/json.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/process.hpp"
#include "http_client.hpp"
#include "test_lab.hpp"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using ::webstack::ProcessResult;
using webstack::it::HttpClient;
using webstack::test::in_namespace;
using webstack::test::TestLab;
using webstack::test::wait_for;
namespace json = boost::json;

class MonitoringTest : public webstack::test::SharedLabTest {
 protected:
  void SetUp() override {
    SharedLabTest::SetUp();
    if (HasFatalFailure()) return;
    const auto alerts = cli({"alerts"}, 20s);
    ASSERT_EQ(alerts.exit_code, 0) << "webstack alerts: " << alerts.out << alerts.err;
    // Every test starts with nothing firing (what an earlier test caused has resolved),
    // but for LoadBalancerFailover and DatabaseFailedOver: they report a move of the
    // virtual address or a promotion for a minute after it happened (the high-
    // availability tests move and promote on purpose), and no test here looks for them.
    const auto others = [] {
      auto f = firing();
      std::erase_if(f, [](const Firing& a) {
        return a.name == "LoadBalancerFailover" || a.name == "DatabaseFailedOver";
      });
      return f;
    };
    ASSERT_TRUE(wait_for([&] { return others().empty(); }, 60s))
        << "alerts still firing before the test: " << names(others());
  }

  static ProcessResult cli(std::vector<std::string> args, std::chrono::milliseconds timeout = 60s) {
    return lab_->cli(std::move(args), timeout);
  }

  // GET from Prometheus's HTTP API through the edge (127.0.0.1, the root namespace's
  // loopback: nothing leaves for the lab network from here).
  static json::value prometheus(const std::string& path, const std::string& query = "") {
    std::vector<std::string> argv = {"curl", "-sS", "--fail", "--max-time", "5"};
    if (!query.empty()) argv.insert(argv.end(), {"-G", "--data-urlencode", "query=" + query});
    argv.push_back(fmt::format("http://127.0.0.1:{}{}", lab_->prometheus_port(), path));
    const auto r = ::webstack::run(argv, 10s);
    if (r.exit_code != 0) return json::value(nullptr);
    json::error_code ec;
    auto v = json::parse(r.out, ec);
    return ec ? json::value(nullptr) : v;
  }

  // The value of an instant query that yields one series; -1 when it yields none.
  static double scalar(const std::string& promql) {
    const auto v = prometheus("/api/v1/query", promql);
    if (!v.is_object()) return -1;
    const auto& result = v.at("data").at("result").as_array();
    if (result.size() != 1) return -1;
    return std::stod(std::string(result[0].at("value").as_array()[1].as_string()));
  }

  struct Firing {
    std::string name, host, summary;
    std::map<std::string, std::string> labels;
  };
  // `webstack alerts --json`: what Alertmanager has firing now.
  static std::vector<Firing> firing() {
    const auto r = cli({"alerts", "--json"}, 20s);
    std::vector<Firing> out;
    json::error_code ec;
    const auto v = json::parse(r.out, ec);
    if (r.exit_code != 0 || ec || !v.is_array()) {
      out.push_back({"(webstack alerts failed: " + r.err + r.out + ")", "", "", {}});
      return out;
    }
    for (const auto& a : v.as_array()) {
      Firing f;
      for (const auto& [k, value] : a.as_object()) {
        if (value.is_string()) f.labels[std::string(k)] = std::string(value.as_string());
      }
      f.name = f.labels["alertname"];
      f.host = f.labels["host"];
      f.summary = f.labels["summary"];
      out.push_back(std::move(f));
    }
    return out;
  }
  static std::string names(const std::vector<Firing>& alerts) {
    std::string out;
    for (const auto& a : alerts) out += " " + a.name + "{host=" + a.host + "}";
    return out.empty() ? " none" : out;
  }
  // `alert` fires with every label of `labels`.
  static bool is_firing(const std::string& alert,
                        const std::map<std::string, std::string>& labels = {}) {
    for (const auto& f : firing()) {
      if (f.name != alert) continue;
      bool all = true;
      for (const auto& [k, v] : labels) {
        const auto it = f.labels.find(k);
        all = all && it != f.labels.end() && it->second == v;
      }
      if (all) return true;
    }
    return false;
  }

  // Causes, waits for `alert` to fire (at most 30 s, the issue's bound), removes the
  // cause, waits for it to resolve; prints both times. `cause` and `cure` run the fault.
  static void fires_and_resolves(const std::string& alert,
                                 const std::map<std::string, std::string>& labels,
                                 const std::function<void()>& cause,
                                 const std::function<void()>& cure) {
    const auto t0 = Clock::now();
    cause();
    const bool fired = wait_for([&] { return is_firing(alert, labels); }, 30s, 250ms);
    const double fire_s = std::chrono::duration<double>(Clock::now() - t0).count();
    const auto seen = firing();
    const auto t1 = Clock::now();
    cure();
    const bool resolved = wait_for([&] { return !is_firing(alert, labels); }, 60s, 250ms);
    const double resolve_s = std::chrono::duration<double>(Clock::now() - t1).count();
    EXPECT_TRUE(fired) << alert << " not firing 30 s after its cause; firing:" << names(seen);
    EXPECT_TRUE(resolved) << alert << " still firing 60 s after its cause was removed";
    std::printf("%s: fired %.1f s after its cause, resolved %.1f s after the cure\n", alert.c_str(),
                fire_s, resolve_s);
  }

  static void service(const std::string& action, const std::string& target) {
    const auto r = cli({action, target}, 60s);
    ASSERT_EQ(r.exit_code, 0) << action << " " << target << ": " << r.out << r.err;
  }

  static std::map<std::string, double> app_counters(const std::string& host) {
    // The app's own /metrics, read on its host (it listens on that host's loopback).
    const auto r =
        cli({"exec", host, "--", "curl", "-sS", "--max-time", "5", "http://127.0.0.1:8080/metrics"},
            20s);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::map<std::string, double> out;
    static const std::regex line(
        R"re(^webstack_http_requests_total\{route="([a-z_]+)",status="([0-9a-z]+)"\} ([0-9.e+]+)$)re");
    std::istringstream in(r.out);
    for (std::string l; std::getline(in, l);) {
      std::smatch m;
      if (std::regex_match(l, m, line)) out[m[1].str()] += std::stod(m[3].str());
    }
    return out;
  }
};

TEST_F(MonitoringTest, EveryScrapeTargetIsUp) {
  json::value targets;
  std::string down, first_down;
  const auto t0 = std::chrono::steady_clock::now();
  const bool all_up = wait_for(
      [&] {
        targets = prometheus("/api/v1/targets", "");
        if (!targets.is_object()) return false;
        down.clear();
        for (const auto& t : targets.at("data").at("activeTargets").as_array()) {
          if (t.at("health").as_string() != "up") {
            down += fmt::format(" {}:{} {}", std::string(t.at("labels").at("job").as_string()),
                                std::string(t.at("scrapeUrl").as_string()),
                                std::string(t.at("lastError").as_string()));
          }
        }
        if (first_down.empty()) first_down = down;
        return down.empty();
      },
      30s);
  EXPECT_TRUE(all_up) << "targets down:" << down;
  std::printf("every target up after %.1f s (down at first:%s)\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
              first_down.empty() ? " none" : first_down.c_str());
  ASSERT_TRUE(targets.is_object());
  std::map<std::string, std::set<std::string>> jobs;  // job -> hosts
  for (const auto& t : targets.at("data").at("activeTargets").as_array()) {
    const auto& labels = t.at("labels").as_object();
    jobs[std::string(labels.at("job").as_string())].insert(
        std::string(labels.at("host").as_string()));
  }
  using Hosts = std::set<std::string>;
  EXPECT_EQ(jobs["haproxy"], Hosts({"lb-01", "lb-02"}));
  EXPECT_EQ(jobs["webstack-app"], Hosts({"web-01", "web-02"}));
  EXPECT_EQ(jobs["nginx"], Hosts({"web-01", "web-02"}));
  EXPECT_EQ(jobs["mysqld"], Hosts({"web-01", "web-02"}));
  EXPECT_EQ(jobs["node"], Hosts({"lb-01", "lb-02", "web-01", "web-02", "mon-01"}));
  EXPECT_EQ(jobs["site"], Hosts({"vip"}));  // the probe goes to the virtual address
  EXPECT_EQ(jobs["prometheus"], Hosts({"mon-01"}));
  EXPECT_EQ(jobs["alertmanager"], Hosts({"mon-01"}));
  EXPECT_EQ(jobs["failover-manager"], Hosts({"mon-01"}));
  // The manager reports one writable primary (its latest scrape: right after a test that
  // promoted, the one before may still say 0).
  EXPECT_TRUE(wait_for(
      [&] { return scalar(R"(webstack_failover_writable_primary{job="failover-manager"})") == 1; },
      30s, 500ms))
      << "webstack_failover_writable_primary "
      << scalar(R"(webstack_failover_writable_primary{job="failover-manager"})");
  // The blackbox probe really fetched the site over HTTPS, verified with the lab CA (its
  // latest probe: one that an earlier test's fault failed is followed by a good one).
  EXPECT_TRUE(wait_for(
      [&] {
        return scalar(R"(probe_success{job="site"})") == 1 &&
               scalar(R"(probe_http_ssl{job="site"})") == 1;
      },
      20s, 500ms))
      << "probe_success " << scalar(R"(probe_success{job="site"})") << ", probe_http_ssl "
      << scalar(R"(probe_http_ssl{job="site"})");
  // Alertmanager answers through the edge too.
  const auto am =
      ::webstack::run({"curl", "-sS", "--fail", "--max-time", "5",
                       fmt::format("http://127.0.0.1:{}/-/ready", lab_->alertmanager_port())},
                      10s);
  EXPECT_EQ(am.exit_code, 0) << am.err;
}

// N requests from the client raise the per-route counter, summed over both web hosts, by
// exactly N, in the app and then in Prometheus.
TEST_F(MonitoringTest, AppCountersAgreeWithWhatTheClientSent) {
  constexpr int kRequests = 300;
  const auto sum = [] { return app_counters("web-01")["json"] + app_counters("web-02")["json"]; };
  const double before = sum();
  const std::string promql =
      R"(sum(webstack_http_requests_total{job="webstack-app",route="json"}))";
  // Prometheus has scraped what the apps count now (nothing else sends /json).
  ASSERT_TRUE(wait_for([&] { return scalar(promql) == before || before == 0; }, 20s));
  int failed = 0;
  auto client = in_namespace(lab_->client_namespace(), [&] {
    HttpClient c(443, 5s, lab_->lb_address());
    c.use_tls({lab_->ca_file(), "www.foobar.test"});
    for (int i = 0; i < kRequests; ++i) {
      try {
        if (c.get("/json").status != 200) ++failed;
      } catch (const std::exception&) {
        ++failed;
        c.close();
      }
    }
  });
  client.join();
  EXPECT_EQ(failed, 0);
  EXPECT_EQ(sum() - before, kRequests);
  double seen = -1;
  EXPECT_TRUE(wait_for(
      [&] {
        seen = scalar(promql);
        return seen == before + kRequests;
      },
      20s))
      << "Prometheus has " << seen << ", the apps " << before + kRequests;
  // status shows the figures per web host.
  const auto st = cli({"status"});
  EXPECT_NE(st.out.find("monitoring (Prometheus"), std::string::npos) << st.out;
}

TEST_F(MonitoringTest, BackendServerDownWhenAWebHostsAppStops) {
  fires_and_resolves(
      "BackendServerDown", {{"server", "web-01"}, {"host", "lb-01"}},
      [] { service("stop", "web-01/webstack-app"); },
      [] { service("start", "web-01/webstack-app"); });
}

TEST_F(MonitoringTest, BackendServerDownWhenAWebHostsAppHangs) {
  // SIGSTOP: the app holds its connections and answers nothing; HAProxy's checks time out.
  fires_and_resolves(
      "BackendServerDown", {{"server", "web-02"}, {"host", "lb-01"}},
      [] { service("pause", "web-02/webstack-app"); },
      [] { service("resume", "web-02/webstack-app"); });
}

TEST_F(MonitoringTest, ReplicationStoppedWhenTheReplicasSqlThreadStops) {
  fires_and_resolves(
      "ReplicationStopped", {{"host", "web-02"}},
      [] { lab_->sql("web-02", "STOP SLAVE SQL_THREAD"); },
      [] { lab_->sql("web-02", "START SLAVE SQL_THREAD"); });
}

TEST_F(MonitoringTest, DatabaseDownWhenTheReplicaStops) {
  // Held down (s6 would restart a killed server within a second: too short to alert on).
  fires_and_resolves(
      "DatabaseDown", {{"host", "web-02"}}, [] { service("stop", "web-02/mariadb"); },
      [] { service("start", "web-02/mariadb"); });
  // The replica is back and replicating (the next tests start from a whole site).
  EXPECT_TRUE(wait_for(
      [] {
        return lab_->sql("web-02",
                         "SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                         "WHERE COMMAND = 'Slave_IO'") == "1\n";
      },
      30s));
}

// Semi-synchronous replication: with the replica's IO thread stopped, a write waits for
// an acknowledgement that does not come until the primary's fencing agent releases it,
// and the primary falls back to asynchronous replication; it returns to semi-sync once
// the replica has caught up.
TEST_F(MonitoringTest, SemiSyncFallenBackWhenNoReplicaAcknowledges) {
  const auto write = [](const std::string& text) {
    const auto out =
        lab_->client_curl({"-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "-H",
                           "Content-Type: application/json", "--max-time", "10", "--data",
                           R"({"author":"semi-sync-test","text":")" + text + R"("})",
                           lab_->site_url("/api/messages")});
    EXPECT_EQ(out, "201") << "the write waits, then succeeds";
  };
  const auto semi_sync = [] {
    return lab_->sql("web-01",
                     "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE "
                     "VARIABLE_NAME = 'RPL_SEMI_SYNC_MASTER_STATUS'");
  };
  ASSERT_EQ(semi_sync(), "ON\n");
  fires_and_resolves(
      "SemiSyncFallenBack", {{"host", "web-01"}},
      [&] {
        lab_->sql("web-02", "STOP SLAVE IO_THREAD");
        // The first write waits until the fencing agent releases it (3 s); the next one's
        // short wait turns semi-sync off, MariaDB's way (docs/high-availability.md).
        write("while no replica acknowledges");
        write("and the next one");
      },
      [&] {
        lab_->sql("web-02", "START SLAVE IO_THREAD");
        write("after the replica is back");
      });
  EXPECT_EQ(semi_sync(), "ON\n");
  const auto st = lab_->cli({"status"}, 30s);
  EXPECT_NE(st.out.find("semi-sync=on"), std::string::npos) << st.out;
}

// One balancer's HAProxy stopping is not an outage (the other takes the virtual address
// over): the site is down when both are.
TEST_F(MonitoringTest, SiteDownWhenBothLoadBalancersStop) {
  fires_and_resolves(
      "SiteDown", {},
      [] {
        service("stop", "lb-01/haproxy");
        service("stop", "lb-02/haproxy");
      },
      [] {
        service("start", "lb-01/haproxy");
        service("start", "lb-02/haproxy");
      });
}

// The app answers 503 to writes while its primary is away; guestbook posts from the
// client keep coming, so the share of 5xx through the load balancer rises.
TEST_F(MonitoringTest, High5xxRateWhenTheAppLosesItsPrimary) {
  std::atomic<bool> stop{false};
  std::atomic<int> sent{0}, errors{0};
  auto load = in_namespace(lab_->client_namespace(), [&] {
    HttpClient c(443, 5s, lab_->lb_address());
    c.use_tls({lab_->ca_file(), "www.foobar.test"});
    const auto deadline = Clock::now() + 120s;  // bounded, whatever happens
    while (!stop && Clock::now() < deadline) {
      try {
        const auto r = c.post("/api/messages", R"({"author":"monitoring-test","text":"5xx"})",
                              "application/json");
        if (r.status >= 500) ++errors;
      } catch (const std::exception&) {
        c.close();
      }
      ++sent;
      std::this_thread::sleep_for(20ms);  // pacing of the load, about 50 posts/s
    }
  });
  // The failover manager paused: it would promote web-02 within seconds, and the 5xx
  // would stop before the alert's `for`. Resumed, it does (web-01 comes back read-only),
  // and the alert resolves; web-01 is then made the primary again for the other tests.
  fires_and_resolves(
      "High5xxRate", {},
      [] {
        ASSERT_EQ(lab_->cli({"failover", "pause"}, 30s).exit_code, 0);
        service("stop", "web-01/mariadb");
      },
      [] {
        service("start", "web-01/mariadb");
        ASSERT_EQ(lab_->cli({"failover", "resume"}, 30s).exit_code, 0);
      });
  if (lab_->sql("web-01", "SELECT @@GLOBAL.read_only") != "0\n") {
    const auto back = lab_->cli({"db", "promote", "web-01"}, 90s);
    EXPECT_EQ(back.exit_code, 0) << back.out << back.err;
  }
  stop = true;
  load.join();
  EXPECT_GT(errors.load(), 0) << sent.load() << " posts, none answered 5xx";
  std::printf("%d posts, %d answered 5xx\n", sent.load(), errors.load());
}

}  // namespace
