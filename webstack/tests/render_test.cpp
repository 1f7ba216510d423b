// render_site() and write_files() against the real templates/, with the real tools'
// syntax checks (haproxy -c, nginx -t, mariadbd --help, sh -n) on what they render.
#include "render/render.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <toml++/toml.h>

#include "failover/config.hpp"

#ifndef WEBSTACK_SOURCE_DIR
#error "WEBSTACK_SOURCE_DIR must name the repository"
#endif

namespace webstack::render {
namespace {

namespace fs = std::filesystem;
using topo::DbRole;
using topo::Host;
using topo::Role;

Host make_host(std::string name, std::string address, std::vector<Role> roles,
               std::optional<DbRole> db = std::nullopt) {
  Host h;
  h.name = std::move(name);
  h.address = std::move(address);
  h.roles = std::move(roles);
  h.db = db;
  return h;
}

// The seed's site, filled in by hand (no parser involved).
topo::Topology seed_topology() {
  topo::Topology t;
  t.source = "render_test";
  t.name = "webstack";
  t.subnet = "10.77.0.0/24";
  t.edge_port = 8080;
  t.site_name = "www.foobar.test";
  t.balance = "roundrobin";
  t.http_port = 80;
  t.app_port = 8080;
  t.web_port = 80;
  t.db_port = 3306;
  t.hosts.push_back(make_host("lb-01", "10.77.0.10", {Role::LoadBalancer}));
  t.hosts.push_back(
      make_host("web-01", "10.77.0.11", {Role::Web, Role::Database}, DbRole::Primary));
  t.hosts.push_back(
      make_host("web-02", "10.77.0.12", {Role::Web, Role::Database}, DbRole::Replica));
  t.hosts.push_back(make_host("client", "10.77.0.100", {Role::Client}));
  return t;
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_text(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << text;
}

void replace_all(std::string& s, const std::string& from, const std::string& to) {
  for (auto pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size())) {
    s.replace(pos, from.size(), to);
  }
}

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout + stderr
};

// Paths used here are temp dirs and the repository: no quoting issue for the shell.
CommandResult run(const std::string& command) {
  CommandResult r;
  FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  if (p == nullptr) return r;
  std::array<char, 4096> buf{};
  while (const auto n = std::fread(buf.data(), 1, buf.size(), p)) r.output.append(buf.data(), n);
  const int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

bool tool_exists(const std::string& name) {
  return run("command -v " + name + " >/dev/null").exit_code == 0;
}

std::uint16_t free_tcp_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ADD_FAILURE() << "cannot bind a loopback port: " << std::strerror(errno);
  }
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

// errno of bind() to address:0 (0 if it could be bound).
int bind_errno(const std::string& address) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  ::inet_pton(AF_INET, address.c_str(), &a.sin_addr);
  const int rc = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  const int err = rc == 0 ? 0 : errno;
  ::close(fd);
  return err;
}

std::vector<std::string> lines_starting(const std::string& text, const std::string& prefix) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    const auto b = line.find_first_not_of(" \t");
    if (b != std::string::npos && line.compare(b, prefix.size(), prefix) == 0) {
      out.push_back(line.substr(b));
    }
  }
  return out;
}

class RenderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "webstack-render-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    tmp_ = tmpl;
    options_.templates_dir = WEBSTACK_SOURCE_DIR "/templates";
    options_.state_dir = (tmp_ / "state").string();
    options_.app_binary = "/usr/local/bin/webstack-app";
    options_.www_dir = WEBSTACK_SOURCE_DIR "/www";
  }
  // Runs after a failed assertion too.
  void TearDown() override {
    std::error_code ec;
    if (!tmp_.empty()) fs::remove_all(tmp_, ec);
  }

  const File& file(const std::vector<File>& files, const std::string& host,
                   const std::string& path) {
    const auto it = std::find_if(files.begin(), files.end(),
                                 [&](const File& f) { return f.host == host && f.path == path; });
    if (it == files.end()) {
      ADD_FAILURE() << "no file " << path << " for host \"" << host << "\"";
      static const File none;
      return none;
    }
    return *it;
  }

  fs::path tmp_;
  Options options_;
};

TEST_F(RenderTest, FilesPerHostInStableOrder) {
  const auto files = render_site(seed_topology(), options_);
  std::vector<std::string> got;
  got.reserve(files.size());
  for (const auto& f : files) got.push_back(f.host + ":" + f.path);
  // Every service has its logger right after it (s6/<svc>/log/run); a web host's Nginx
  // comes first, then its application server.
  const std::vector<std::string> want = {
      "lb-01:haproxy/haproxy.cfg",
      "lb-01:s6/haproxy/run",
      "lb-01:s6/haproxy/log/run",
      "web-01:nginx/nginx.conf",
      "web-01:s6/nginx/run",
      "web-01:s6/nginx/log/run",
      "web-01:app/webstack-app.toml",
      "web-01:s6/webstack-app/run",
      "web-01:s6/webstack-app/log/run",
      "web-01:mariadb/my.cnf",
      "web-01:s6/mariadb/run",
      "web-01:s6/mariadb/log/run",
      "web-02:nginx/nginx.conf",
      "web-02:s6/nginx/run",
      "web-02:s6/nginx/log/run",
      "web-02:app/webstack-app.toml",
      "web-02:s6/webstack-app/run",
      "web-02:s6/webstack-app/log/run",
      "web-02:mariadb/my.cnf",
      "web-02:s6/mariadb/run",
      "web-02:s6/mariadb/log/run",
      ":edge/haproxy.cfg",
      ":s6/edge/run",
      ":s6/edge/log/run",
  };
  // The hardened profile (the default) adds every host's firewall after its services.
  std::vector<std::string> hardened = want;
  for (const char* host : {"lb-01", "web-01", "web-02"}) {
    const std::string prefix = std::string(host) + ":";
    auto last = std::find_if(hardened.rbegin(), hardened.rend(),
                             [&](const std::string& f) { return f.starts_with(prefix); });
    hardened.insert(last.base(), prefix + "nftables/ruleset.nft");
  }
  hardened.insert(hardened.end() - 3, "client:nftables/ruleset.nft");
  EXPECT_EQ(got, hardened);
  options_.profile = webstack::render::Profile::Seed;
  got.clear();
  for (const auto& f : render_site(seed_topology(), options_)) got.push_back(f.host + ":" + f.path);
  EXPECT_EQ(got, want);  // the seed's design: no firewall, so the client host needs nothing
  options_.profile = webstack::render::Profile::Hardened;
  EXPECT_EQ(render_site(seed_topology(), options_).size(), files.size());
  for (const auto& f : files) {
    EXPECT_EQ(f.mode, f.path.rfind("s6/", 0) == 0 ? 0755u : 0644u) << f.path;
    // No mustache left over, no HTML escaping of anything.
    EXPECT_EQ(f.content.find("{{"), std::string::npos) << f.host << ":" << f.path;
    EXPECT_EQ(f.content.find("&#"), std::string::npos) << f.host << ":" << f.path;
    EXPECT_EQ(f.content.find("&quot;"), std::string::npos) << f.host << ":" << f.path;
  }
}

TEST_F(RenderTest, LoadBalancerHasOneServerPerWebHostInOrder) {
  auto t = seed_topology();
  const auto cfg = file(render_site(t, options_), "lb-01", "haproxy/haproxy.cfg").content;
  EXPECT_NE(cfg.find("    balance roundrobin\n"), std::string::npos) << cfg;
  EXPECT_NE(cfg.find("bind 10.77.0.10:80\n"), std::string::npos);
  EXPECT_NE(cfg.find("stats socket " + options_.state_dir + "/run/lb-01/haproxy.sock"),
            std::string::npos);
  EXPECT_EQ(lines_starting(cfg, "server "),
            (std::vector<std::string>{"server web-01 10.77.0.11:80 check",
                                      "server web-02 10.77.0.12:80 check"}));

  // Another web host in the topology is another server line, with no code change.
  t.hosts.push_back(make_host("web-03", "10.77.0.13", {Role::Web}));
  t.balance = "leastconn";
  const auto cfg3 = file(render_site(t, options_), "lb-01", "haproxy/haproxy.cfg").content;
  EXPECT_NE(cfg3.find("    balance leastconn\n"), std::string::npos);
  EXPECT_EQ(lines_starting(cfg3, "server "),
            (std::vector<std::string>{"server web-01 10.77.0.11:80 check",
                                      "server web-02 10.77.0.12:80 check",
                                      "server web-03 10.77.0.13:80 check"}));
}

