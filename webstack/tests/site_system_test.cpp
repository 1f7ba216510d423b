// System test of `webstack up` / `webstack down`: the whole site on real namespaces with the
// real binaries (haproxy, nginx, mariadbd, s6, webstack-app), driven through the CLI. Needs
// root (skipped otherwise). Uses a lab of its own ("wsu" + a pid-derived suffix,
// 10.198.N.0/24, a free edge port, a state dir under /tmp); every request is sent from the
// client host's namespace (`webstack exec client -- curl ...`), never from the root
// namespace. TearDown always runs `down --purge`.
#include <netinet/in.h>
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
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "lab/process.hpp"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using webstack::lab::port_free;
using webstack::lab::ProcessResult;
using webstack::lab::run;

std::string cli_path() {
  return (fs::read_symlink("/proc/self/exe").parent_path() / "webstack").string();
}

std::uint16_t free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

// Processes whose command line names `dir` (other than this test).
std::vector<std::string> processes_naming(const std::string& dir) {
  std::vector<std::string> found;
  for (const auto& e : fs::directory_iterator("/proc")) {
    const auto name = e.path().filename().string();
    if (!std::all_of(name.begin(), name.end(), ::isdigit) || std::stoi(name) == ::getpid()) {
      continue;
    }
    std::ifstream in(e.path() / "cmdline", std::ios::binary);
    std::string cmd((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::replace(cmd.begin(), cmd.end(), '\0', ' ');
    if (cmd.find(dir) != std::string::npos) found.push_back(name + ": " + cmd);
  }
  return found;
}

class SiteSystemTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_FAIL() << "needs root";
    char buf[16];
    std::snprintf(buf, sizeof buf, "wsu%05x", static_cast<unsigned>(::getpid()) & 0xfffffu);
    lab_ = buf;
    std::random_device rd;
    net_ = "10.198." + std::to_string(16 + static_cast<int>(rd() % 224)) + ".";
    edge_port_ = free_port();
    dir_ = "/tmp/" + lab_ + "-site";
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    fs::permissions(dir_, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                              fs::perms::others_read | fs::perms::others_exec);
    state_ = dir_ + "/state";
    topology_ = dir_ + "/site.toml";
    std::ofstream out(topology_);
    out << "[lab]\nname = \"" << lab_ << "\"\nsubnet = \"" << net_
        << "0/24\"\nedge_port = " << edge_port_ << "\n"
        << "[[host]]\nname = \"lb-01\"\naddress = \"" << net_ << "10\"\nroles = [\"lb\"]\n"
        << "[[host]]\nname = \"web-01\"\naddress = \"" << net_ << "11\"\n"
        << "roles = [\"web\", \"db\"]\ndb = \"primary\"\n"
        << "[[host]]\nname = \"web-02\"\naddress = \"" << net_ << "12\"\n"
        << "roles = [\"web\", \"db\"]\ndb = \"replica\"\n"
        << "[[host]]\nname = \"client\"\naddress = \"" << net_ << "100\"\nroles = [\"client\"]\n";
  }

  void TearDown() override {
    if (lab_.empty()) return;
    const auto r = cli({"down", "--purge"}, 30s);
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  ProcessResult cli(std::vector<std::string> args, std::chrono::milliseconds timeout) {
    std::vector<std::string> argv = {cli_path(), args.front(), "-f", topology_};
    if (args.front() != "exec") argv.insert(argv.end(), {"--state-dir", state_});
    argv.insert(argv.end(), args.begin() + 1, args.end());
    return run(argv, timeout);
  }

  // curl in the client host's namespace; returns stdout.
  std::string client_curl(const std::vector<std::string>& curl_args) {
    std::vector<std::string> args = {"exec", "client", "--", "curl", "-s", "--max-time", "5"};
    args.insert(args.end(), curl_args.begin(), curl_args.end());
    const auto r = cli(args, 15s);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.out;
  }

  std::string lb_url(const std::string& path) const { return "http://" + net_ + "10" + path; }

  std::string lab_, net_, dir_, state_, topology_;
  std::uint16_t edge_port_ = 0;
};

TEST_F(SiteSystemTest, UpServesTheSiteThroughTheLoadBalancerAndDownLeavesNothing) {
  const auto t0 = std::chrono::steady_clock::now();
  const auto up = cli({"up"}, 120s);
  ASSERT_EQ(up.exit_code, 0) << up.out << up.err;
  EXPECT_NE(up.out.find("http://127.0.0.1:" + std::to_string(edge_port_) + "/"), std::string::npos)
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
    EXPECT_EQ(o.at("lab").as_string(), lab_);
    EXPECT_TRUE(o.at("up").as_bool()) << st.out;
    for (const auto& h : o.at("hosts").as_array()) {
      EXPECT_TRUE(h.at("namespace_ok").as_bool()) << h;
      for (const auto& svc : h.at("services").as_array()) {
        EXPECT_TRUE(svc.at("up").as_bool()) << h.at("name") << ": " << svc;
        EXPECT_GT(svc.at("pid").as_int64(), 0) << svc;
      }
    }
    const auto& lbs = o.at("load_balancers").as_array();
    ASSERT_EQ(lbs.size(), 1u) << st.out;
    std::set<std::string> up_servers;
    for (const auto& srv : lbs[0].at("servers").as_array()) {
      EXPECT_EQ(srv.at("status").as_string(), "UP") << srv;
      up_servers.insert(std::string(srv.at("name").as_string()));
    }
    EXPECT_EQ(up_servers, (std::set<std::string>{"web-01", "web-02"})) << st.out;
    const auto& repl = o.at("replication").as_array();
    ASSERT_EQ(repl.size(), 1u) << st.out;
    EXPECT_EQ(repl[0].at("host").as_string(), "web-02");
    EXPECT_TRUE(repl[0].at("io_running").as_bool()) << repl[0];
    EXPECT_TRUE(repl[0].at("sql_running").as_bool()) << repl[0];

    const auto table = cli({"status"}, 60s);
    EXPECT_EQ(table.exit_code, 0) << table.out << table.err;
    EXPECT_NE(table.out.find("backend web"), std::string::npos) << table.out;
  }

  // Round robin: 20 sequential requests alternate between the two web hosts.
  std::vector<std::string> served;
  for (int i = 0; i < 20; ++i) {
    const auto out =
        client_curl({"-o", "/dev/null", "-w", "%{http_code} %header{x-served-by}", lb_url("/db")});
    ASSERT_EQ(out.substr(0, 4), "200 ") << "request " << i << ": " << out;
    served.push_back(out.substr(4));
  }
  EXPECT_EQ(std::set<std::string>(served.begin(), served.end()),
            (std::set<std::string>{"web-01", "web-02"}));
  for (std::size_t i = 1; i < served.size(); ++i) {
    EXPECT_NE(served[i], served[i - 1]) << "requests " << i - 1 << " and " << i;
  }

  // The guestbook: a POST through the lb, then a read with the returned cookie sees it.
  const std::string text = "hello from the system test " + std::to_string(::getpid());
  const auto posted = client_curl(
      {"-D", "-", "-o", "/dev/null", "-X", "POST", "-H", "Content-Type: application/json", "--data",
       R"({"author":"system-test","text":")" + text + R"("})", lb_url("/api/messages")});
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
    const auto list = client_curl({"-H", "Cookie: " + cookie, lb_url("/api/messages")});
    EXPECT_NE(list.find(text), std::string::npos) << list;
  }

  const auto down_start = std::chrono::steady_clock::now();
  const auto down = cli({"down"}, 30s);
  const auto down_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::steady_clock::now() - down_start)
                           .count();
  ASSERT_EQ(down.exit_code, 0) << down.out << down.err;
  EXPECT_LT(down_ms, 5000);

  // status after down: the lab is down, exit 3.
  const auto down_status = cli({"status"}, 30s);
  EXPECT_EQ(down_status.exit_code, 3) << down_status.out << down_status.err;
  EXPECT_NE(down_status.out.find("down"), std::string::npos) << down_status.out;

  const auto netns = run({"ip", "netns", "list"});
  EXPECT_EQ(netns.out.find(lab_ + "-"), std::string::npos) << netns.out;
  const auto procs = processes_naming(state_);
  EXPECT_TRUE(procs.empty()) << procs.front();
  EXPECT_TRUE(port_free(edge_port_)) << "edge port " << edge_port_ << " still taken";
  std::printf("site up + checks + down in %.1f s (down %lld ms)\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
              static_cast<long long>(down_ms));
}

TEST_F(SiteSystemTest, PurgeRefusesADirectoryUpDidNotMake) {
  // The lab is not up: down only has namespaces that do not exist to remove, and --purge
  // must leave a directory that is not a lab's state alone.
  fs::create_directories(state_ + "/precious");
  const auto r = cli({"down", "--purge"}, 30s);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE((r.out + r.err).find("not a webstack state directory"), std::string::npos)
      << r.out << r.err;
  EXPECT_TRUE(fs::exists(state_ + "/precious"));
  fs::remove_all(state_);  // so that TearDown's down --purge has nothing to refuse
}

}  // namespace
