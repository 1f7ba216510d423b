// System test of `webstack up` / `webstack down`: the whole site on real namespaces with the
// real binaries (haproxy, nginx, mariadbd, s6, webstack-app), driven through the CLI, and
// what `up` does when it must not start (a bad topology, not root, the edge port taken, a
// program missing). Needs root. Each test has a lab of its own (test_lab.hpp); every
// request is sent from the client host's namespace, never from the root namespace.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <boost/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "common/process.hpp"
#include "lab/site.hpp"
#include "test_lab.hpp"
#include "topology/topology.hpp"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using ::webstack::port_free;
using ::webstack::ProcessResult;
using ::webstack::run;
using webstack::test::processes_naming;
using webstack::test::TestLab;

class SiteSystemTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_FAIL() << "needs root";
    lab_ = std::make_unique<TestLab>("wsu");
  }
  void TearDown() override { lab_.reset(); }

  ProcessResult cli(std::vector<std::string> args, std::chrono::milliseconds timeout) {
    return lab_->cli(std::move(args), timeout);
  }
  std::string client_curl(const std::vector<std::string>& curl_args) {
    return lab_->client_curl(curl_args);
  }
  std::string site_url(const std::string& path) const { return lab_->site_url(path); }

  // Nothing of the lab exists: no namespace, no process naming its state, no state dir.
  void expect_nothing_started() const {
    const auto netns = run({"ip", "netns", "list"});
    EXPECT_EQ(netns.out.find(lab_->name() + "-"), std::string::npos) << netns.out;
    const auto procs = processes_naming(lab_->state());
    EXPECT_TRUE(procs.empty()) << procs.front();
    EXPECT_FALSE(fs::exists(lab_->state())) << lab_->state();
    EXPECT_TRUE(port_free(lab_->edge_port()));
  }

  // The failure is one line on stderr, nothing on stdout.
  static void expect_one_line_error(const ProcessResult& r, const std::string& says) {
    EXPECT_NE(r.exit_code, 0);
    EXPECT_EQ(r.out, "");
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_NE(r.err.find(says), std::string::npos) << r.err;
  }

  std::unique_ptr<TestLab> lab_;
};