TEST_F(RenderTest, EdgeRelaysIntoEachLoadBalancersNamespace) {
  auto t = seed_topology();
  t.hosts.push_back(make_host("lb-02", "10.77.0.20", {Role::LoadBalancer}));
  const auto cfg = file(render_site(t, options_), "", "edge/haproxy.cfg").content;
  EXPECT_NE(cfg.find("bind 127.0.0.1:8080\n"), std::string::npos) << cfg;
  EXPECT_NE(cfg.find("mode tcp"), std::string::npos);
  // TLS passes through untouched to the load balancers' HTTPS port...
  EXPECT_EQ(
      lines_starting(cfg, "server "),
      (std::vector<std::string>{"server lb-01 10.77.0.10:443 namespace webstack-lb-01 check",
                                "server lb-02 10.77.0.20:443 namespace webstack-lb-02 check"}));
  // ... or, in the seed's design, plain HTTP to their port 80.
  options_.profile = webstack::render::Profile::Seed;
  EXPECT_EQ(
      lines_starting(file(render_site(t, options_), "", "edge/haproxy.cfg").content, "server "),
      (std::vector<std::string>{"server lb-01 10.77.0.10:80 namespace webstack-lb-01 check",
                                "server lb-02 10.77.0.20:80 namespace webstack-lb-02 check"}));
  EXPECT_NE(cfg.find("pidfile " + options_.state_dir + "/run/edge/haproxy.pid"), std::string::npos);
}

// `haproxy -c` parses and checks the configuration; it binds nothing: 10.77.0.10 is not
// an address of this machine (checked below), yet the check passes.
TEST_F(RenderTest, HaproxyAcceptsTheLoadBalancerConfig) {
  if (!tool_exists("haproxy")) GTEST_FAIL() << "haproxy not installed";
  ASSERT_EQ(bind_errno("10.77.0.10"), EADDRNOTAVAIL) << "10.77.0.10 is local here";
  // The site's certificate, as `up` makes it (a self-signed one does for the check).
  const auto tls = fs::path(options_.state_dir) / "secrets/tls";
  fs::create_directories(tls);
  const auto made = run(
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
      "-subj /CN=www.foobar.test -days 1 -keyout " +
      (tls / "key").string() + " -out " + (tls / "crt").string() + " 2>&1 && cat " +
      (tls / "crt").string() + " " + (tls / "key").string() + " > " + (tls / "site.pem").string());
  ASSERT_EQ(made.exit_code, 0) << made.output;
  for (const auto profile :
       {webstack::render::Profile::Hardened, webstack::render::Profile::Seed}) {
    options_.profile = profile;
    const auto out = tmp_ / std::string(webstack::render::profile_name(profile));
    const auto files = render_site(seed_topology(), options_);
    write_files(files, out.string());
    const auto cfg = out / "lb-01/haproxy/haproxy.cfg";
    const auto r = run("HAPROXY_STATS_PASSWORD=x haproxy -c -f " + cfg.string());
    EXPECT_EQ(r.exit_code, 0) << r.output << "\n" << read_text(cfg);
    const auto text = read_text(cfg);
    const bool hardened = profile == webstack::render::Profile::Hardened;
    EXPECT_EQ(text.find("bind 10.77.0.10:443 ssl crt") != std::string::npos, hardened);
    EXPECT_EQ(
        text.find("redirect location \"https://%[req.hdr(host),field(1,:)]%[capture.req.uri]\" "
                  "code 301") != std::string::npos,
        hardened);
    EXPECT_EQ(text.find("Strict-Transport-Security \"max-age=63072000\"") != std::string::npos,
              hardened);
    EXPECT_EQ(text.find("ssl-min-ver TLSv1.2 no-tls-tickets") != std::string::npos, hardened);
    EXPECT_NE(text.find("stats auth admin:\"${HAPROXY_STATS_PASSWORD}\""), std::string::npos);
  }
}

// Every host's firewall is a ruleset nft accepts (checked, not applied: `nft -c`); the
// seed profile has none.
TEST_F(RenderTest, FirewallRulesetsPassNftCheck) {
  if (!tool_exists("nft")) GTEST_FAIL() << "nft not installed (Debian package nftables)";
  const auto files = render_site(seed_topology(), options_);
  write_files(files, (tmp_ / "out").string());
  int rulesets = 0;
  for (const auto& f : files) {
    if (f.path != "nftables/ruleset.nft") continue;
    ++rulesets;
    const auto path = tmp_ / "out" / f.host / f.path;
    const auto r = run("nft -c -f " + path.string());
    EXPECT_EQ(r.exit_code, 0) << f.host << ": " << r.output << "\n" << f.content;
    EXPECT_NE(f.content.find("policy drop;"), std::string::npos) << f.host;
  }
  EXPECT_EQ(rulesets, 4);  // lb-01, web-01, web-02, client
  const auto& web = file(files, "web-02", "nftables/ruleset.nft").content;
  EXPECT_NE(web.find("elements = { 10.77.0.10 }"), std::string::npos) << web;
  EXPECT_NE(web.find("ip saddr @load_balancers tcp dport 80 accept"), std::string::npos) << web;
  EXPECT_NE(web.find("ip saddr @web_hosts tcp dport 3306 accept"), std::string::npos) << web;
  const auto& lb = file(files, "lb-01", "nftables/ruleset.nft").content;
  EXPECT_NE(lb.find("tcp dport { 80, 443 } accept"), std::string::npos) << lb;
  EXPECT_EQ(lb.find("dport 3306 accept"), std::string::npos) << "the lb serves no database";
  const auto& client = file(files, "client", "nftables/ruleset.nft").content;
  EXPECT_NE(client.find("hook output priority filter; policy accept;"), std::string::npos);
}

// The edge's `namespace NAME` opens /var/run/netns/NAME while the configuration is
// parsed, so `haproxy -c` fails when the lab's namespaces do not exist (they do not in
// this test): the check runs on a copy without the namespace keyword; the keyword
// itself is known to this HAProxy only if built with USE_NS (checked: `haproxy -vv`).
TEST_F(RenderTest, HaproxyAcceptsTheEdgeConfig) {
  if (!tool_exists("haproxy")) GTEST_FAIL() << "haproxy not installed";
  EXPECT_NE(run("haproxy -vv").output.find("+NS"), std::string::npos)
      << "this HAProxy has no network namespace support (USE_NS)";
  const auto files = render_site(seed_topology(), options_);
  std::string cfg = file(files, "", "edge/haproxy.cfg").content;
  replace_all(cfg, " namespace webstack-lb-01", "");
  replace_all(cfg, "bind 127.0.0.1:8080", "bind 127.0.0.1:" + std::to_string(free_tcp_port()));
  const auto path = tmp_ / "edge-check.cfg";
  write_text(path, cfg);
  const auto r = run("haproxy -c -f " + path.string());
  EXPECT_EQ(r.exit_code, 0) << r.output << "\n" << cfg;
}

