// System tests of the lab network: real namespaces, veth pairs and a bridge. They need root
// and iproute2 (skipped otherwise) and use a lab name and subnet of their own ("wst" + a
// pid-derived suffix, 10.199.N.0/24), so they touch no other namespace. All traffic is
// between lab namespaces: sockets are opened inside them (setns on a helper thread), never
// from the root namespace.
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/process.hpp"
#include "common/time.hpp"
#include "lab/network.hpp"
#include "topology/topology.hpp"

namespace {

using namespace webstack;
using Clock = std::chrono::steady_clock;

std::string lab_name() {
  char buf[16];
  std::snprintf(buf, sizeof buf, "wst%05x", static_cast<unsigned>(::getpid()) & 0xfffffu);
  return buf;
}

topo::Topology make_topology() {
  std::random_device rd;
  const int third = 16 + static_cast<int>(rd() % 224);
  const std::string net = "10.199." + std::to_string(third) + ".";
  std::ostringstream toml;
  toml << "[lab]\nname = \"" << lab_name() << "\"\nsubnet = \"" << net << "0/24\"\n"
       << "[[host]]\nname = \"lb-01\"\naddress = \"" << net << "10\"\nroles = [\"lb\"]\n"
       << "[[host]]\nname = \"web-01\"\naddress = \"" << net << "11\"\n"
       << "roles = [\"web\", \"db\"]\ndb = \"primary\"\n"
       << "[[host]]\nname = \"web-02\"\naddress = \"" << net << "12\"\n"
       << "roles = [\"web\", \"db\"]\ndb = \"replica\"\n"
       << "[[host]]\nname = \"web-03\"\naddress = \"" << net << "13\"\nroles = [\"web\"]\n"
       << "[[host]]\nname = \"client\"\naddress = \"" << net << "100\"\nroles = [\"client\"]\n";
  return topo::parse_topology(toml.str(), "<system test>");
}

std::set<std::string> namespaces() {
  std::set<std::string> out;
  std::istringstream in(::webstack::run_checked({"ip", "netns", "list"}));
  std::string name;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    if (words >> name) {
      out.insert(name);
    }
  }
  return out;
}

// The namespaces named with the lab's prefix ("<lab>-").
std::vector<std::string> lab_namespaces(const topo::Topology& t) {
  std::vector<std::string> out;
  for (const auto& ns : namespaces()) {
    if (ns.rfind(t.name + "-", 0) == 0) {
      out.push_back(ns);
    }
  }
  return out;
}

// A TCP socket created inside network namespace `ns` (it stays there for its lifetime).
int socket_in(const std::string& ns) {
  int fd = -1;
  std::thread th([&] {
    const int nsfd = ::open(("/run/netns/" + ns).c_str(), O_RDONLY | O_CLOEXEC);
    if (nsfd < 0) {
      return;
    }
    if (::setns(nsfd, CLONE_NEWNET) == 0) {
      fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    }
    ::close(nsfd);
  });
  th.join();
  return fd;
}

sockaddr_in ipv4(const std::string& address, std::uint16_t port) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  ::inet_pton(AF_INET, address.c_str(), &sa.sin_addr);
  return sa;
}