TEST_F(SiteSystemTest, UpServesTheSiteThroughTheLoadBalancerAndDownLeavesNothing) {
  const auto t0 = std::chrono::steady_clock::now();
  const auto up = cli({"up"}, 120s);
  ASSERT_EQ(up.exit_code, 0) << up.out << up.err;
  EXPECT_NE(up.out.find("https://127.0.0.1:" + std::to_string(lab_->edge_port()) + "/"),
            std::string::npos)
      << up.out;

  // A second up finds the lab up and starts nothing.
  const auto again = cli({"up"}, 60s);
  EXPECT_EQ(again.exit_code, 0) << again.out << again.err;
  EXPECT_NE(again.out.find("already up"), std::string::npos) << again.out;

  // `status` is checked inside this test (right after up, and exit 3 after down below) so
  // that the lab is brought up only once.
  {
    const auto st = cli({"status", "--json"}, 60s);
    ASSERT_EQ(st.exit_code, 0) << st.out << st.err;
    boost::system::error_code ec;
    const auto v = boost::json::parse(st.out, ec);
    ASSERT_FALSE(ec) << ec.message() << ": " << st.out;
    const auto& o = v.as_object();
    EXPECT_EQ(o.at("lab").as_string(), lab_->name());
    EXPECT_TRUE(o.at("up").as_bool()) << st.out;
    for (const auto& h : o.at("hosts").as_array()) {
      EXPECT_TRUE(h.at("namespace_ok").as_bool()) << h;
      for (const auto& svc : h.at("services").as_array()) {
        EXPECT_TRUE(svc.at("up").as_bool()) << h.at("name") << ": " << svc;
        EXPECT_GT(svc.at("pid").as_int64(), 0) << svc;
      }
    }
    // Both balancers see both web servers UP; one of them holds the virtual address.
    const auto& lbs = o.at("load_balancers").as_array();
    ASSERT_EQ(lbs.size(), 2u) << st.out;
    for (const auto& lb : lbs) {
      std::set<std::string> up_servers;
      for (const auto& srv : lb.at("servers").as_array()) {
        EXPECT_EQ(srv.at("status").as_string(), "UP") << srv;
        up_servers.insert(std::string(srv.at("name").as_string()));
      }
      EXPECT_EQ(up_servers, (std::set<std::string>{"web-01", "web-02"})) << lb;
    }
    const auto& vips = o.at("virtual_addresses").as_array();
    ASSERT_EQ(vips.size(), 1u) << st.out;
    EXPECT_EQ(vips[0].at("held_by").as_array().size(), 1u) << vips[0];
    EXPECT_EQ(o.at("primary").at("semi_sync").as_string(), "on") << st.out;
    const auto& repl = o.at("replication").as_array();
    ASSERT_EQ(repl.size(), 1u) << st.out;
    EXPECT_EQ(repl[0].at("host").as_string(), "web-02");
    EXPECT_TRUE(repl[0].at("io_running").as_bool()) << repl[0];
    EXPECT_TRUE(repl[0].at("sql_running").as_bool()) << repl[0];

    const auto table = cli({"status"}, 60s);
    EXPECT_EQ(table.exit_code, 0) << table.out << table.err;
    EXPECT_NE(table.out.find("backend web"), std::string::npos) << table.out;
  }

  // Round robin: 20 sequential requests alternate between the two web hosts, except
  // where another request (the monitor's probe of the site, every 2 s, through the same
  // balancer) took a turn in between: counted at the balancers.
  const long long balanced_before = webstack::test::balanced_requests(*lab_);
  std::vector<std::string> served;
  for (int i = 0; i < 20; ++i) {
    const auto out = client_curl(
        {"-o", "/dev/null", "-w", "%{http_code} %header{x-served-by}", site_url("/db")});
    ASSERT_EQ(out.substr(0, 4), "200 ") << "request " << i << ": " << out;
    served.push_back(out.substr(4));
  }
  EXPECT_EQ(std::set<std::string>(served.begin(), served.end()),
            (std::set<std::string>{"web-01", "web-02"}));
  const long long others = webstack::test::balanced_requests(*lab_) - balanced_before - 20;
  int repeats = 0;
  for (std::size_t i = 1; i < served.size(); ++i) repeats += served[i] == served[i - 1] ? 1 : 0;
  const auto web01 = std::count(served.begin(), served.end(), "web-01");
  // Each request of others makes at most one repeat in this sequence.
  EXPECT_LE(repeats, std::max(0LL, others)) << "round robin should alternate";
  EXPECT_LE(std::abs(2 * web01 - 20), 1 + std::max(0LL, others));
  std::printf("20 requests: web-01 %ld, %d repeats, %lld requests of others meanwhile\n", web01,
              repeats, others);

  // The guestbook: a POST through the lb, then a read with the returned cookie sees it.
  const std::string text = "hello from the system test " + std::to_string(::getpid());
  const auto posted = client_curl(
      {"-D", "-", "-o", "/dev/null", "-X", "POST", "-H", "Content-Type: application/json", "--data",
       R"({"author":"system-test","text":")" + text + R"("})", site_url("/api/messages")});
  ASSERT_NE(posted.find(" 201"), std::string::npos) << posted;
  std::string cookie;
  {
    std::istringstream lines(posted);
    for (std::string line; std::getline(lines, line);) {
      std::string lower = line;
      std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
      if (lower.rfind("set-cookie:", 0) != 0) continue;
      const auto v = line.find("ws_gtid=");
      if (v != std::string::npos) cookie = line.substr(v, line.find(';', v) - v);
    }
  }
  ASSERT_FALSE(cookie.empty()) << posted;
  // Twice, so that both web hosts (and so the replica read path) answer.
  for (int i = 0; i < 2; ++i) {
    const auto list = client_curl({"-H", "Cookie: " + cookie, site_url("/api/messages")});
    EXPECT_NE(list.find(text), std::string::npos) << list;
  }

  const auto down_start = std::chrono::steady_clock::now();
  const auto down = cli({"down"}, 30s);
  const auto down_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::steady_clock::now() - down_start)
                           .count();
  ASSERT_EQ(down.exit_code, 0) << down.out << down.err;
  std::printf("down: %lld ms\n", static_cast<long long>(down_ms));

  // status after down: the lab is down, exit 3.
  const auto down_status = cli({"status"}, 30s);
  EXPECT_EQ(down_status.exit_code, 3) << down_status.out << down_status.err;
  EXPECT_NE(down_status.out.find("down"), std::string::npos) << down_status.out;

  const auto netns = run({"ip", "netns", "list"});
  EXPECT_EQ(netns.out.find(lab_->name() + "-"), std::string::npos) << netns.out;
  const auto procs = processes_naming(lab_->state());
  EXPECT_TRUE(procs.empty()) << procs.front();
  EXPECT_TRUE(port_free(lab_->edge_port())) << "edge port " << lab_->edge_port() << " still taken";
  std::printf("site up + checks + down in %.1f s (down %lld ms)\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
              static_cast<long long>(down_ms));
}

// The command name of `pid` (/proc/<pid>/comm), "" when gone.
std::string comm_of(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/comm");
  std::string name;
  std::getline(in, name);
  return name;
}