// `nginx -t` checks more than syntax: it resolves the `user`, creates the temp paths and
// opens the log files, and it binds the listen addresses. 10.77.0.11 is not an address
// of this machine (the real one lives in the host's namespace), so the check runs on a
// copy listening on 127.0.0.1:<free port>; everything else is the rendered file.
TEST_F(RenderTest, NginxAcceptsTheWebConfig) {
  if (!tool_exists("nginx")) GTEST_FAIL() << "nginx not installed";
  if (::geteuid() != 0) GTEST_FAIL() << "nginx -t with `user www-data` needs root";
  const auto files = render_site(seed_topology(), options_);
  std::string cfg = file(files, "web-01", "nginx/nginx.conf").content;
  ASSERT_NE(cfg.find("listen 10.77.0.11:80 default_server;"), std::string::npos) << cfg;
  replace_all(cfg, "listen 10.77.0.11:80 ",
              "listen 127.0.0.1:" + std::to_string(free_tcp_port()) + " ");
  replace_all(cfg, "listen 127.0.0.1:8081;",
              "listen 127.0.0.1:" + std::to_string(free_tcp_port()) + ";");
  // What the lab creates before starting Nginx.
  fs::create_directories(fs::path(options_.state_dir) / "run/web-01/nginx-tmp");
  const auto path = tmp_ / "nginx-check.conf";
  write_text(path, cfg);
  const auto r =
      run("nginx -t -e stderr -p " + (tmp_ / "prefix/").string() + " -c " + path.string());
  EXPECT_EQ(r.exit_code, 0) << r.output << "\n" << cfg;
  EXPECT_NE(r.output.find("test is successful"), std::string::npos) << r.output;

  // Static answers and proxied ones get the same single X-Served-By.
  EXPECT_NE(cfg.find("add_header X-Served-By web-01 always;"), std::string::npos);
  EXPECT_NE(cfg.find("proxy_hide_header X-Served-By;"), std::string::npos);
  EXPECT_EQ(lines_starting(cfg, "add_header").size(), 1u);
  EXPECT_NE(cfg.find("root " WEBSTACK_SOURCE_DIR "/www;"), std::string::npos);
  EXPECT_NE(cfg.find("server 127.0.0.1:8080;"), std::string::npos);
  EXPECT_NE(cfg.find("pid " + options_.state_dir + "/run/web-01/nginx.pid;"), std::string::npos);
}

topo::Topology monitored_topology() {
  auto t = seed_topology();
  t.hosts.insert(t.hosts.end() - 1, make_host("mon-01", "10.77.0.20", {Role::Monitor}));
  return t;
}

// The monitor host's Prometheus, rules, Alertmanager and blackbox configs pass their own
// tools' checks, in lab and production intervals; the rules pass their unit tests
// (tests/monitoring: each alert fires on its cause, not on a near miss, and in the lab
// within 30 s).
TEST_F(RenderTest, MonitoringConfigsPassPromtoolAmtoolAndBlackbox) {
  for (const char* tool : {"promtool", "amtool", "prometheus-blackbox-exporter"}) {
    if (!tool_exists(tool)) GTEST_FAIL() << tool << " not installed (scripts/setup.sh)";
  }
  for (const bool lab : {true, false}) {
    options_.lab = lab;
    const auto out = tmp_ / (lab ? "lab" : "production");
    write_files(render_site(monitored_topology(), options_), out.string());
    const auto mon = out / "mon-01";
    const auto config =
        run("promtool check config " + (mon / "prometheus/prometheus.yml").string());
    EXPECT_EQ(config.exit_code, 0) << config.output;
    const auto rules = run(std::string(WEBSTACK_SOURCE_DIR "/tests/monitoring/check_rules.sh ") +
                           (mon / "prometheus/alerts.yml").string());
    EXPECT_EQ(rules.exit_code, 0) << rules.output;
    const auto am = run("amtool check-config " + (mon / "alertmanager/alertmanager.yml").string());
    EXPECT_EQ(am.exit_code, 0) << am.output;
    const auto bb = run("prometheus-blackbox-exporter --config.check --config.file=" +
                        (mon / "prometheus/blackbox.yml").string());
    EXPECT_EQ(bb.exit_code, 0) << bb.output;
    const auto prometheus = read_text(mon / "prometheus/prometheus.yml");
    EXPECT_NE(prometheus.find(lab ? "scrape_interval: 2s" : "scrape_interval: 15s"),
              std::string::npos);
  }
}

// With a monitor host every other host runs the exporters it scrapes, the firewalls let
// it (and only it) reach them, Nginx lets it read the app's /metrics, and the edge
// publishes Prometheus and Alertmanager on 127.0.0.1; without one, none of it.
TEST_F(RenderTest, MonitorHostGetsExportersFirewallAndEdge) {
  const auto files = render_site(monitored_topology(), options_);
  const auto has = [&](const std::string& host, const std::string& path) {
    return std::any_of(files.begin(), files.end(),
                       [&](const File& f) { return f.host == host && f.path == path; });
  };
  for (const std::string host : {"lb-01", "web-01", "web-02", "mon-01"}) {
    EXPECT_TRUE(has(host, "s6/node-exporter/run")) << host;
  }
  EXPECT_FALSE(has("client", "s6/node-exporter/run"));
  EXPECT_TRUE(has("web-01", "s6/nginx-exporter/run"));
  EXPECT_TRUE(has("web-02", "s6/mysqld-exporter/run"));
  EXPECT_FALSE(has("lb-01", "s6/mysqld-exporter/run"));
  EXPECT_TRUE(has("mon-01", "s6/prometheus/run"));
  EXPECT_TRUE(has("mon-01", "s6/alertmanager/run"));
  EXPECT_TRUE(has("mon-01", "s6/blackbox-exporter/run"));

  const auto& web = file(files, "web-01", "nftables/ruleset.nft").content;
  EXPECT_NE(web.find("ip saddr @monitors tcp dport 9100 accept"), std::string::npos) << web;
  EXPECT_NE(web.find("ip saddr @monitors tcp dport { 80, 9113 } accept"), std::string::npos);
  EXPECT_NE(web.find("ip saddr @monitors tcp dport 9104 accept"), std::string::npos);
  const auto& mon = file(files, "mon-01", "nftables/ruleset.nft").content;
  EXPECT_NE(mon.find("ip daddr { 10.77.0.10 } tcp dport { 80, 443 } accept"), std::string::npos)
      << mon;
  if (tool_exists("nft")) {
    write_files(files, (tmp_ / "out").string());
    for (const std::string host : {"web-01", "mon-01", "lb-01"}) {
      const auto r = run("nft -c -f " + (tmp_ / "out" / host / "nftables/ruleset.nft").string());
      EXPECT_EQ(r.exit_code, 0) << host << ": " << r.output;
    }
  }
  const auto& nginx = file(files, "web-01", "nginx/nginx.conf").content;
  EXPECT_NE(nginx.find("allow 10.77.0.20;"), std::string::npos);
  const auto& edge = file(files, "", "edge/haproxy.cfg").content;
  EXPECT_NE(edge.find("bind 127.0.0.1:9090"), std::string::npos) << edge;
  EXPECT_NE(edge.find("server mon-01 10.77.0.20:9093 namespace webstack-mon-01"),
            std::string::npos);

  const auto plain = render_site(seed_topology(), options_);
  EXPECT_TRUE(std::none_of(plain.begin(), plain.end(), [](const File& f) {
    return f.path.find("exporter") != std::string::npos || f.path.starts_with("prometheus/");
  }));
  EXPECT_EQ(file(plain, "", "edge/haproxy.cfg").content.find("9090"), std::string::npos);
}

