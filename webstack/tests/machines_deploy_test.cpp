// Emulated real servers (`webstack machines`, deploy/machines/machines.sh): every host of
// the default topology but the client boots as a Debian 12 machine with systemd as PID 1
// in its namespace, answers SSH and Ansible from the client host (the administrators'
// view), and `machines down --purge` leaves nothing behind. Label `deploy`: root, the
// Debian mirror for the first root file system (about a minute, then cached).
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "common/process.hpp"
#include "common/text.hpp"
#include "test_lab.hpp"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using ::webstack::ProcessResult;
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
    return ::webstack::run(argv, timeout);
  }
  std::string on(const std::string& host, const std::string& command) {
    const auto r = machines({"ssh", host, "--", "sh", "-c", command}, 60s);
    EXPECT_EQ(r.exit_code, 0) << host << ": " << command << ": " << r.out << r.err;
    return webstack::text::trim(r.out);
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
  const auto mounts = ::webstack::read_text_or_empty("/proc/self/mounts");
  EXPECT_EQ(mounts.find(state_), std::string::npos) << mounts;
  const auto namespaces = ::webstack::run({"ip", "netns", "list"});
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
  const auto r = ::webstack::run(argv, 60s);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("/nonexistent/machines.sh"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(state_));
  const auto namespaces = ::webstack::run({"ip", "netns", "list"});
  EXPECT_EQ(namespaces.out.find(lab_.name() + "-"), std::string::npos) << namespaces.out;
}

// Counts the hosts of an Ansible PLAY RECAP whose `changed` is 0, and those whose is not.
struct Recap {
  std::set<std::string> unchanged, changed;
};
Recap recap_of(const std::string& out) {
  Recap r;
  const auto at = out.rfind("PLAY RECAP");
  if (at == std::string::npos) return r;
  std::istringstream lines(out.substr(at));
  for (std::string line; std::getline(lines, line);) {
    std::istringstream words(line);
    std::string host, colon, ok, changed;
    if (!(words >> host >> colon >> ok >> changed) || colon != ":") continue;
    (changed == "changed=0" ? r.unchanged : r.changed).insert(host);
  }
  return r;
}
std::string recap_text(const std::string& out) {
  const auto at = out.rfind("PLAY RECAP");
  return at == std::string::npos ? out.substr(out.size() > 20000 ? out.size() - 20000 : 0)
                                 : out.substr(at);
}