// A TCP connection from `client_ns` to a listener on `server_address` in `server_ns`.
// Returns "" on success, else what went wrong.
std::string tcp_check(const std::string& client_ns, const std::string& server_ns,
                      const std::string& server_address) {
  const int listener = socket_in(server_ns);
  const int client = socket_in(client_ns);
  std::string error;
  auto done = [&](const std::string& e) {
    for (int fd : {listener, client}) {
      if (fd >= 0) {
        ::close(fd);
      }
    }
    return e;
  };
  if (listener < 0 || client < 0) {
    return done("cannot open a socket in the namespaces");
  }
  sockaddr_in sa = ipv4(server_address, 0);
  if (::bind(listener, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 ||
      ::listen(listener, 4) != 0) {
    return done("bind/listen on " + server_address + " in " + server_ns + " failed");
  }
  socklen_t len = sizeof sa;
  ::getsockname(listener, reinterpret_cast<sockaddr*>(&sa), &len);
  ::fcntl(client, F_SETFL, ::fcntl(client, F_GETFL) | O_NONBLOCK);
  const int rc = ::connect(client, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  if (rc != 0 && errno != EINPROGRESS) {
    return done("connect failed at once: errno " + std::to_string(errno));
  }
  pollfd p{client, POLLOUT, 0};
  if (::poll(&p, 1, 3000) != 1) {
    return done("connect timed out");
  }
  int so_error = 0;
  len = sizeof so_error;
  ::getsockopt(client, SOL_SOCKET, SO_ERROR, &so_error, &len);
  if (so_error != 0) {
    return done("connect failed: errno " + std::to_string(so_error));
  }
  pollfd a{listener, POLLIN, 0};
  if (::poll(&a, 1, 3000) != 1) {
    return done("nothing to accept");
  }
  const int conn = ::accept(listener, nullptr, nullptr);
  if (conn < 0) {
    return done("accept failed");
  }
  ::close(conn);
  return done("");
}

bool have_program(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path != nullptr ? path : "/usr/sbin:/usr/bin:/sbin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (!dir.empty() && ::access(std::string(dir).append("/").append(name).c_str(), X_OK) == 0) {
      return true;
    }
  }
  return false;
}

class LabNetworkSystem : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) {
      GTEST_FAIL() << "needs root (network namespaces)";
    }
    if (::webstack::run({"ip", "-V"}).exit_code != 0) {
      GTEST_FAIL() << "needs iproute2";
    }
    topology_ = make_topology();
    ASSERT_TRUE(lab_namespaces(topology_).empty())
        << "namespaces with this test's lab prefix exist already";
  }

  void TearDown() override {
    if (::geteuid() != 0) {
      return;
    }
    if (!blocker_.empty()) {
      (void)::webstack::run({"ip", "link", "del", blocker_});
    }
    lab::network_down(topology_);
    EXPECT_TRUE(lab_namespaces(topology_).empty());
    EXPECT_EQ(lab::root_namespace_leaks(topology_), "");
  }

  std::string ns(const std::string& host) const { return lab::host_namespace(topology_, host); }
  const std::string& address(const std::string& host) const {
    return topology_.find(host)->address;
  }

  void expect_all_up() const {
    for (const auto& s : lab::network_status(topology_)) {
      EXPECT_TRUE(s.ns_exists) << s.ns;
      EXPECT_TRUE(s.address_ok) << s.ns << " " << s.address;
    }
  }

  // Blocks up() on host `index`: a bridge (not a veth) in the root namespace named as
  // that host's temporary veth end.
  void block_host(std::size_t index) {
    blocker_ = lab::temp_veth_name(topology_, index, true);
    ::webstack::run_checked({"ip", "link", "add", blocker_, "type", "bridge"});
  }
  void unblock() {
    ::webstack::run_checked({"ip", "link", "del", blocker_});
    blocker_.clear();
  }

  topo::Topology topology_;
  std::string blocker_;
};

TEST_F(LabNetworkSystem, UpCreatesNamespacesAndConnectsTheHosts) {
  const auto start = Clock::now();
  const auto log = lab::network_up(topology_);
  const double up_ms = ms_since(start);
  std::cout << "[ timing ] up (" << topology_.hosts.size() << " hosts): " << up_ms << " ms\n";
  RecordProperty("up_ms", std::to_string(up_ms));
  EXPECT_FALSE(log.empty());

  const auto present = namespaces();
  EXPECT_TRUE(present.count(lab::bridge_namespace(topology_)));
  for (const auto& h : topology_.hosts) {
    EXPECT_TRUE(present.count(ns(h.name))) << h.name;
  }
  expect_all_up();

  // Client -> web hosts and web -> lb, over the bridge.
  EXPECT_EQ(tcp_check(ns("client"), ns("web-01"), address("web-01")), "");
  EXPECT_EQ(tcp_check(ns("client"), ns("web-03"), address("web-03")), "");
  EXPECT_EQ(tcp_check(ns("web-02"), ns("lb-01"), address("lb-01")), "");
  if (have_program("ping")) {
    const auto r = ::webstack::run(
        lab::in_host(topology_, "client", {"ping", "-c1", "-W1", address("web-01")}),
        std::chrono::seconds(5));
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  } else {
    std::cout << "[ note   ] no ping on this machine: reachability checked over TCP only\n";
  }

  // Each host's default route is the bridge's gateway address.
  const std::string route = ::webstack::run_checked(
      lab::in_host(topology_, "client", {"ip", "-4", "route", "show", "default"}));
  EXPECT_NE(route.find("default via " + topology_.gateway() + " dev eth0"), std::string::npos)
      << route;

  EXPECT_EQ(lab::root_namespace_leaks(topology_), "");
}