// Two balancers sharing a virtual address: keepalived on each (the first preferred,
// unicast to the other, tracking its own HAProxy), HAProxy binding the address too, VRRP
// admitted between the balancers only, the edge reaching the address from the client.
TEST_F(RenderTest, LoadBalancerPairSharesTheVirtualAddress) {
  auto t = seed_topology();
  t.hosts.insert(t.hosts.begin() + 1, make_host("lb-02", "10.77.0.14", {Role::LoadBalancer}));
  t.virtual_addresses = {"10.77.0.5"};
  const auto files = render_site(t, options_);
  const auto& ka1 = file(files, "lb-01", "keepalived/keepalived.conf").content;
  const auto& ka2 = file(files, "lb-02", "keepalived/keepalived.conf").content;
  EXPECT_NE(ka1.find("priority 150"), std::string::npos) << ka1;
  EXPECT_NE(ka2.find("priority 140"), std::string::npos) << ka2;
  EXPECT_NE(ka1.find("unicast_src_ip 10.77.0.10"), std::string::npos);
  EXPECT_NE(ka1.find("        10.77.0.14\n"), std::string::npos) << "lb-02 is lb-01's peer";
  EXPECT_NE(ka1.find("10.77.0.5/24 dev eth0"), std::string::npos);
  EXPECT_NE(ka1.find("http://10.77.0.10:8404/healthz"), std::string::npos);
  EXPECT_NE(file(files, "lb-01", "s6/keepalived/run").content.find("keepalived --dont-fork"),
            std::string::npos);
  const auto& haproxy = file(files, "lb-02", "haproxy/haproxy.cfg").content;
  EXPECT_NE(haproxy.find("bind 10.77.0.5:443 ssl crt"), std::string::npos) << haproxy;
  EXPECT_NE(haproxy.find("bind 10.77.0.14:443 ssl crt"), std::string::npos);
  const auto& nft = file(files, "lb-01", "nftables/ruleset.nft").content;
  EXPECT_NE(nft.find("ip saddr @load_balancers ip protocol 112 accept"), std::string::npos);
  EXPECT_EQ(file(files, "web-01", "nftables/ruleset.nft").content.find("vrrp"), std::string::npos);
  EXPECT_NE(file(files, "", "edge/haproxy.cfg")
                .content.find("server vip-1 10.77.0.5:443 namespace webstack-client check"),
            std::string::npos);
  if (tool_exists("nft")) {
    write_files(files, (tmp_ / "pair").string());
    const auto r = run("nft -c -f " + (tmp_ / "pair/lb-01/nftables/ruleset.nft").string());
    EXPECT_EQ(r.exit_code, 0) << r.output;
  }
  // Active-active: one VRRP instance per address, each preferring another balancer.
  t.lb_mode = "active-active";
  t.virtual_addresses = {"10.77.0.5", "10.77.0.6"};
  const auto aa = render_site(t, options_);
  const auto instance = [&](const std::string& host, const std::string& name) {
    const auto& text = file(aa, host, "keepalived/keepalived.conf").content;
    const auto at = text.find("vrrp_instance " + name + " {");
    return at == std::string::npos ? std::string() : text.substr(at, text.find("\n}", at) - at);
  };
  EXPECT_NE(instance("lb-01", "site_1").find("priority 150"), std::string::npos);
  EXPECT_NE(instance("lb-02", "site_1").find("priority 140"), std::string::npos);
  EXPECT_NE(instance("lb-01", "site_2").find("priority 140"), std::string::npos);
  EXPECT_NE(instance("lb-02", "site_2").find("priority 150"), std::string::npos);
  EXPECT_NE(instance("lb-02", "site_2").find("10.77.0.6/24 dev eth0"), std::string::npos);
  EXPECT_NE(file(aa, "", "edge/haproxy.cfg").content.find("server vip-2 10.77.0.6:443"),
            std::string::npos);

  // One balancer and no virtual address: no keepalived.
  const auto single = render_site(seed_topology(), options_);
  EXPECT_TRUE(std::none_of(single.begin(), single.end(), [](const File& f) {
    return f.path.find("keepalived") != std::string::npos;
  }));
}

TEST_F(RenderTest, AppConfigIsTomlWithThePrimaryFirst) {
  auto t = seed_topology();
  // The primary listed after the replica in the file: still first in db.nodes.
  std::swap(t.hosts[1].db, t.hosts[2].db);
  const auto files = render_site(t, options_);
  for (const std::string host : {"web-01", "web-02"}) {
    const auto& text = file(files, host, "app/webstack-app.toml").content;
    toml::table cfg;
    try {
      cfg = toml::parse(text);
    } catch (const toml::parse_error& e) {
      FAIL() << host << ": " << e.what() << "\n" << text;
    }
    EXPECT_EQ(cfg["server"]["listen"].value<std::string>(), "127.0.0.1");
    EXPECT_EQ(cfg["server"]["port"].value<std::int64_t>(), 8080);
    EXPECT_EQ(cfg["server"]["served_by"].value<std::string>(), host);
    const auto* nodes = cfg["db"]["nodes"].as_array();
    ASSERT_NE(nodes, nullptr) << text;
    ASSERT_EQ(nodes->size(), 2u);
    EXPECT_EQ((*nodes)[0].value<std::string>(), "10.77.0.12:3306");
    EXPECT_EQ((*nodes)[1].value<std::string>(), "10.77.0.11:3306");
    EXPECT_EQ(cfg["db"]["user"].value<std::string>(), "webstack");
    EXPECT_EQ(cfg["db"]["database"].value<std::string>(), "webstack");
    EXPECT_EQ(cfg["db"]["password_file"].value<std::string>(),
              options_.state_dir + "/secrets/db-app-password");
  }
}

TEST_F(RenderTest, MariadbReplicaIsReadOnlyAndServerIdsDiffer) {
  const auto files = render_site(seed_topology(), options_);
  const auto& primary = file(files, "web-01", "mariadb/my.cnf").content;
  const auto& replica = file(files, "web-02", "mariadb/my.cnf").content;
  EXPECT_NE(primary.find("server-id = 1\n"), std::string::npos) << primary;
  EXPECT_NE(replica.find("server-id = 2\n"), std::string::npos) << replica;
  EXPECT_EQ(lines_starting(primary, "read_only").size(), 0u);
  EXPECT_EQ(lines_starting(replica, "read_only"), std::vector<std::string>{"read_only = ON"});
  for (const auto* cnf : {&primary, &replica}) {
    for (const char* option :
         {"log-bin = mysql-bin", "binlog_format = ROW", "gtid_strict_mode = ON",
          "log_slave_updates = ON", "skip-name-resolve", "user = mysql"}) {
      EXPECT_NE(cnf->find(std::string("\n") + option + "\n"), std::string::npos) << option;
    }
  }
  EXPECT_NE(primary.find("bind-address = 10.77.0.11\n"), std::string::npos);
  EXPECT_NE(primary.find("datadir = " + options_.state_dir + "/data/web-01/mysql\n"),
            std::string::npos);
}

// mariadbd refuses an unknown option in its [mariadbd] group, even with --help.
TEST_F(RenderTest, MariadbAcceptsTheServerOptions) {
  if (!tool_exists("mariadbd")) GTEST_FAIL() << "mariadbd not installed";
  const auto files = render_site(seed_topology(), options_);
  write_files(files, (tmp_ / "out").string());
  for (const std::string host : {"web-01", "web-02"}) {
    const auto cnf = tmp_ / "out" / host / "mariadb/my.cnf";
    const auto r = run("mariadbd --defaults-file=" + cnf.string() + " --help --verbose");
    EXPECT_EQ(r.exit_code, 0) << host << ":\n" << r.output.substr(0, 4000);
    const auto values = run("my_print_defaults --defaults-file=" + cnf.string() + " mariadbd");
    EXPECT_NE(values.output.find("--server-id=" + std::string(host == "web-01" ? "1" : "2")),
              std::string::npos)
        << values.output;
  }
}

// Automatic failover (a monitor host and a replica, hardened): the manager on the monitor
// host, a fencing agent on each database host, every node starting read-only, and the
// firewall holes they need; configs the program itself accepts.
// How the failover timings must relate (docs/high-availability.md, "Timings"), from the
// rendered files of one target.
void expect_failover_timings(const failover::ManagerConfig& m, const failover::AgentConfig& a,
                             const std::string& my_cnf, const std::string& target) {
  using std::chrono::milliseconds;
  // One lease for both sides: the manager waits out the one the agents hold.
  EXPECT_EQ(m.lease, a.lease) << target;
  EXPECT_EQ(m.agent_port, a.port) << target;
  // Renewed at least twice per lease, each question bounded.
  EXPECT_GE(a.lease, 2 * a.interval + a.timeout) << target;
  // MariaDB's semi-sync timeout in the file is for the bootstrap only (the lease holder
  // gets a day at run time); the agent's fallback is what releases waiting commits.
  EXPECT_EQ(lines_starting(my_cnf, "rpl_semi_sync_master_timeout").size(), 1u) << target;
  // Such a write waits, then succeeds: the fallback, seen and carried out within four
  // agent rounds, comes before the app's query timeout (5 s).
  EXPECT_LT(a.semi_sync_fallback + 4 * a.interval, milliseconds(5000)) << target;
  // A primary cut off from the voters loses its lease before its agent would release
  // commits (config.cpp refuses the opposite too).
  EXPECT_GT(a.semi_sync_fallback, a.lease + a.interval + a.timeout) << target;
  // A primary is deposed only after several rounds without one.
  EXPECT_GE(m.failover_after, 4 * m.interval) << target;
}