// The whole path to real servers as an operator runs it: `webstack deploy --target
// hosts` from the administrators' host (the client) renders the bundles and inventory,
// makes the vault (encrypted) and runs deploy/ansible/site.yml over SSH on five fresh
// servers. Then the same checks as the lab's; a rolling restart of the apps under load
// fails no request; a second deploy changes nothing; --check shows a change without
// making it; and an alert fires on the monitoring server and resolves.
TEST_F(MachinesTest, DeployPutsTheSiteOnTheServersAndRollsWithoutAFailedRequest) {
  const auto up = machines({"up"}, 20min);
  ASSERT_EQ(up.exit_code, 0) << up.out << up.err;
  const std::string vault = lab_.dir() + "/vault.yml";
  const std::string password = lab_.dir() + "/vault-password";
  {
    std::ofstream(password) << "not-a-real-password-" << ::getpid() << "\n";
    fs::permissions(password, fs::perms::owner_read | fs::perms::owner_write);
  }
  const auto deploy = [&](const std::string& topology, std::vector<std::string> extra) {
    std::vector<std::string> argv = {"exec",
                                     "client",
                                     "--",
                                     "env",
                                     "ANSIBLE_HOST_KEY_CHECKING=False",
                                     "ANSIBLE_FORCE_COLOR=0",
                                     webstack::test::cli_path(),
                                     "deploy",
                                     "--target",
                                     "hosts",
                                     "-f",
                                     topology,
                                     "--vault",
                                     vault,
                                     "--vault-password-file",
                                     password};
    const auto dashes = std::find(extra.begin(), extra.end(), "--");
    argv.insert(argv.end(), extra.begin(), dashes);
    argv.insert(argv.end(), {"--", "--private-key", state_ + "/ssh/id_ed25519"});
    if (dashes != extra.end()) argv.insert(argv.end(), dashes + 1, extra.end());
    return lab_.cli(argv, 30min);
  };

  const auto first = deploy(lab_.topology(), {});
  ASSERT_EQ(first.exit_code, 0) << recap_text(first.out) << first.err;
  std::printf("first deploy:\n%s\n", recap_text(first.out).c_str());
  // The secrets were made and are on disk encrypted only.
  EXPECT_EQ(::webstack::read_text_or_empty(vault).rfind("$ANSIBLE_VAULT;", 0), 0u);
  EXPECT_FALSE(fs::exists(vault + ".partial"));

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

  // The site from the client, through the virtual address, HTTPS verified with the CA
  // the deploy made.
  const std::string ca = lab_.dir() + "/vault-ca/ca.crt";
  const auto curl = [&](const std::vector<std::string>& args) {
    std::vector<std::string> argv = {
        "exec",     "client",    "--",
        "curl",     "-sS",       "--max-time",
        "10",       "--resolve", "www.foobar.test:443:" + lab_.address(5),
        "--cacert", ca};
    argv.insert(argv.end(), args.begin(), args.end());
    return lab_.cli(argv, 60s);
  };
  std::map<std::string, int> served_by;
  for (int i = 0; i < 20; ++i) {
    const auto r = curl({"-o", "/dev/null", "-w", "%{http_code} %header{x-served-by}",
                         "https://www.foobar.test/json"});
    ++served_by[webstack::text::trim(r.out)];
  }
  EXPECT_EQ(served_by, (std::map<std::string, int>{{"200 web-01", 10}, {"200 web-02", 10}}));
  const auto posted =
      curl({"-o", "/dev/null", "-w", "%{http_code}", "-H", "Content-Type: application/json", "-d",
            R"({"author":"deploy-test","text":"on real servers"})",
            "https://www.foobar.test/api/messages"});
  EXPECT_EQ(webstack::text::trim(posted.out), "201") << posted.err;
  // The firewall: from the client only the site; MariaDB is not reachable.
  const auto db = curl({"--connect-timeout", "2", "telnet://" + lab_.address(11) + ":3306"});
  EXPECT_NE(db.exit_code, 0) << db.out;

  // A rolling restart of every app (as the lab's `webstack deploy`) under steady GETs and
  // POSTs from the client: each web host drained on both balancers, restarted, back.
  const auto app_pid = [&](const std::string& host) {
    return on(host, "systemctl show -p MainPID --value webstack-app");
  };
  const std::string pid01 = app_pid("web-01"), pid02 = app_pid("web-02");
  {
    // Paced (a request per 20 ms per worker, about 150 a second: hundreds in each host's
    // drain and restart) and bounded (90,000 requests, about 600 s, far more than the roll
    // takes even beside a build): steady traffic that leaves the two CPUs to the deploy,
    // and a fixed amount of work. The load must still run when the roll ends: checked below.
    webstack::test::SiteLoad load(lab_.client_namespace(), lab_.address(5), ca, 900s, 20ms, 90000);
    const auto t0 = std::chrono::steady_clock::now();
    const auto roll = deploy(lab_.topology(), {"--", "-e", "webstack_app_restart=true"});
    const auto t1 = std::chrono::steady_clock::now();
    const auto load_ended = load.finished();
    load.stop();
    ASSERT_EQ(roll.exit_code, 0) << recap_text(roll.out) << roll.err;
    EXPECT_FALSE(load_ended.has_value())
        << "the load's 90,000 requests ran out "
        << std::chrono::duration<double>(load_ended.value_or(t1) - t0).count()
        << " s into the roll: its end went without traffic";
    EXPECT_EQ(load.failed(), 0) << load.first_failure();
    EXPECT_GT(load.gets(), 0);
    EXPECT_GT(load.posts(), 0);
    std::printf(
        "rolling deploy on the servers in %.1f s under load: %d GETs, %d POSTs, %d failed\n",
        std::chrono::duration<double>(t1 - t0).count(), load.gets(), load.posts(), load.failed());
  }
  EXPECT_NE(app_pid("web-01"), pid01) << "web-01's app was not restarted";
  EXPECT_NE(app_pid("web-02"), pid02) << "web-02's app was not restarted";

  // A second deploy with the same inputs changes nothing.
  const auto second = deploy(lab_.topology(), {});
  ASSERT_EQ(second.exit_code, 0) << recap_text(second.out) << second.err;
  std::printf("second deploy:\n%s\n", recap_text(second.out).c_str());
  EXPECT_EQ(recap_of(second.out).unchanged,
            std::set<std::string>(kMachines.begin(), kMachines.end()))
      << recap_text(second.out);

  // --check with a changed topology (least connections): the balancers would change, and
  // the diff says how; nothing is changed.
  const std::string leastconn = lab_.dir() + "/leastconn.toml";
  std::ofstream(leastconn) << ::webstack::read_text_or_empty(lab_.topology())
                           << "[site]\nbalance = \"leastconn\"\n";
  const auto check = deploy(leastconn, {"--check"});
  ASSERT_EQ(check.exit_code, 0) << recap_text(check.out) << check.err;
  const auto checked = recap_of(check.out);
  EXPECT_EQ(checked.changed, (std::set<std::string>{"lb-01", "lb-02"})) << recap_text(check.out);
  EXPECT_EQ(checked.unchanged, (std::set<std::string>{"web-01", "web-02", "mon-01"}));
  EXPECT_NE(check.out.find("+    balance leastconn"), std::string::npos) << check.out;
  EXPECT_EQ(on("lb-01", "grep -c 'balance roundrobin' /etc/haproxy/haproxy.cfg"), "1");

  // Monitoring on the servers: web-02's app stopped, the BackendServerDown alert reaches
  // Alertmanager (production intervals: HAProxy marks it DOWN in about a second, `for:
  // 1m`, 15 s scrapes and evaluations); started again, the alert clears.
  const std::string alerts_url = "http://" + lab_.address(20) + ":9093/api/v2/alerts";
  const auto backend_down_web02 = [&] {
    const auto r =
        machines({"ssh", "mon-01", "--", "curl", "-sS", "--max-time", "5", alerts_url}, 60s);
    return r.out.find("\"alertname\":\"BackendServerDown\"") != std::string::npos &&
           r.out.find("\"server\":\"web-02\"") != std::string::npos;
  };
  EXPECT_FALSE(backend_down_web02());
  on("web-02", "systemctl stop webstack-app");
  const auto stopped = std::chrono::steady_clock::now();
  const bool fired = webstack::test::wait_for(backend_down_web02, 4min, 2s);
  const double fired_after =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - stopped).count();
  on("web-02", "systemctl start webstack-app");
  EXPECT_TRUE(fired) << "no BackendServerDown for web-02 in Alertmanager after 4 minutes";
  const bool cleared = webstack::test::wait_for([&] { return !backend_down_web02(); }, 4min, 2s);
  EXPECT_TRUE(cleared) << "BackendServerDown for web-02 still active 4 minutes after the start";
  std::printf("BackendServerDown in Alertmanager %.0f s after web-02's app stopped\n", fired_after);
}

// The playbook is lint-clean (ansible-lint, production profile: .ansible-lint) and its
// syntax checks with the inventory `render --target hosts` writes.
TEST(AnsiblePlaybook, PassesAnsibleLintAndTheSyntaxCheck) {
  const std::string dir = WEBSTACK_SOURCE_DIR "/deploy/ansible";
  const auto lint =
      ::webstack::run({"sh", "-c", "cd " + dir + " && ansible-lint --offline -q"}, 10min);
  EXPECT_EQ(lint.exit_code, 0) << lint.out << lint.err;
  const auto syntax = ::webstack::run(
      {"sh", "-c",
       "cd " + dir +
           " && ansible-playbook --syntax-check -i inventory.example.yml site.yml -e "
           "bundle_dir=/nonexistent -e @vault.example.yml"},
      5min);
  EXPECT_EQ(syntax.exit_code, 0) << syntax.out << syntax.err;
}

}  // namespace