TEST_F(SiteSystemTest, UpAndDownRecoverFromCrashes) {
  const auto topology = webstack::topo::load_topology_file(lab_->topology());
  ASSERT_EQ(cli({"up"}, 120s).exit_code, 0);
  const std::string text = "kept across crashes " + std::to_string(::getpid());
  const auto posted = client_curl(
      {"-o", "/dev/null", "-w", "%{http_code}", "-H", "Content-Type: application/json", "--data",
       R"({"author":"crash","text":")" + text + R"("})", site_url("/api/messages")});
  ASSERT_EQ(posted, "201");

  // 1. Everything of the lab killed at once (the machine's processes crashed): namespaces
  // and pid files are left. `up` cleans that, comes back on the same data, replicating.
  auto procs = webstack::lab::site_processes(topology, lab_->state());
  ASSERT_FALSE(procs.empty());
  for (int pid : procs) ::kill(pid, SIGKILL);
  ASSERT_TRUE(webstack::test::wait_for(
      [&] { return webstack::lab::site_processes(topology, lab_->state()).empty(); }, 10s));
  const auto again = cli({"up"}, 120s);
  ASSERT_EQ(again.exit_code, 0) << again.out << again.err;
  EXPECT_NE(again.out.find("clean up a partial lab"), std::string::npos) << again.out;
  EXPECT_EQ(again.out.find("bootstrap"), std::string::npos) << "data was bootstrapped again";
  const auto step = again.out.find("replication running and caught up ...");
  ASSERT_NE(step, std::string::npos) << again.out;
  EXPECT_NE(again.out.substr(step, again.out.find('\n', step) - step).find(" ok ("),
            std::string::npos)
      << again.out;
  EXPECT_NE(client_curl({site_url("/api/messages")}).find(text), std::string::npos);

  // 2. Only the supervision killed (s6-svscan and its s6-supervise): the services run on,
  // orphaned. `down` still finds and stops every one of them.
  int s6_killed = 0;
  for (int pid : webstack::lab::site_processes(topology, lab_->state())) {
    const auto name = comm_of(pid);
    if (name == "s6-svscan" || name == "s6-supervise") s6_killed += ::kill(pid, SIGKILL) == 0;
  }
  EXPECT_GE(s6_killed, 1 + 8);  // s6-svscan, a supervisor per service and per logger
  const auto down = cli({"down"}, 30s);
  EXPECT_EQ(down.exit_code, 0) << down.out << down.err;
  const auto netns = run({"ip", "netns", "list"});
  EXPECT_EQ(netns.out.find(lab_->name() + "-"), std::string::npos) << netns.out;
  EXPECT_TRUE(webstack::lab::site_processes(topology, lab_->state()).empty());
  EXPECT_TRUE(processes_naming(lab_->state()).empty());
  EXPECT_TRUE(port_free(lab_->edge_port()));
}

TEST_F(SiteSystemTest, PurgeRefusesADirectoryUpDidNotMake) {
  // The lab is not up: down only has namespaces that do not exist to remove, and --purge
  // must leave a directory that is not a lab's state alone.
  fs::create_directories(lab_->state() + "/precious");
  const auto r = cli({"down", "--purge"}, 30s);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE((r.out + r.err).find("not a webstack state directory"), std::string::npos)
      << r.out << r.err;
  EXPECT_TRUE(fs::exists(lab_->state() + "/precious"));
  fs::remove_all(lab_->state());  // so that TearDown's down --purge has nothing to refuse
}

TEST_F(SiteSystemTest, ABadTopologyStartsNothing) {
  // Two primaries: the error names the file, the line and the key; nothing is created.
  std::string text;
  {
    std::ifstream in(lab_->topology());
    text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  const auto replica = text.find("db = \"replica\"");
  ASSERT_NE(replica, std::string::npos) << text;
  text.replace(replica, std::string("db = \"replica\"").size(), "db = \"primary\"");
  const std::string bad = lab_->dir() + "/two-primaries.toml";
  std::ofstream(bad) << text;
  const auto r =
      run({webstack::test::cli_path(), "up", "-f", bad, "--state-dir", lab_->state()}, 60s);
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_NE(r.err.find(bad + ":"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("two primaries"), std::string::npos) << r.err;
  expect_nothing_started();
}

TEST_F(SiteSystemTest, NotRootStartsNothing) {
  // A copy of the binary the unprivileged user can run (the build tree may not be open to
  // it); the topology directory is world-readable (test_lab.cpp).
  const std::string copy = lab_->dir() + "/webstack";
  fs::copy_file(webstack::test::cli_path(), copy);
  fs::permissions(copy, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                            fs::perms::others_read | fs::perms::others_exec);
  const auto r = run({"setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", copy, "up",
                      "-f", lab_->topology(), "--state-dir", lab_->state()},
                     60s);
  expect_one_line_error(r, "must run as root");
  expect_nothing_started();
}

TEST_F(SiteSystemTest, EdgePortInUseStartsNothing) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(lab_->edge_port());
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(fd, 1), 0);
  const auto r = cli({"up"}, 60s);
  ::close(fd);
  expect_one_line_error(r,
                        "edge port 127.0.0.1:" + std::to_string(lab_->edge_port()) + " is in use");
  expect_nothing_started();
}

TEST_F(SiteSystemTest, MissingProgramStartsNothing) {
  // No PATH in which any of the servers can be found: the first one missing is named
  // with its Debian package.
  const auto r = run({"env", "PATH=" + lab_->dir() + "/empty-bin", webstack::test::cli_path(), "up",
                      "-f", lab_->topology(), "--state-dir", lab_->state()},
                     60s);
  expect_one_line_error(r, "haproxy not found in PATH: install the Debian package haproxy");
  expect_nothing_started();
}

}  // namespace