TEST_F(RenderTest, AutomaticFailoverManagerAgentsAndReadOnlyStart) {
  const auto t = monitored_topology();
  ASSERT_TRUE(t.automatic_failover());
  options_.failover_binary = "/usr/local/bin/webstack-failover";
  options_.cli_binary = "/opt/lab/web\"stack";  // a quote: the TOML string escapes it
  options_.topology_file = "/srv/site.toml";
  const auto files = render_site(t, options_);
  write_files(files, (tmp_ / "out").string());
  const auto has = [&](const std::vector<File>& fs_, const std::string& host,
                       const std::string& path) {
    return std::any_of(fs_.begin(), fs_.end(),
                       [&](const File& f) { return f.host == host && f.path == path; });
  };
  EXPECT_TRUE(has(files, "mon-01", "s6/failover-manager/run"));
  EXPECT_TRUE(has(files, "web-01", "s6/failover-agent/run"));
  EXPECT_TRUE(has(files, "web-02", "s6/failover-agent/run"));
  EXPECT_FALSE(has(files, "lb-01", "s6/failover-agent/run"));
  EXPECT_NE(file(files, "mon-01", "s6/failover-manager/run")
                .content.find("/usr/local/bin/webstack-failover manager"),
            std::string::npos);

  const auto m =
      failover::load_manager_config((tmp_ / "out/mon-01/failover/manager.toml").string());
  EXPECT_EQ(m.listen, "10.77.0.20");
  EXPECT_EQ(m.primary, "web-01");
  EXPECT_EQ(m.failover_after, std::chrono::milliseconds(2000));
  ASSERT_EQ(m.db.size(), 2u);
  EXPECT_EQ(m.db[1].address, "10.77.0.12");
  ASSERT_EQ(m.apps.size(), 2u);
  EXPECT_EQ(m.apps[0].url, "http://10.77.0.11:80/api/info");
  EXPECT_EQ(m.password_file, options_.state_dir + "/secrets/db-failover-password");
  // A diverged node is rebuilt by the lab's own command, its discarded writes saved.
  EXPECT_EQ(m.rebuild_command,
            (std::vector<std::string>{"/opt/lab/web\"stack", "db", "rebuild", "{host}", "-f",
                                      "/srv/site.toml", "--state-dir", options_.state_dir}));
  EXPECT_EQ(m.errant_dir, options_.state_dir + "/errant");
  EXPECT_EQ(m.rebuild_lock, options_.state_dir + "/data/{host}/rebuild.lock");
  const auto a = failover::load_agent_config((tmp_ / "out/web-01/failover/agent.toml").string());
  EXPECT_EQ(a.socket, options_.state_dir + "/run/web-01/mysqld.sock");
  EXPECT_EQ(a.listen, "10.77.0.11");
  EXPECT_EQ(a.port, 9097);
  EXPECT_TRUE(a.gate);
  ASSERT_EQ(a.peers.size(), 1u);
  EXPECT_EQ(a.peers[0].name, "web-02");
  EXPECT_EQ(a.peers[0].port, 9097);
  EXPECT_EQ(a.manager.name, "mon-01");
  EXPECT_EQ(a.manager.port, 9096);
  expect_failover_timings(m, a, file(files, "web-01", "mariadb/my.cnf").content, "lab");
  const auto& lab_cnf = file(files, "web-01", "mariadb/my.cnf").content;
  EXPECT_EQ(lines_starting(lab_cnf, "sync_binlog"), std::vector<std::string>{"sync_binlog = 0"});

  for (const std::string host : {"web-01", "web-02"}) {
    const auto& cnf = file(files, host, "mariadb/my.cnf").content;
    EXPECT_EQ(lines_starting(cnf, "read_only"), std::vector<std::string>{"read_only = ON"}) << host;
    EXPECT_EQ(lines_starting(cnf, "init_rpl_role"),
              std::vector<std::string>{"init_rpl_role = SLAVE"});
    if (tool_exists("mariadbd")) {
      const auto r =
          run("mariadbd --defaults-file=" + (tmp_ / "out" / host / "mariadb/my.cnf").string() +
              " --help --verbose");
      EXPECT_EQ(r.exit_code, 0) << host << ":\n" << r.output.substr(0, 4000);
    }
  }
  const auto& web = file(files, "web-01", "nftables/ruleset.nft").content;
  EXPECT_NE(web.find("ip saddr @monitors tcp dport { 3306, 9097 } accept"), std::string::npos)
      << web;
  EXPECT_NE(web.find("ip saddr @db_hosts tcp dport 9097 accept"), std::string::npos);
  EXPECT_NE(web.find("ip daddr @monitors tcp dport 9096 accept"), std::string::npos);
  EXPECT_NE(web.find("ip daddr @db_hosts tcp dport 9097 accept"), std::string::npos);
  const auto& mon = file(files, "mon-01", "nftables/ruleset.nft").content;
  EXPECT_NE(mon.find("ip saddr @db_hosts tcp dport 9096 accept"), std::string::npos) << mon;
  EXPECT_NE(mon.find("ip daddr @db_hosts tcp dport { 3306, 9097 } accept"), std::string::npos);
  if (tool_exists("nft")) {
    for (const std::string host : {"web-01", "mon-01"}) {
      const auto r = run("nft -c -f " + (tmp_ / "out" / host / "nftables/ruleset.nft").string());
      EXPECT_EQ(r.exit_code, 0) << host << ": " << r.output;
    }
  }
  const auto& nginx = file(files, "web-01", "nginx/nginx.conf").content;
  const auto info = nginx.find("location = /api/info {");
  ASSERT_NE(info, std::string::npos);
  EXPECT_NE(nginx.substr(info, 200).find("allow 10.77.0.20;"), std::string::npos);

  // Real servers: 30 s before a primary is deposed, a 1.5 s lease.
  options_.lab = false;
  const auto prod = render_site(t, options_);
  write_files(prod, (tmp_ / "prod").string());
  const auto pm =
      failover::load_manager_config((tmp_ / "prod/mon-01/failover/manager.toml").string());
  EXPECT_EQ(pm.failover_after, std::chrono::milliseconds(30000));
  const auto pa = failover::load_agent_config((tmp_ / "prod/web-01/failover/agent.toml").string());
  EXPECT_EQ(pa.lease, std::chrono::milliseconds(1500));
  expect_failover_timings(pm, pa, file(prod, "web-01", "mariadb/my.cnf").content, "servers");
  // Crash-safe commits on real servers (the lab keeps its fast settings, above).
  const auto& prod_cnf = file(prod, "web-01", "mariadb/my.cnf").content;
  EXPECT_EQ(lines_starting(prod_cnf, "sync_binlog"), std::vector<std::string>{"sync_binlog = 1"});
  EXPECT_EQ(lines_starting(prod_cnf, "innodb_flush_log_at_trx_commit"),
            std::vector<std::string>{"innodb_flush_log_at_trx_commit = 1"});
  options_.lab = true;

  // Manual failover, or the seed profile: no manager, no agent, the primary writable.
  auto manual = t;
  manual.failover = "manual";
  for (const auto& [topology, profile] :
       {std::pair{manual, Profile::Hardened}, std::pair{t, Profile::Seed}}) {
    options_.profile = profile;
    const auto none = render_site(topology, options_);
    EXPECT_TRUE(std::none_of(none.begin(), none.end(), [](const File& f) {
      return f.path.find("failover") != std::string::npos;
    }));
    EXPECT_EQ(lines_starting(file(none, "web-01", "mariadb/my.cnf").content, "read_only").size(),
              0u);
  }
}

