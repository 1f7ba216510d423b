// Emulated real servers (`webstack machines`, deploy/machines/machines.sh): every host of
// the default topology but the client boots as a Debian 12 machine with systemd as PID 1
// in its namespace, answers SSH and Ansible from the client host (the administrators'
// view), and `machines down --purge` leaves nothing behind. Label `deploy`: root, the
// Debian mirror for the first root file system (about a minute, then cached).
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
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

// The whole path to real servers: `render --target hosts` (bundles and inventory), the
// secrets (deploy/ansible/make-vault.py), and deploy/ansible/site.yml from the client
// host over SSH, as an operator would run it; then the same checks as the lab's.
TEST_F(MachinesTest, ThePlaybookDeploysTheSiteAndASecondRunChangesNothing) {
  const auto up = machines({"up"}, 20min);
  ASSERT_EQ(up.exit_code, 0) << up.out << up.err;
  const std::string bundle = lab_.dir() + "/bundle";
  const auto rendered = webstack::lab::run({webstack::test::cli_path(), "render", "--target",
                                            "hosts", "-f", lab_.topology(), "-o", bundle});
  ASSERT_EQ(rendered.exit_code, 0) << rendered.out << rendered.err;
  // The secrets, as the vault's plain text (kept in the test's directory, 0600).
  const std::string vault = lab_.dir() + "/vault.yml";
  const auto made = webstack::lab::run(
      {"sh", "-c",
       fmt::format("umask 077 && {}/deploy/ansible/make-vault.py -i {}/inventory.yml --ca-dir "
                   "{}/ca > {}",
                   WEBSTACK_SOURCE_DIR, bundle, lab_.dir(), vault)},
      2min);
  ASSERT_EQ(made.exit_code, 0) << made.out << made.err;

  const auto playbook = [&] {
    return lab_.cli({"exec", "client", "--", "env", "ANSIBLE_HOST_KEY_CHECKING=False",
                     "ANSIBLE_CONFIG=" WEBSTACK_SOURCE_DIR "/deploy/ansible/ansible.cfg",
                     "ANSIBLE_FORCE_COLOR=0", "ansible-playbook", "-i", bundle + "/inventory.yml",
                     WEBSTACK_SOURCE_DIR "/deploy/ansible/site.yml", "-e", "bundle_dir=" + bundle,
                     "-e", "@" + vault, "--private-key", state_ + "/ssh/id_ed25519"},
                    30min);
  };
  const auto first = playbook();
  ASSERT_EQ(first.exit_code, 0) << first.out.substr(
                                       first.out.size() > 20000 ? first.out.size() - 20000 : 0)
                                << first.err;
  const auto recap = [](const std::string& out) {
    const auto at = out.rfind("PLAY RECAP");
    return at == std::string::npos ? out : out.substr(at);
  };
  std::printf("first deploy:\n%s\n", recap(first.out).c_str());

  // Every server runs what its roles need, and nothing failed.
  for (const auto& host : kMachines) {
    EXPECT_EQ(on(host, "systemctl is-system-running"), "running")
        << host << ": " << on(host, "systemctl --failed --no-legend");
  }
  EXPECT_EQ(on("lb-01", "systemctl is-active haproxy keepalived nftables"),
            "active\nactive\nactive");
  EXPECT_EQ(on("web-01", "systemctl is-active nginx webstack-app mariadb webstack-failover-agent"),
            "active\nactive\nactive\nactive");
  EXPECT_EQ(on("mon-01",
               "systemctl is-active prometheus prometheus-alertmanager "
               "webstack-failover-manager"),
            "active\nactive\nactive");
  // Replication runs, over TLS.
  const auto replica = on("web-02", "mariadb -e 'SHOW SLAVE STATUS\\G'");
  EXPECT_NE(replica.find("Slave_IO_Running: Yes"), std::string::npos) << replica;
  EXPECT_NE(replica.find("Slave_SQL_Running: Yes"), std::string::npos) << replica;
  EXPECT_NE(replica.find("Master_SSL_Allowed: Yes"), std::string::npos) << replica;

  // The site from the client, through the virtual address, HTTPS verified with the CA.
  const std::string ca = lab_.dir() + "/ca/ca.crt";
  const auto curl = [&](const std::vector<std::string>& args) {
    std::vector<std::string> argv = {"exec",
                                     "client",
                                     "--",
                                     "curl",
                                     "-sS",
                                     "--max-time",
                                     "10",
                                     "--resolve",
                                     "www.foobar.test:443:" + lab_.address(5),
                                     "--resolve",
                                     "www.foobar.test:80:" + lab_.address(5),
                                     "--cacert",
                                     ca};
    argv.insert(argv.end(), args.begin(), args.end());
    return lab_.cli(argv, 60s);
  };
  std::map<std::string, int> served_by;
  for (int i = 0; i < 20; ++i) {
    const auto r = curl({"-o", "/dev/null", "-w", "%{http_code} %header{x-served-by}",
                         "https://www.foobar.test/json"});
    ++served_by[webstack::lab::trim(r.out)];
  }
  EXPECT_EQ(served_by, (std::map<std::string, int>{{"200 web-01", 10}, {"200 web-02", 10}}));
  const auto posted =
      curl({"-o", "/dev/null", "-w", "%{http_code}", "-H", "Content-Type: application/json", "-d",
            R"({"author":"deploy-test","text":"on real servers"})",
            "https://www.foobar.test/api/messages"});
  EXPECT_EQ(webstack::lab::trim(posted.out), "201") << posted.err;
  // The firewall: from the client only the site; MariaDB is not reachable.
  const auto db = curl({"--connect-timeout", "2", "telnet://" + lab_.address(11) + ":3306"});
  EXPECT_NE(db.exit_code, 0) << db.out;

  // A second run with the same inputs changes nothing.
  const auto second = playbook();
  ASSERT_EQ(second.exit_code, 0) << second.out << second.err;
  const auto again = recap(second.out);
  std::printf("second deploy:\n%s\n", again.c_str());
  std::size_t hosts_unchanged = 0;
  for (auto p = again.find("changed=0 "); p != std::string::npos;
       p = again.find("changed=0 ", p + 1)) {
    ++hosts_unchanged;
  }
  EXPECT_EQ(hosts_unchanged, kMachines.size()) << again;
}

// The playbook is lint-clean (ansible-lint, production profile: .ansible-lint) and its
// syntax checks with the inventory `render --target hosts` writes.
TEST(AnsiblePlaybook, PassesAnsibleLintAndTheSyntaxCheck) {
  const std::string dir = WEBSTACK_SOURCE_DIR "/deploy/ansible";
  const auto lint =
      webstack::lab::run({"sh", "-c", "cd " + dir + " && ansible-lint --offline -q"}, 10min);
  EXPECT_EQ(lint.exit_code, 0) << lint.out << lint.err;
  const auto syntax = webstack::lab::run(
      {"sh", "-c",
       "cd " + dir +
           " && ansible-playbook --syntax-check -i inventory.example.yml site.yml -e "
           "bundle_dir=/nonexistent -e @vault.example.yml"},
      5min);
  EXPECT_EQ(syntax.exit_code, 0) << syntax.out << syntax.err;
}

}  // namespace