TEST_F(LabNetworkSystem, UpTwiceChangesNothing) {
  lab::network_up(topology_);
  const auto start = Clock::now();
  const auto log = lab::network_up(topology_);
  std::cout << "[ timing ] up again (nothing to do): " << ms_since(start) << " ms\n";
  EXPECT_TRUE(log.empty()) << log.front();
  expect_all_up();
  EXPECT_EQ(tcp_check(ns("client"), ns("web-01"), address("web-01")), "");
  EXPECT_EQ(lab::root_namespace_leaks(topology_), "");
}

TEST_F(LabNetworkSystem, UpRepairsAPartialLab) {
  lab::network_up(topology_);

  // A host namespace deleted by hand.
  ::webstack::run_checked({"ip", "netns", "delete", ns("web-02")});
  auto st = lab::network_status(topology_);
  EXPECT_FALSE(st[2].ns_exists);
  auto log = lab::network_up(topology_);
  ASSERT_FALSE(log.empty());
  EXPECT_NE(log.back().find(ns("web-02")), std::string::npos) << log.back();
  expect_all_up();
  EXPECT_EQ(tcp_check(ns("client"), ns("web-02"), address("web-02")), "");

  // The bridge namespace deleted by hand: every host loses its link, up rebuilds them all.
  ::webstack::run_checked({"ip", "netns", "delete", lab::bridge_namespace(topology_)});
  log = lab::network_up(topology_);
  EXPECT_GE(log.size(), topology_.hosts.size());
  expect_all_up();
  EXPECT_EQ(tcp_check(ns("client"), ns("web-01"), address("web-01")), "");

  // A crash between creating a veth and moving it: both temporary ends in the root ns.
  ::webstack::run_checked({"ip", "link", "add", lab::temp_veth_name(topology_, 1, true), "type",
                           "veth", "peer", "name", lab::temp_veth_name(topology_, 1, false)});
  EXPECT_NE(lab::root_namespace_leaks(topology_), "");
  log = lab::network_up(topology_);
  EXPECT_EQ(log.size(), 1u);
  EXPECT_EQ(lab::root_namespace_leaks(topology_), "");

  // eth0 of a host gone (its namespace kept): rebuilt.
  ::webstack::run_checked(lab::in_host(topology_, "lb-01", {"ip", "link", "del", "eth0"}));
  EXPECT_FALSE(lab::network_status(topology_)[0].address_ok);
  log = lab::network_up(topology_);
  EXPECT_FALSE(log.empty());
  expect_all_up();
  EXPECT_EQ(tcp_check(ns("web-01"), ns("lb-01"), address("lb-01")), "");
  EXPECT_TRUE(lab::network_up(topology_).empty());
}

TEST_F(LabNetworkSystem, DownRemovesEverythingAndTwiceIsFine) {
  lab::network_up(topology_);
  // A stray temporary veth, as a crashed up would leave it.
  ::webstack::run_checked({"ip", "link", "add", lab::temp_veth_name(topology_, 3, true), "type",
                           "veth", "peer", "name", lab::temp_veth_name(topology_, 3, false)});

  const auto start = Clock::now();
  lab::network_down(topology_);
  const double down_ms = ms_since(start);
  std::cout << "[ timing ] down (" << topology_.hosts.size() << " hosts): " << down_ms << " ms\n";
  RecordProperty("down_ms", std::to_string(down_ms));

  EXPECT_TRUE(lab_namespaces(topology_).empty());
  EXPECT_EQ(lab::root_namespace_leaks(topology_), "");
  for (const auto& s : lab::network_status(topology_)) {
    EXPECT_FALSE(s.ns_exists);
    EXPECT_FALSE(s.address_ok);
  }
  EXPECT_NO_THROW(lab::network_down(topology_));
  EXPECT_TRUE(lab_namespaces(topology_).empty());
}