TEST_F(RenderTest, RunScriptsAreExecutableShellScripts) {
  const auto files = render_site(seed_topology(), options_);
  write_files(files, (tmp_ / "out").string());
  int scripts = 0;
  for (const auto& f : files) {
    if (f.path.rfind("s6/", 0) != 0) continue;
    ++scripts;
    const auto path = (f.host.empty() ? tmp_ / "out" : tmp_ / "out" / f.host) / f.path;
    struct stat st {};
    ASSERT_EQ(::stat(path.c_str(), &st), 0) << path;
    EXPECT_EQ(st.st_mode & 07777, 0755u) << path;
    EXPECT_EQ(f.content.rfind("#!/bin/sh\n", 0), 0u) << path;
    EXPECT_NE(f.content.find("\nexec 2>&1\n"), std::string::npos) << path;
    const auto r = run("sh -n " + path.string());
    EXPECT_EQ(r.exit_code, 0) << path << ": " << r.output;
  }
  EXPECT_EQ(scripts, 16);  // lb-01: 1, web-01 and web-02: 3 each, the edge: 1; each + logger
  EXPECT_NE(file(files, "web-01", "s6/nginx/log/run")
                .content.find("exec s6-log -- n10 s1000000 T \"" + options_.state_dir +
                              "/log/web-01/nginx\""),
            std::string::npos);
  EXPECT_NE(file(files, "", "s6/edge/log/run").content.find("/log/edge/edge\""), std::string::npos);
  EXPECT_NE(file(files, "lb-01", "s6/haproxy/run")
                .content.find("exec ip netns exec webstack-lb-01 haproxy -W -db -f"),
            std::string::npos);
  EXPECT_NE(file(files, "web-02", "s6/webstack-app/run")
                .content.find("exec ip netns exec webstack-web-02 s6-setuidgid www-data "
                              "\"/usr/local/bin/webstack-app\" --config"),
            std::string::npos);
  const auto& edge = file(files, "", "s6/edge/run").content;
  EXPECT_EQ(edge.find("exec ip netns"), std::string::npos) << edge;
}

// The run scripts find the config two directories up from their service directory.
TEST_F(RenderTest, RunScriptsPointAtTheWrittenConfigs) {
  const auto files = render_site(seed_topology(), options_);
  const auto out = tmp_ / "out";
  write_files(files, out.string());
  const std::regex config_arg(R"re("\$PWD/([^"]+)")re");
  for (const auto& f : files) {
    if (f.path.rfind("s6/", 0) != 0 || f.path.ends_with("/log/run")) continue;
    std::smatch m;
    ASSERT_TRUE(std::regex_search(f.content, m, config_arg)) << f.content;
    const auto host_dir = f.host.empty() ? out : out / f.host;
    EXPECT_TRUE(fs::is_regular_file(host_dir / m[1].str())) << f.host << ":" << f.path;
  }
}

TEST_F(RenderTest, WriteFilesCreatesDirectoriesAndReplacesAtomically) {
  const auto out = tmp_ / "a/b/out";
  std::vector<File> files = {{"h1", "x/y/z.conf", "one\n", 0644},
                             {"", "top.txt", "top\n", 0600},
                             {"h1", "s6/svc/run", "#!/bin/sh\n", 0755}};
  write_files(files, out.string());
  EXPECT_EQ(read_text(out / "h1/x/y/z.conf"), "one\n");
  EXPECT_EQ(read_text(out / "top.txt"), "top\n");
  EXPECT_EQ(fs::status(out / "top.txt").permissions(), fs::perms(0600));
  EXPECT_EQ(fs::status(out / "h1/s6/svc/run").permissions(), fs::perms(0755));

  // A reader holding the old file keeps reading the old content: the new one is a new
  // file renamed over the path, never the old one rewritten in place.
  std::ifstream old_reader(out / "h1/x/y/z.conf");
  struct stat before {};
  ASSERT_EQ(::stat((out / "h1/x/y/z.conf").c_str(), &before), 0);
  files[0].content = "two, longer\n";
  files[0].mode = 0640;
  write_files(files, out.string());
  struct stat after {};
  ASSERT_EQ(::stat((out / "h1/x/y/z.conf").c_str(), &after), 0);
  EXPECT_NE(before.st_ino, after.st_ino);
  EXPECT_EQ(read_text(out / "h1/x/y/z.conf"), "two, longer\n");
  EXPECT_EQ(fs::status(out / "h1/x/y/z.conf").permissions(), fs::perms(0640));
  std::string old_content;
  std::getline(old_reader, old_content);
  EXPECT_EQ(old_content, "one");

  // No temporary file left behind.
  for (const auto& e : fs::recursive_directory_iterator(out)) {
    EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos) << e.path();
  }

  // Paths that would leave the output directory are refused, before anything is written.
  EXPECT_THROW(
      write_files({{"h2", "ok.txt", "", 0644}, {"h2", "../escape", "", 0644}}, out.string()),
      std::runtime_error);
  EXPECT_THROW(write_files({{"h2", "/etc/passwd", "", 0644}}, out.string()), std::runtime_error);
  EXPECT_FALSE(fs::exists(out / "h2"));
}

TEST_F(RenderTest, TemplateErrorsNameTheTemplate) {
  const auto templates = tmp_ / "templates";
  fs::copy(options_.templates_dir, templates, fs::copy_options::recursive);
  options_.templates_dir = templates.string();

  fs::remove(templates / "nginx/nginx.conf.mustache");
  try {
    render_site(seed_topology(), options_);
    ADD_FAILURE() << "no error for a missing template";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("template " +
                                         (templates / "nginx/nginx.conf.mustache").string()),
              std::string::npos)
        << e.what();
  }

  write_text(templates / "nginx/nginx.conf.mustache", "listen {{#web_hosts}}unclosed\n");
  try {
    render_site(seed_topology(), options_);
    ADD_FAILURE() << "no error for an unclosed section";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("template " + templates.string(), 0), 0u) << e.what();
  }
}

TEST_F(RenderTest, ValuesAreInsertedWithoutHtmlEscaping) {
  options_.app_binary = "/opt/a&b/<webstack-app>";
  options_.www_dir = "/srv/\"www\"";
  const auto files = render_site(seed_topology(), options_);
  EXPECT_NE(file(files, "web-01", "s6/webstack-app/run").content.find("/opt/a&b/<webstack-app>"),
            std::string::npos);
  EXPECT_NE(file(files, "web-01", "nginx/nginx.conf").content.find("root /srv/\"www\";"),
            std::string::npos);
}

}  // namespace
// A web host's app is configuration: PHP-FPM or Node.js behind the same Nginx; benchmark
// peers add every kind under its own server name. Nginx accepts each variant.
TEST_F(RenderTest, AppKindsAndBenchmarkPeers) {
  if (!tool_exists("nginx")) GTEST_FAIL() << "nginx not installed";
  auto t = seed_topology();
  t.hosts[1].app = "php";   // web-01
  t.hosts[2].app = "node";  // web-02
  options_.peers_dir = "/opt/peers";
  auto files = render_site(t, options_);
  const auto has = [&](const std::string& host, const std::string& path) {
    return std::any_of(files.begin(), files.end(),
                       [&](const File& f) { return f.host == host && f.path == path; });
  };
  EXPECT_TRUE(has("web-01", "php/php-fpm.conf"));
  EXPECT_TRUE(has("web-01", "s6/php-fpm/run"));
  EXPECT_FALSE(has("web-01", "s6/webstack-app/run"));
  EXPECT_TRUE(has("web-02", "s6/node/run"));
  EXPECT_FALSE(has("web-02", "s6/php-fpm/run"));
  const auto& php_nginx = file(files, "web-01", "nginx/nginx.conf").content;
  EXPECT_NE(php_nginx.find("fastcgi_param SCRIPT_FILENAME /opt/peers/php/index.php;"),
            std::string::npos);
  EXPECT_EQ(php_nginx.find("server_name php.bench;"), std::string::npos) << "no peers asked";
  EXPECT_NE(file(files, "web-02", "nginx/nginx.conf").content.find("proxy_pass http://node;"),
            std::string::npos);
  // Peers: every kind on every web host, each under <kind>.bench, and the Nginx ceiling.
  options_.peers = {"webstack", "php", "node"};
  files = render_site(t, options_);
  for (const char* host : {"web-01", "web-02"}) {
    for (const char* run : {"s6/webstack-app/run", "s6/php-fpm/run", "s6/node/run"}) {
      EXPECT_TRUE(has(host, run)) << host << " " << run;
    }
    const auto& conf = file(files, host, "nginx/nginx.conf").content;
    for (const char* name : {"webstack.bench", "php.bench", "node.bench", "nginx.bench"}) {
      EXPECT_NE(conf.find(std::string("server_name ") + name + ";"), std::string::npos) << name;
    }
  }
  if (::geteuid() != 0) GTEST_FAIL() << "nginx -t with `user www-data` needs root";
  for (const std::string host : {"web-01", "web-02"}) {
    std::string cfg = file(files, host, "nginx/nginx.conf").content;
    const std::string address = host == "web-01" ? "10.77.0.11" : "10.77.0.12";
    replace_all(cfg, "listen " + address + ":80",
                "listen 127.0.0.1:" + std::to_string(free_tcp_port()));
    replace_all(cfg, "listen 127.0.0.1:8081;",
                "listen 127.0.0.1:" + std::to_string(free_tcp_port()) + ";");
    fs::create_directories(fs::path(options_.state_dir) / "run" / host / "nginx-tmp");
    const auto path = tmp_ / (host + "-nginx.conf");
    write_text(path, cfg);
    const auto r =
        run("nginx -t -e stderr -p " + (tmp_ / "prefix/").string() + " -c " + path.string());
    EXPECT_EQ(r.exit_code, 0) << host << ": " << r.output;
  }
  const auto fpm = file(files, "web-01", "php/php-fpm.conf").content;
  EXPECT_NE(
      fpm.find("env[WS_DB_PASSWORD_FILE] = " + options_.state_dir + "/secrets/db-app-password"),
      std::string::npos);
  EXPECT_NE(fpm.find("env[WS_DB_REPLICA] = 10.77.0.12:3306"), std::string::npos) << fpm;
}

