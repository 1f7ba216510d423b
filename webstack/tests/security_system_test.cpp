// System tests of the hardened profile (the default): HTTPS with the lab's CA, the HTTP
// redirect and HSTS, per-host nftables firewalls, least-privilege database accounts,
// secrets kept out of `ps` and the logs, HTTP hardening; and the seed profile, which
// shows what is exposed without them. Needs root. Traffic to the site comes from the
// client host (or a lab host, to show what that host may reach); the edge is reached on
// 127.0.0.1 as a browser on this machine would.
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "common/process.hpp"
#include "lab/status.hpp"
#include "test_lab.hpp"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using ::webstack::ProcessResult;
using ::webstack::run;
using webstack::test::read_file;
using webstack::test::TestLab;

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

// What a lab host can do on the network, by running commands in its namespace.
class Probe {
 public:
  explicit Probe(const TestLab& lab) : lab_(lab) {}

  ProcessResult on(const std::string& host, std::vector<std::string> argv,
                   std::chrono::milliseconds timeout = 20s) const {
    std::vector<std::string> args = {"exec", host, "--"};
    args.insert(args.end(), argv.begin(), argv.end());
    return lab_.cli(args, timeout);
  }
  // A TCP connection from `host` to address:port completes within 2 s.
  bool connects(const std::string& host, const std::string& address, int port) const {
    return attempt(host, address, port) == 0;
  }
  // The firewall drops (no answer, no refusal): the attempt runs out its 2 s (timeout's
  // 124), distinct from any other failure (a refusal, a tool that did not run).
  bool dropped(const std::string& host, const std::string& address, int port) const {
    return attempt(host, address, port) == 124;
  }
  int attempt(const std::string& host, const std::string& address, int port) const {
    return on(host, {"timeout", "2", "bash", "-c",
                     "exec 3<>/dev/tcp/" + address + "/" + std::to_string(port)})
        .exit_code;
  }
  // curl from the client, by the site's name (resolved to lb-01), trusting the lab CA.
  ProcessResult site_curl(std::vector<std::string> args) const {
    std::vector<std::string> argv = {"curl",       "-sS",
                                     "--max-time", "5",
                                     "--cacert",   lab_.state() + "/tls/ca.crt",
                                     "--resolve",  "www.foobar.test:443:" + lab_.address(10),
                                     "--resolve",  "www.foobar.test:80:" + lab_.address(10)};
    argv.insert(argv.end(), args.begin(), args.end());
    return on("client", argv);
  }

 private:
  const TestLab& lab_;
};

class SecurityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_FAIL() << "needs root";
    const auto& shared = webstack::test::shared_lab();
    ASSERT_TRUE(shared.up_ok) << "webstack up failed:\n" << shared.up_output;
    lab_ = shared.lab;
    probe_ = std::make_unique<Probe>(*lab_);
  }
  TestLab* lab_ = nullptr;
  std::unique_ptr<Probe> probe_;
};

