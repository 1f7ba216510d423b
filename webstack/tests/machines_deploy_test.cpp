// Emulated real servers (`webstack machines`, deploy/machines/machines.sh): every host of
// the default topology but the client boots as a Debian 12 machine with systemd as PID 1
// in its namespace, answers SSH and Ansible from the client host (the administrators'
// view), and `machines down --purge` leaves nothing behind. Label `deploy`: root, the
// Debian mirror for the first root file system (about a minute, then cached).
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "lab/process.hpp"
#include "test_lab.hpp"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using webstack::lab::ProcessResult;
using webstack::test::TestLab;

const std::vector<std::string> kMachines = {"lb-01", "lb-02", "web-01", "web-02", "mon-01"};

class MachinesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_FAIL() << "needs root";
    // The administrators' host is the client: SSH is opened to it.
    std::ofstream(lab_.topology(), std::ios::app)
        << "[deploy]\nadmin_addresses = [\"" << lab_.address(100) << "\"]\n";
    state_ = lab_.dir() + "/machines";
  }
  // Whatever happened, the machines go before the lab's own teardown.
  void TearDown() override {
    if (!state_.empty()) machines({"down", "--purge"}, 3min);
  }

  ProcessResult machines(std::vector<std::string> args, std::chrono::milliseconds timeout) {
    std::vector<std::string> argv = {webstack::test::cli_path(),
                                     "machines",
                                     args.front(),
                                     "-f",
                                     lab_.topology(),
                                     "--state-dir",
                                     state_};
    argv.insert(argv.end(), args.begin() + 1, args.end());
    return webstack::lab::run(argv, timeout);
  }
  std::string on(const std::string& host, const std::string& command) {
    const auto r = machines({"ssh", host, "--", "sh", "-c", command}, 60s);
    EXPECT_EQ(r.exit_code, 0) << host << ": " << command << ": " << r.out << r.err;
    return webstack::lab::trim(r.out);
  }

  TestLab lab_{"mch"};
  std::string state_;
};

TEST_F(MachinesTest, EveryServerBootsSystemdAndAnswersSshAndAnsibleFromTheAdminHost) {
  const auto up = machines({"up"}, 20min);  // the first root file system: about a minute
  ASSERT_EQ(up.exit_code, 0) << up.out << up.err;
  std::printf("%s", up.out.c_str());

  std::set<std::string> machine_ids;
  for (const auto& host : kMachines) {
    // Its own systemd, its own name, its own address on eth0, its own identity.
    EXPECT_EQ(on(host, "systemctl is-system-running"), "running") << host;
    EXPECT_EQ(on(host, "hostname"), host);
    const int last = host == "lb-01"    ? 10
                     : host == "lb-02"  ? 14
                     : host == "web-01" ? 11
                     : host == "web-02" ? 12
                                        : 20;
    const auto address = on(host, "ip -4 -o addr show dev eth0");
    EXPECT_NE(address.find(fmt::format(" {}/24 ", lab_.address(last))), std::string::npos)
        << host << ": " << address;
    machine_ids.insert(on(host, "cat /etc/machine-id"));
    EXPECT_EQ(on(host, "cat /proc/1/comm"), "systemd") << host;
  }
  EXPECT_EQ(machine_ids.size(), kMachines.size()) << "machines share an identity";
  // The packaged services run from Debian's units, as on a fresh server.
  EXPECT_EQ(on("web-01", "systemctl is-active mariadb nginx ssh"), "active\nactive\nactive");

  // Ansible from the client host reaches every machine, as it would real servers.
  std::string inventory;
  for (int last : {10, 14, 11, 12, 20}) inventory += lab_.address(last) + ",";
  const auto ping = lab_.cli({"exec", "client", "--", "env", "ANSIBLE_HOST_KEY_CHECKING=False",
                              "ansible", "all", "-i", inventory, "-u", "root", "--private-key",
                              state_ + "/ssh/id_ed25519", "-m", "ansible.builtin.ping"},
                             3min);
  EXPECT_EQ(ping.exit_code, 0) << ping.out << ping.err;
  std::size_t pongs = 0;
  for (auto p = ping.out.find("\"pong\""); p != std::string::npos;
       p = ping.out.find("\"pong\"", p + 1)) {
    ++pongs;
  }
  EXPECT_EQ(pongs, kMachines.size()) << ping.out;

  // Down leaves nothing: no machine process, no mount, no namespace, no state.
  const auto down = machines({"down", "--purge"}, 3min);
  EXPECT_EQ(down.exit_code, 0) << down.out << down.err;
  EXPECT_FALSE(fs::exists(state_));
  EXPECT_EQ(webstack::test::processes_naming(state_ + "/").size(), 0u);
  const auto mounts = webstack::lab::read_text_or_empty("/proc/self/mounts");
  EXPECT_EQ(mounts.find(state_), std::string::npos) << mounts;
  const auto namespaces = webstack::lab::run({"ip", "netns", "list"});
  EXPECT_EQ(namespaces.out.find(lab_.name() + "-"), std::string::npos) << namespaces.out;
  state_.clear();
}

// A machines up that cannot start (here: its script is missing) names what is wrong and
// starts nothing.
TEST_F(MachinesTest, AFailedUpStartsNothing) {
  std::vector<std::string> argv = {"env",
                                   "WEBSTACK_MACHINES=/nonexistent/machines.sh",
                                   webstack::test::cli_path(),
                                   "machines",
                                   "up",
                                   "-f",
                                   lab_.topology(),
                                   "--state-dir",
                                   state_};
  const auto r = webstack::lab::run(argv, 60s);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("/nonexistent/machines.sh"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(state_));
  const auto namespaces = webstack::lab::run({"ip", "netns", "list"});
  EXPECT_EQ(namespaces.out.find(lab_.name() + "-"), std::string::npos) << namespaces.out;
}

}  // namespace