// ---------------------------------------------------------------------------------------
// --target hosts: real servers.

// The default site as real servers: the balancer pair, the monitor host, automatic
// failover, and the administrators' address that SSH is opened to.
topo::Topology real_topology() {
  auto t = monitored_topology();
  t.hosts.insert(t.hosts.begin() + 1, make_host("lb-02", "10.77.0.14", {Role::LoadBalancer}));
  t.virtual_addresses = {"10.77.0.5"};
  t.admin_addresses = {"10.77.0.2", "192.0.2.0/24"};
  t.hosts[1].interface = "ens3";  // lb-02's address is on another interface name
  t.hosts[0].ssh = "lb-01.example.com";
  return t;
}

class RenderHostsTest : public RenderTest {
 protected:
  void SetUp() override {
    RenderTest::SetUp();
    options_.target = Target::Hosts;
    options_.failover_binary = "/opt/lab/webstack-failover";  // the lab's; not on a server
    options_.cli_binary = "/opt/lab/webstack";                // same
    options_.app_binary = "/opt/lab/webstack-app";
  }
  std::set<std::string> paths_of(const std::vector<File>& files, const std::string& host) {
    std::set<std::string> out;
    for (const auto& f : files) {
      if (f.host == host) out.insert(f.path);
    }
    return out;
  }
};

// One bundle per server with every file at its path there: the packaged services' configs
// where Debian's units read them, our own services' units, production intervals; nothing
// of the lab (no s6, no namespace, no state directory, no client host, no edge).
TEST_F(RenderHostsTest, EveryFileAtItsPathOnTheServer) {
  const auto files = render_site(real_topology(), options_);
  const std::set<std::string> hosts = [&] {
    std::set<std::string> out;
    for (const auto& f : files) out.insert(f.host);
    return out;
  }();
  // "": beside the servers' bundles, Ansible's inventory of them.
  EXPECT_EQ(hosts, (std::set<std::string>{"", "lb-01", "lb-02", "web-01", "web-02", "mon-01"}));
  EXPECT_EQ(paths_of(files, ""), (std::set<std::string>{"inventory.yml"}));
  const auto& inventory = file(files, "", "inventory.yml").content;
  for (const char* line :
       {"    ansible_user: root\n",
        "    webstack_admin_addresses: [\"10.77.0.2\", \"192.0.2.0/24\"]\n",
        "    lb-01:\n      ansible_host: lb-01.example.com\n      address: 10.77.0.10\n",
        "    web-02:\n      ansible_host: 10.77.0.12\n      address: 10.77.0.12\n      db_role: "
        "replica\n",
        "    monitor:\n      hosts:\n        mon-01:\n"}) {
    EXPECT_NE(inventory.find(line), std::string::npos) << line << "\nin:\n" << inventory;
  }
  EXPECT_EQ(inventory.find("client"), std::string::npos) << inventory;
  EXPECT_EQ(paths_of(files, "lb-01"),
            (std::set<std::string>{"etc/haproxy/haproxy.cfg",
                                   "etc/systemd/system/haproxy.service.d/webstack.conf",
                                   "etc/keepalived/keepalived.conf",
                                   "etc/default/prometheus-node-exporter", "etc/nftables.conf"}));
  EXPECT_EQ(
      paths_of(files, "web-01"),
      (std::set<std::string>{
          "etc/nginx/nginx.conf", "etc/webstack/webstack-app.toml",
          "etc/systemd/system/webstack-app.service", "etc/mysql/mariadb.conf.d/99-webstack.cnf",
          "etc/webstack/failover-agent.toml", "etc/systemd/system/webstack-failover-agent.service",
          "etc/default/prometheus-node-exporter", "etc/default/prometheus-nginx-exporter",
          "etc/default/prometheus-mysqld-exporter", "etc/nftables.conf"}));
  EXPECT_EQ(paths_of(files, "mon-01"),
            (std::set<std::string>{"etc/webstack/failover-manager.toml",
                                   "etc/systemd/system/webstack-failover-manager.service",
                                   "etc/prometheus/prometheus.yml", "etc/prometheus/alerts.yml",
                                   "etc/prometheus/blackbox.yml", "etc/prometheus/alertmanager.yml",
                                   "etc/default/prometheus", "etc/default/prometheus-alertmanager",
                                   "etc/default/prometheus-blackbox-exporter",
                                   "etc/default/prometheus-node-exporter", "etc/nftables.conf"}));
  for (const auto& f : files) {
    EXPECT_EQ(f.content.find(options_.state_dir), std::string::npos)
        << f.host << ":" << f.path << " names the lab's state directory";
    EXPECT_EQ(f.content.find("/opt/lab/"), std::string::npos)
        << f.host << ":" << f.path << " names the lab's binaries";
    EXPECT_EQ(f.content.find("netns"), std::string::npos) << f.host << ":" << f.path;
    // (Alert rules hold Prometheus's own {{ $value }} templates.)
    if (!f.path.ends_with("alerts.yml")) {
      EXPECT_EQ(f.content.find("{{"), std::string::npos) << f.host << ":" << f.path;
    }
  }
  // Production intervals, Debian's paths, our binaries where the deploy installs them.
  EXPECT_NE(
      file(files, "mon-01", "etc/prometheus/prometheus.yml").content.find("scrape_interval: 15s"),
      std::string::npos);
  EXPECT_NE(file(files, "web-01", "etc/systemd/system/webstack-app.service")
                .content.find("ExecStart=/usr/local/bin/webstack-app --config "
                              "/etc/webstack/webstack-app.toml"),
            std::string::npos);
  const auto& cnf = file(files, "web-01", "etc/mysql/mariadb.conf.d/99-webstack.cnf").content;
  EXPECT_NE(cnf.find("socket = /run/mysqld/mysqld.sock"), std::string::npos) << cnf;
  EXPECT_NE(cnf.find("datadir = /var/lib/mysql"), std::string::npos) << cnf;
  EXPECT_NE(cnf.find("ssl_ca = /etc/webstack/tls/ca.crt"), std::string::npos) << cnf;
  const auto& haproxy = file(files, "lb-01", "etc/haproxy/haproxy.cfg").content;
  EXPECT_NE(haproxy.find("stats socket /run/haproxy/admin.sock"), std::string::npos);
  EXPECT_NE(haproxy.find("ssl crt /etc/webstack/tls/site.pem"), std::string::npos);
  EXPECT_NE(file(files, "lb-02", "etc/keepalived/keepalived.conf").content.find("interface ens3"),
            std::string::npos);
  EXPECT_NE(file(files, "lb-01", "etc/keepalived/keepalived.conf").content.find("interface eth0"),
            std::string::npos);
  // The exporters' flags are the lab's (one partial for both).
  EXPECT_NE(file(files, "web-02", "etc/default/prometheus-node-exporter")
                .content.find("--web.listen-address=10.77.0.12:9100 --collector.disable-defaults"),
            std::string::npos);
  EXPECT_NE(file(files, "web-02", "etc/default/prometheus-mysqld-exporter")
                .content.find("DATA_SOURCE_NAME='prometheus@unix(/run/mysqld/mysqld.sock)/'"),
            std::string::npos);
  const auto m_path = tmp_ / "out";
  write_files(files, m_path.string());
  const auto m = failover::load_manager_config(
      (m_path / "mon-01/etc/webstack/failover-manager.toml").string());
  EXPECT_EQ(m.failover_after, std::chrono::milliseconds(30000));
  EXPECT_EQ(m.password_file, "/etc/webstack/secrets/db-failover-password");
  EXPECT_TRUE(m.rebuild_command.empty());  // the lab's command; not on real servers
  EXPECT_TRUE(m.errant_dir.empty());
  const auto a =
      failover::load_agent_config((m_path / "web-01/etc/webstack/failover-agent.toml").string());
  EXPECT_EQ(a.pid_file, "/run/mysqld/mysqld.pid");
}