TEST_F(LabNetworkSystem, AFailedUpLeavesNothingBehind) {
  block_host(2);
  EXPECT_THROW(lab::network_up(topology_), std::runtime_error);
  EXPECT_TRUE(lab_namespaces(topology_).empty());
  unblock();
  EXPECT_EQ(lab::root_namespace_leaks(topology_), "");
}

TEST_F(LabNetworkSystem, AFailedRepairUndoesOnlyItsOwnWork) {
  lab::network_up(topology_);
  ::webstack::run_checked({"ip", "netns", "delete", ns("web-02")});
  ::webstack::run_checked({"ip", "netns", "delete", ns("client")});
  block_host(4);  // client: after web-02 was rebuilt by this call
  try {
    lab::network_up(topology_);
    ADD_FAILURE() << "up succeeded despite the blocker";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("failed (exit"), std::string::npos) << e.what();
  }
  // What existed before the call is still there and intact; what it created is gone.
  const auto present = namespaces();
  EXPECT_TRUE(present.count(lab::bridge_namespace(topology_)));
  EXPECT_FALSE(present.count(ns("web-02")));
  EXPECT_FALSE(present.count(ns("client")));
  const auto st = lab::network_status(topology_);
  for (const std::size_t i : {0u, 1u, 3u}) {
    EXPECT_TRUE(st[i].ns_exists && st[i].address_ok) << st[i].ns;
  }
  EXPECT_EQ(tcp_check(ns("web-01"), ns("lb-01"), address("lb-01")), "");
  unblock();
  EXPECT_EQ(lab::root_namespace_leaks(topology_), "");
  lab::network_up(topology_);
  expect_all_up();
}

TEST_F(LabNetworkSystem, InHostAndNames) {
  EXPECT_EQ(
      lab::in_host(topology_, "web-01", {"ip", "addr"}),
      (std::vector<std::string>{"ip", "netns", "exec", topology_.name + "-web-01", "ip", "addr"}));
  EXPECT_THROW(lab::in_host(topology_, "nope", {"true"}), std::invalid_argument);
  EXPECT_EQ(lab::bridge_namespace(topology_), topology_.name + "-net");
  const std::string tmp = lab::temp_veth_name(topology_, 4, false);
  EXPECT_EQ(tmp.size(), 13u);
  EXPECT_EQ(tmp.rfind(lab::temp_prefix(topology_), 0), 0u);

  topo::Topology bad = topology_;
  bad.hosts[3].name = "net";
  EXPECT_THROW(lab::network_up(bad), std::invalid_argument);
  EXPECT_TRUE(lab_namespaces(topology_).empty());
}

TEST(Process, CapturesOutputExitCodeAndTimeout) {
  auto r = ::webstack::run({"sh", "-c", "echo out; echo err >&2; exit 3"});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.out, "out\n");
  EXPECT_EQ(r.err, "err\n");
  r = ::webstack::run({"sleep", "5"}, std::chrono::milliseconds(100));
  EXPECT_EQ(r.exit_code, 128 + 9);
  EXPECT_EQ(::webstack::run({"/nonexistent/program"}).exit_code, 127);
  try {
    ::webstack::run_checked({"ip", "link", "show", "dev", "no-such-if-x"});
    ADD_FAILURE();
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("`ip link show dev no-such-if-x` failed (exit 1): ", 0),
              0u)
        << e.what();
  }
  // Arguments are never interpreted by a shell.
  EXPECT_EQ(::webstack::run({"echo", "$(id)", ";", "|"}).out, "$(id) ; |\n");
}

}  // namespace