TEST_F(SecurityTest, HttpRedirectsToHttpsWithTheSamePathAndQuery) {
  const auto r = probe_->site_curl({"-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
                                    "http://www.foobar.test/guestbook?page=2&x=%C3%A9"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "301 https://www.foobar.test/guestbook?page=2&x=%C3%A9");
}

TEST_F(SecurityTest, HttpsVerifiesAgainstTheLabCaWithTls13And12AndSendsHsts) {
  for (const std::string version : {"1.3", "1.2"}) {
    const auto r = probe_->site_curl({"-D", "-", "-o", "/dev/null", "-w",
                                      "verify=%{ssl_verify_result}", "--tlsv" + version,
                                      "--tls-max", version, "https://www.foobar.test/json"});
    ASSERT_EQ(r.exit_code, 0) << "TLS " << version << ": " << r.err;
    EXPECT_NE(r.out.find(" 200"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("verify=0"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("strict-transport-security: max-age=63072000"), std::string::npos)
        << r.out;
  }
  // Without the lab CA the chain does not verify (curl's own trust store does not know it).
  const auto untrusted = probe_->on(
      "client", {"curl", "-sS", "--max-time", "5", "--resolve",
                 "www.foobar.test:443:" + lab_->address(10), "https://www.foobar.test/json"});
  EXPECT_EQ(untrusted.exit_code, 60) << untrusted.err;  // CURLE_PEER_FAILED_VERIFICATION
}

TEST_F(SecurityTest, TlsBelow12IsRefusedByTheServer) {
  // The client offers TLS 1.1 / 1.0 (security level 0 lets OpenSSL 3 do so): the server
  // answers with a protocol_version alert, so the refusal is HAProxy's, not the client's.
  for (const char* version : {"-tls1_1", "-tls1"}) {
    const auto r = probe_->on(
        "client", {"openssl", "s_client", "-connect", lab_->address(10) + ":443", "-servername",
                   "www.foobar.test", version, "-cipher", "DEFAULT@SECLEVEL=0"});
    EXPECT_NE(r.exit_code, 0) << version;
    EXPECT_NE((r.out + r.err).find("alert protocol version"), std::string::npos)
        << version << ": " << r.out << r.err;
  }
}

TEST_F(SecurityTest, TheEdgeRelaysTlsUntouched) {
  // A browser on this machine, trusting the lab CA, sees the site's own certificate on
  // 127.0.0.1 (loopback: no traffic leaves the machine).
  const auto r = run({"curl", "-sS", "--max-time", "5", "--cacert", lab_->state() + "/tls/ca.crt",
                      "-o", "/dev/null", "-w", "%{http_code} %{ssl_verify_result}",
                      "https://127.0.0.1:" + std::to_string(lab_->edge_port()) + "/readyz"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "200 0");
  const auto ca = lab_->cli({"cert"}, 10s);
  EXPECT_EQ(ca.exit_code, 0) << ca.err;
  EXPECT_EQ(trimmed(ca.out), lab_->state() + "/tls/ca.crt");
}

TEST_F(SecurityTest, FromTheClientOnlyTheSiteIsReachable) {
  const auto lb = lab_->address(10), web01 = lab_->address(11), web02 = lab_->address(12);
  EXPECT_TRUE(probe_->connects("client", lb, 443));
  EXPECT_TRUE(probe_->connects("client", lb, 80));
  std::vector<std::pair<std::string, std::future<bool>>> blocked;
  for (const auto& [address, port, what] : std::vector<std::tuple<std::string, int, std::string>>{
           {web01, 80, "Nginx on web-01"},
           {web02, 80, "Nginx on web-02"},
           {web01, 8080, "webstack-app on web-01"},
           {web02, 8080, "webstack-app on web-02"},
           {web01, 3306, "MariaDB on web-01"},
           {web02, 3306, "MariaDB on web-02"},
           {lb, 8404, "HAProxy stats and metrics"},
           {lb, 9100, "the node exporter on lb-01"},
           {web01, 9113, "the Nginx exporter on web-01"},
           {web02, 9104, "the MariaDB exporter on web-02"},
           {lab_->address(20), 9090, "Prometheus on mon-01"},
           {lab_->address(20), 9093, "Alertmanager on mon-01"}}) {
    // All at once: each waits out its 2 s (the firewall drops, it does not refuse).
    blocked.emplace_back(what,
                         std::async(std::launch::async, [this, address = address, port = port] {
                           return probe_->dropped("client", address, port);
                         }));
  }
  for (auto& [what, reached] : blocked) {
    EXPECT_TRUE(reached.get()) << what << " not dropped by the firewall for the client";
  }
  // The exporters are the monitor host's to read, and the web hosts' Nginx serves it the
  // app's /metrics.
  EXPECT_TRUE(probe_->connects("mon-01", lb, 9100));
  EXPECT_TRUE(probe_->connects("mon-01", web02, 9104));
  EXPECT_FALSE(probe_->connects("web-01", web02, 9104)) << "only the monitor host scrapes";
  // The app's figures and topology are not served to the internet.
  for (const char* path : {"/metrics", "/api/info"}) {
    const auto r = probe_->site_curl(
        {"-o", "/dev/null", "-w", "%{http_code}", std::string("https://www.foobar.test") + path});
    EXPECT_EQ(r.out, "403") << path;
  }
  // The runtime API is a unix socket, and lb-01 listens on nothing but the site, stats
  // and its node exporter.
  const auto listening = probe_->on("lb-01", {"ss", "-Hltn"});
  std::set<std::string> ports;
  std::istringstream lines(listening.out);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream f(line);
    std::string state, recvq, sendq, local;
    f >> state >> recvq >> sendq >> local;
    ports.insert(local.substr(local.rfind(':') + 1));
  }
  EXPECT_EQ(ports, (std::set<std::string>{"80", "443", "8404", "9100"})) << listening.out;
}

TEST_F(SecurityTest, MariadbIsReachableFromTheWebHostsOnly) {
  const auto web01 = lab_->address(11), web02 = lab_->address(12);
  EXPECT_FALSE(probe_->connects("lb-01", web01, 3306));
  EXPECT_FALSE(probe_->connects("lb-01", web02, 3306));
  EXPECT_TRUE(probe_->connects("web-01", web02, 3306));
  EXPECT_TRUE(probe_->connects("web-02", web01, 3306));
  // Nor does a database host open connections to the client.
  EXPECT_FALSE(probe_->connects("web-01", lab_->address(100), 22));
}

TEST_F(SecurityTest, DatabaseAccountsHoldOnlyWhatTheyNeed) {
  // Each account connects as the app would, from web-01 over TCP, its password in a 0600
  // options file (never on a command line).
  const auto as = [&](const std::string& user, const std::string& secret, const std::string& sql) {
    const std::string cnf = lab_->dir() + "/" + user + ".cnf";
    {
      std::ofstream out(cnf);
      out << "[client]\nuser=" << user
          << "\npassword=" << trimmed(read_file(lab_->state() + "/secrets/" + secret)) << "\n";
    }
    fs::permissions(cnf, fs::perms::owner_read | fs::perms::owner_write);
    return probe_->on(
        "web-01",
        {"mariadb", "--defaults-extra-file=" + cnf, "--host=" + lab_->address(11), "--ssl",
         "--ssl-ca=" + lab_->state() + "/tls/ca.crt", "--batch", "--skip-column-names", "-e", sql});
  };
  const auto ok = as("webstack", "db-app-password", "SELECT COUNT(*) FROM webstack.World");
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_EQ(trimmed(ok.out), "10000");
  const auto create = as("webstack", "db-app-password", "CREATE TABLE webstack.evil (x INT)");
  EXPECT_NE(create.exit_code, 0);
  EXPECT_NE(create.err.find("CREATE command denied"), std::string::npos) << create.err;
  const auto mysql = as("webstack", "db-app-password", "SELECT user FROM mysql.user");
  EXPECT_NE(mysql.exit_code, 0);
  EXPECT_NE(mysql.err.find("denied"), std::string::npos) << mysql.err;
  const auto repl = as("repl", "db-repl-password", "SELECT COUNT(*) FROM webstack.World");
  EXPECT_NE(repl.exit_code, 0);
  EXPECT_NE(repl.err.find("denied"), std::string::npos) << repl.err;
  const auto probe = as("webstack_probe", "db-probe-password", "SELECT * FROM webstack.World");
  EXPECT_NE(probe.exit_code, 0);
  EXPECT_NE(probe.err.find("denied"), std::string::npos) << probe.err;
  // Replication runs over TLS, verifying the primary's certificate.
  const auto st =
      run({"mariadb", "--defaults-file=" + lab_->state() + "/hosts/web-02/mariadb/my.cnf",
           "--user=root", "-e", "SHOW SLAVE STATUS\\G"})
          .out;
  EXPECT_NE(st.find("Master_SSL_Allowed: Yes"), std::string::npos) << st;
  EXPECT_NE(st.find("Master_SSL_Verify_Server_Cert: Yes"), std::string::npos) << st;
  EXPECT_NE(st.find("Slave_IO_Running: Yes"), std::string::npos) << st;
}

TEST_F(SecurityTest, NoPasswordInTheProcessListOrTheLogs) {
  std::vector<std::string> secrets;
  for (const char* name :
       {"db-app-password", "db-repl-password", "db-probe-password", "haproxy-stats-password"}) {
    const auto value = trimmed(read_file(lab_->state() + "/secrets/" + name));
    ASSERT_GE(value.size(), 16u) << name;
    secrets.push_back(value);
  }
  std::string everything = webstack::test::shared_lab().up_output;
  for (const auto& e : fs::directory_iterator("/proc")) {
    everything += read_file(e.path().string() + "/cmdline");
  }
  for (const auto& e : fs::recursive_directory_iterator(lab_->state() + "/log")) {
    if (e.is_regular_file()) everything += read_file(e.path().string());
  }
  for (std::size_t i = 0; i < secrets.size(); ++i) {
    EXPECT_EQ(everything.find(secrets[i]), std::string::npos) << "secret " << i << " shows";
  }
  // Secrets are not readable by others.
  for (const auto& e : fs::directory_iterator(lab_->state() + "/secrets")) {
    if (!e.is_regular_file()) continue;
    EXPECT_EQ(fs::status(e.path()).permissions() & fs::perms::others_all, fs::perms::none)
        << e.path();
  }
}

TEST_F(SecurityTest, StatsPageNeedsThePassword) {
  const std::string url = "http://" + lab_->address(10) + ":8404/stats";
  const auto anonymous =
      probe_->on("lb-01", {"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", url});
  EXPECT_EQ(anonymous.out, "401");
  const std::string netrc = lab_->dir() + "/stats.netrc";
  {
    std::ofstream out(netrc);
    out << "machine " << lab_->address(10) << " login admin password "
        << trimmed(read_file(lab_->state() + "/secrets/haproxy-stats-password")) << "\n";
  }
  fs::permissions(netrc, fs::perms::owner_read | fs::perms::owner_write);
  const auto authed = probe_->on(
      "lb-01", {"curl", "-s", "--netrc-file", netrc, "-o", "/dev/null", "-w", "%{http_code}", url});
  EXPECT_EQ(authed.out, "200");
}

TEST_F(SecurityTest, BadRequestsAreRefusedAndNoVersionIsShown) {
  // A 12 KB header: 400, over HTTP/1.1 and HTTP/2.
  const std::string big_header = "X-Big: " + std::string(12000, 'a');
  for (const char* version : {"--http1.1", "--http2"}) {
    const auto r = probe_->site_curl({"-o", "/dev/null", "-w", "%{http_code}", version, "-H",
                                      big_header, "https://www.foobar.test/json"});
    EXPECT_EQ(r.out, "400") << version << ": " << r.err;
  }
  // Too many header fields (HTTP/1.1; HTTP/2 bounds the headers' size above): 400.
  std::vector<std::string> many = {"-o", "/dev/null", "-w", "%{http_code}", "--http1.1"};
  for (int i = 0; i < 80; ++i)
    many.insert(many.end(), {"-H", "X-Filler-" + std::to_string(i) + ": x"});
  many.push_back("https://www.foobar.test/json");
  EXPECT_EQ(probe_->site_curl(many).out, "400");
  // A body announced over 1 MB: 413 before it is read.
  const auto big = probe_->site_curl({"-o", "/dev/null", "-w", "%{http_code}", "--http1.1", "-H",
                                      "Content-Length: 2000000", "-H", "Expect:", "--data", "x",
                                      "https://www.foobar.test/api/messages"});
  EXPECT_EQ(big.out, "413") << big.err;
  // A malformed header line: 400.
  const auto raw = probe_->on(
      "client",
      {"bash", "-c",
       "exec 3<>/dev/tcp/" + lab_->address(10) +
           "/80; printf 'GET / HTTP/1.1\\r\\nHost: x\\r\\nNo colon here\\r\\n\\r\\n' >&3; "
           "head -c 12 <&3"});
  EXPECT_EQ(raw.out, "HTTP/1.1 400") << raw.err;
  // No server version anywhere: Nginx's 404 says "nginx", the app "webstack-app".
  const auto missing =
      probe_->site_curl({"-D", "-", "-o", "/dev/null", "https://www.foobar.test/no-such.css"});
  EXPECT_NE(missing.out.find(" 404"), std::string::npos) << missing.out;
  for (const char* line : {"server: nginx/", "server: webstack-app/"}) {
    EXPECT_EQ(missing.out.find(line), std::string::npos) << missing.out;
  }
  EXPECT_NE(missing.out.find("server: nginx\r\n"), std::string::npos) << missing.out;
}

// The line of `status` output under "firewalls" that starts with the host's name.
std::string firewall_line(const std::string& status, const std::string& host) {
  const auto section = status.find("\nfirewalls");
  if (section == std::string::npos) return "";
  std::istringstream lines(status.substr(section + 1));
  for (std::string line; std::getline(lines, line);) {
    std::istringstream f(line);
    std::string first;
    f >> first;
    if (first == host) return line;
  }
  return "";
}

TEST_F(SecurityTest, StatusShowsEachHostsFirewall) {
  const auto st = lab_->cli({"status"}, 60s);
  ASSERT_EQ(st.exit_code, 0) << st.err;
  for (const char* host : {"lb-01", "web-01", "web-02"}) {
    EXPECT_NE(firewall_line(st.out, host).find("input drop, output drop, forward drop"),
              std::string::npos)
        << st.out;
  }
  EXPECT_NE(firewall_line(st.out, "client").find("input drop, output accept, forward drop"),
            std::string::npos)
      << st.out;
  const auto full = lab_->cli({"status", "--rules"}, 60s);
  EXPECT_NE(full.out.find("ip saddr @load_balancers tcp dport 80 accept"), std::string::npos)
      << full.out;
}

// The seed's design, for study: plain HTTP, no firewall; what the hardened profile closes
// is open.
TEST(SeedProfileTest, PlainHttpNoFirewallAndEverythingExposed) {
  if (::geteuid() != 0) GTEST_FAIL() << "needs root";
  TestLab lab("wss");
  const auto up = lab.cli({"up", "--profile", "seed"}, 180s);
  ASSERT_EQ(up.exit_code, 0) << up.out << up.err;
  EXPECT_NE(up.out.find("profile seed: plain HTTP, no firewall"), std::string::npos) << up.out;
  const Probe probe(lab);
  const auto site = probe.on("client", {"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                        "--max-time", "5", "http://" + lab.address(10) + "/json"});
  EXPECT_EQ(site.out, "200");  // no redirect
  EXPECT_FALSE(probe.connects("client", lab.address(10), 443));
  // Exposed: every web host's Nginx, MariaDB on both, the stats port, from the client.
  EXPECT_TRUE(probe.connects("client", lab.address(11), 80));
  EXPECT_TRUE(probe.connects("client", lab.address(11), 3306));
  EXPECT_TRUE(probe.connects("client", lab.address(12), 3306));
  EXPECT_TRUE(probe.connects("client", lab.address(10), 8404));
  EXPECT_TRUE(probe.connects("lb-01", lab.address(11), 3306));
  const auto st = lab.cli({"status"}, 60s);
  EXPECT_NE(firewall_line(st.out, "lb-01").find("none"), std::string::npos) << st.out;
  // A lab keeps its profile: `up` asking for the other one is refused.
  const auto other = lab.cli({"up", "--profile", "hardened"}, 60s);
  EXPECT_NE(other.exit_code, 0);
  EXPECT_NE(other.err.find("was made with profile seed"), std::string::npos) << other.err;
}

}  // namespace