// What the real tools say of the real servers' files: HAProxy, Nginx, MariaDB, nftables,
// Prometheus, and systemd of the units (systemd-analyze verify).
TEST_F(RenderHostsTest, ConfigsAndUnitsPassTheirTools) {
  for (const char* tool : {"haproxy", "nginx", "mariadbd", "nft", "promtool", "systemd-analyze"}) {
    if (!tool_exists(tool)) GTEST_FAIL() << tool << " not installed (scripts/setup.sh)";
  }
  if (::geteuid() != 0) GTEST_FAIL() << "nginx -t with `user www-data` needs root";
  const auto out = tmp_ / "out";
  const auto files = render_site(real_topology(), options_);
  write_files(files, out.string());

  // HAProxy, with a certificate where the bundle expects the site's.
  const auto pem = tmp_ / "site.pem";
  const auto made =
      run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
          "-subj /CN=www.foobar.test -days 1 -keyout " +
          (tmp_ / "key").string() + " -out " + (tmp_ / "crt").string() + " && cat " +
          (tmp_ / "crt").string() + " " + (tmp_ / "key").string() + " > " + pem.string());
  ASSERT_EQ(made.exit_code, 0) << made.output;
  std::string haproxy = file(files, "lb-01", "etc/haproxy/haproxy.cfg").content;
  replace_all(haproxy, "/etc/webstack/tls/site.pem", pem.string());
  write_text(tmp_ / "haproxy.cfg", haproxy);
  const auto h = run("HAPROXY_STATS_PASSWORD=x haproxy -c -f " + (tmp_ / "haproxy.cfg").string());
  EXPECT_EQ(h.exit_code, 0) << h.output;

  // Nginx as Debian's unit starts it (daemon on), logs moved to the test's directory.
  std::string nginx = file(files, "web-01", "etc/nginx/nginx.conf").content;
  EXPECT_EQ(nginx.find("daemon off;"), std::string::npos);
  replace_all(nginx, "listen 10.77.0.11:80 ",
              "listen 127.0.0.1:" + std::to_string(free_tcp_port()) + " ");
  replace_all(nginx, "listen 127.0.0.1:8081;",
              "listen 127.0.0.1:" + std::to_string(free_tcp_port()) + ";");
  replace_all(nginx, "/var/log/nginx/", (tmp_ / "").string());
  replace_all(nginx, "/var/lib/nginx", (tmp_ / "nginx-lib").string());
  fs::create_directories(tmp_ / "nginx-lib");
  write_text(tmp_ / "nginx.conf", nginx);
  const auto n = run("nginx -t -p " + (tmp_ / "prefix/").string() + " -c " +
                     (tmp_ / "nginx.conf").string() + " -g 'daemon on; master_process on;'");
  EXPECT_EQ(n.exit_code, 0) << n.output;

  // MariaDB reads the drop-in.
  const auto cnf = out / "web-02/etc/mysql/mariadb.conf.d/99-webstack.cnf";
  const auto d = run("mariadbd --defaults-file=" + cnf.string() + " --help --verbose");
  EXPECT_EQ(d.exit_code, 0) << d.output.substr(0, 4000);

  // nftables, SSH open to the administrators only.
  for (const std::string host : {"lb-01", "web-01", "mon-01"}) {
    const auto nft = out / host / "etc/nftables.conf";
    const auto r = run("nft -c -f " + nft.string());
    EXPECT_EQ(r.exit_code, 0) << host << ": " << r.output;
    EXPECT_NE(read_text(nft).find("ip saddr { 10.77.0.2, 192.0.2.0/24 } tcp dport 22 accept"),
              std::string::npos)
        << host;
  }

  // Prometheus (rule_files relative to the config's directory, as on the server).
  const auto p =
      run("promtool check config " + (out / "mon-01/etc/prometheus/prometheus.yml").string());
  EXPECT_EQ(p.exit_code, 0) << p.output;

  // Our units, as systemd reads them: with their binaries at the paths they name (here
  // /bin/true: systemd-analyze checks the path exists and is executable).
  for (const auto& [host, unit] : std::vector<std::pair<std::string, std::string>>{
           {"web-01", "webstack-app.service"},
           {"web-01", "webstack-failover-agent.service"},
           {"mon-01", "webstack-failover-manager.service"}}) {
    std::string text = file(files, host, "etc/systemd/system/" + unit).content;
    replace_all(text, "/usr/local/bin/webstack-app", "/bin/true");
    replace_all(text, "/usr/local/bin/webstack-failover", "/bin/true");
    const auto path = tmp_ / "units" / unit;
    write_text(path, text);
    const auto v =
        run("SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --man=no " + path.string());
    // Only this unit's own problems: the machine's other units are not ours to judge.
    std::string own;
    std::istringstream lines(v.output);
    for (std::string line; std::getline(lines, line);) {
      if (line.find(unit) != std::string::npos) own += line + "\n";
    }
    EXPECT_EQ(own, "") << unit << ":\n" << v.output;
  }
}

// What real servers need, or cannot have, is refused before anything is written.
TEST_F(RenderHostsTest, RefusesWhatRealServersCannotHave) {
  auto t = real_topology();
  t.admin_addresses.clear();
  try {
    render_site(t, options_);
    ADD_FAILURE() << "rendered without deploy.admin_addresses";
  } catch (const topo::TopologyError& e) {
    EXPECT_EQ(e.key(), "deploy.admin_addresses");
    EXPECT_NE(std::string(e.what()).find("SSH"), std::string::npos) << e.what();
  }
  t = real_topology();
  t.hosts[2].app = "php";  // web-01
  try {
    render_site(t, options_);
    ADD_FAILURE() << "rendered a benchmark peer for a real server";
  } catch (const topo::TopologyError& e) {
    EXPECT_NE(std::string(e.what()).find("web-01"), std::string::npos) << e.what();
  }
  options_.peers = {"php"};
  EXPECT_THROW(render_site(real_topology(), options_), std::runtime_error);
  EXPECT_EQ(parse_target("hosts"), Target::Hosts);
  EXPECT_THROW(parse_target("servers"), std::invalid_argument);
}

}  // namespace webstack::render
