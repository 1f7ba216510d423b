#include "lab/site.hpp"

#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "common/process.hpp"
#include "common/steps.hpp"
#include "common/text.hpp"
#include "common/time.hpp"
#include "lab/database.hpp"
#include "lab/monitoring.hpp"
#include "lab/network.hpp"
#include "lab/paths.hpp"
#include "lab/status.hpp"
#include "lab/tls.hpp"
#include "render/render.hpp"
#include "tools/mariadb.hpp"

namespace webstack::lab {

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Written by up into the state directory; down --purge removes only a directory that has it.
constexpr const char* kStateMarker = ".webstack-lab";
using topo::Role;
using topo::Topology;

struct Service {
  std::string host;  // "" for the edge
  std::string name;  // "mariadb", "nginx", "webstack-app", "haproxy", "edge"
  std::string dir;   // the rendered service dir, <state>/hosts/<host>/s6/<name>
  std::string link;  // <state>/service/<host>-<name> (or "edge")
};

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string tail(const std::string& path, std::size_t bytes = 1500) {
  auto s = read_text_or_empty(path);
  if (s.size() > bytes) s = "..." + s.substr(s.size() - bytes);
  return s;
}

uid_t uid_of(const char* user) {
  const passwd* p = ::getpwnam(user);
  if (p == nullptr) throw std::runtime_error(fmt::format("no user {} on this machine", user));
  return p->pw_uid;
}

gid_t gid_of(const char* name) {
  const ::group* g = ::getgrnam(name);
  if (g == nullptr) throw std::runtime_error(fmt::format("no group {} on this machine", name));
  return g->gr_gid;
}

void set_owner_mode(const std::string& path, uid_t uid, gid_t gid, mode_t mode) {
  if (::chown(path.c_str(), uid, gid) != 0 || ::chmod(path.c_str(), mode) != 0) {
    throw std::runtime_error(
        fmt::format("cannot set owner/mode of {}: {}", path, std::strerror(errno)));
  }
}

void make_dir(const std::string& path, uid_t uid = 0, gid_t gid = 0, mode_t mode = 0755) {
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec) throw std::runtime_error(fmt::format("cannot create {}: {}", path, ec.message()));
  set_owner_mode(path, uid, gid, mode);
}

// Writes `content` to `path` created with `mode` (never readable by others in between).
void write_secret(const std::string& path, const std::string& content, uid_t uid, gid_t gid,
                  mode_t mode) {
  const std::string tmp = path + ".tmp";
  ::unlink(tmp.c_str());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0)
    throw std::runtime_error(fmt::format("cannot create {}: {}", tmp, std::strerror(errno)));
  const bool ok =
      ::write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size());
  ::close(fd);
  if (!ok) throw std::runtime_error("cannot write " + tmp);
  set_owner_mode(tmp, uid, gid, mode);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    throw std::runtime_error(fmt::format("cannot rename {}: {}", tmp, std::strerror(errno)));
  }
}

int proc_ppid(int pid) {
  const auto stat = read_text_or_empty(fmt::format("/proc/{}/stat", pid));
  const auto close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(stat.substr(close + 2));
  char state = 0;
  int ppid = 0;
  rest >> state >> ppid;
  return ppid;
}

std::string cmdline(int pid) {
  auto s = read_text_or_empty(fmt::format("/proc/{}/cmdline", pid));
  std::replace(s.begin(), s.end(), '\0', ' ');
  return text::trim(s);
}

// The lab's s6-svscan per its pid file, or -1.
int running_svscan(const StatePaths& p) {
  return lab_svscan_pid(p.state);
}

// Every service the render produced: a "s6/<name>/run" file.
std::vector<Service> services_of(const std::vector<render::File>& files, const StatePaths& p) {
  std::vector<Service> out;
  for (const auto& f : files) {
    if (!f.path.starts_with("s6/") || !f.path.ends_with("/run")) continue;
    if (f.path.ends_with("/log/run")) continue;  // a service's logger, not a service
    Service s;
    s.host = f.host;
    s.name = f.path.substr(3, f.path.size() - 3 - 4);
    s.dir = f.host.empty() ? p.hosts + "/" + f.path.substr(0, f.path.size() - 4)
                           : p.hosts + "/" + f.host + "/" + f.path.substr(0, f.path.size() - 4);
    s.link = p.service + "/" + (f.host.empty() ? s.name : f.host + "-" + s.name);
    out.push_back(std::move(s));
  }
  return out;
}

render::Options render_options(const SiteOptions& o) {
  render::Options r;
  r.templates_dir = o.templates_dir;
  r.state_dir = o.state_dir;
  r.app_binary = o.app_binary;
  r.failover_binary = o.failover_binary;
  r.cli_binary = o.cli_binary;
  r.topology_file = o.topology_file;
  r.www_dir = o.www_dir;
  r.profile = o.profile;
  r.peers = o.peers;
  r.peers_dir = o.peers_dir;
  return r;
}

tools::MariaDbRoot root_of(const StatePaths& p, const std::string& host) {
  return tools::MariaDbRoot(p.mysqld_socket(host));
}

std::string root_sql(const StatePaths& p, const std::string& host, const std::string& sql,
                     std::chrono::milliseconds timeout = 60s) {
  auto r = root_of(p, host).query(sql, timeout);
  if (!r.ok) {
    throw std::runtime_error(fmt::format("SQL on {} failed ({}): {} [{}]", host, r.exit_code, r.err,
                                         sql.substr(0, 200)));
  }
  return std::move(r.out);
}

// Runs a file of SQL as root on `host`.
void root_sql_file(const StatePaths& p, const std::string& host, const std::string& path) {
  const auto r = root_of(p, host).script(read_text(path), 120s);
  if (!r.ok) {
    throw std::runtime_error(fmt::format("{} on {} failed ({}): {}", path, host, r.exit_code,
                                         tools::mariadb_errors(r.err)));
  }
}

// SQL holding a secret: on stdin, never on a command line.
void root_sql_secret(const StatePaths& p, const std::string& host, const std::string& sql) {
  const auto r = root_of(p, host).script(sql, 120s);
  if (!r.ok) {
    throw std::runtime_error(
        fmt::format("SQL on {} failed ({}): {}", host, r.exit_code, tools::mariadb_errors(r.err)));
  }
}

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  for (std::size_t pos = 0; (pos = s.find(from, pos)) != std::string::npos; pos += to.size()) {
    s.replace(pos, from.size(), to);
  }
}

bool dir_empty_or_missing(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return true;
  return fs::is_empty(path, ec);
}

// Pids of this process and its ancestors (never killed as "the lab's").
std::set<int> self_and_ancestors() {
  std::set<int> s;
  for (int pid = ::getpid(); pid > 1 && s.insert(pid).second;) pid = proc_ppid(pid);
  return s;
}

bool under(const std::string& path, const std::string& dir) {
  return path == dir || path.starts_with(dir + "/");
}

void svc(const std::string& flag, const std::string& dir) {
  const auto r = run({"s6-svc", flag, dir}, 5s);
  if (r.exit_code != 0) {
    throw std::runtime_error(
        fmt::format("s6-svc {} {} failed ({}): {}", flag, dir, r.exit_code, text::trim(r.err)));
  }
}

pid_t start_svscan(const StatePaths& p) {
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(fmt::format("fork: {}", std::strerror(errno)));
  if (pid == 0) {
    ::setsid();
    ::signal(SIGPIPE, SIG_DFL);
    const int in = ::open("/dev/null", O_RDONLY);
    const int out = ::open(p.svscan_log().c_str(), O_WRONLY | O_CREAT | O_APPEND, 0640);
    if (in < 0 || out < 0) ::_exit(127);
    ::dup2(in, 0);
    ::dup2(out, 1);
    ::dup2(out, 2);
    ::close_range(3, ~0U, 0);
    const char* argv[] = {"s6-svscan", p.service.c_str(), nullptr};
    ::execvp(argv[0], const_cast<char* const*>(argv));
    ::_exit(127);
  }
  return pid;
}

void print_summary(const Topology& t, const SiteOptions& o, const std::vector<Service>& services) {
  if (o.profile == render::Profile::Hardened) {
    std::printf("\nsite %s: https://127.0.0.1:%u/ (profile hardened; certificate authority: %s)\n",
                t.site_name.c_str(), t.edge_port,
                t.tls_certificate.empty() ? lab_ca_path(o.state_dir).c_str() : "your own");
  } else {
    std::printf("\nsite %s: http://127.0.0.1:%u/ (profile seed: plain HTTP, no firewall)\n",
                t.site_name.c_str(), t.edge_port);
  }
  if (const auto* mon = t.monitor()) {
    std::printf(
        "monitoring on %s: Prometheus http://127.0.0.1:%u/, Alertmanager "
        "http://127.0.0.1:%u/ (`webstack alerts`)\n",
        mon->name.c_str(), t.prometheus_port, t.alertmanager_port);
  }
  std::string dashboard = "webstack dashboard";
  if (t.source != "<embedded default>") dashboard += fmt::format(" -f {}", t.source);
  if (o.state_dir != "/var/lib/webstack/" + t.name) {
    dashboard += fmt::format(" --state-dir {}", o.state_dir);
  }
  std::printf("dashboard: `%s` serves the lab live on http://127.0.0.1:8090/\n", dashboard.c_str());
  std::vector<ServiceRef> refs;
  for (const auto& s : services) refs.push_back({s.host, s.name, s.link});
  print_services(t, refs, stdout);
}

bool namespaces_present(const Topology& t) {
  for (const auto& st : network_status(t))
    if (!st.ns_exists || !st.address_ok) return false;
  return true;
}

void wait_db(const StatePaths& p, const std::string& host, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  std::string last;
  for (;;) {
    const auto r = root_of(p, host).query("SELECT 1", 5s);
    if (r.ok) return;
    last = r.err;
    if (Clock::now() > deadline) {
      throw std::runtime_error(fmt::format(
          "MariaDB on {} does not answer after {} ms: {}\n{}:\n{}", host, timeout.count(), last,
          p.log + "/" + host + "/mariadb/current", tail(p.log + "/" + host + "/mariadb/current")));
    }
    std::this_thread::sleep_for(200ms);
  }
}

// prometheus-mysqld-exporter logs in over the socket as the OS user prometheus: no
// password anywhere. SLAVE MONITOR is all it needs (SHOW SLAVE STATUS); global status
// and variables need no privilege. Made on the primary, it replicates.
constexpr const char* kExporterAccount =
    "CREATE USER IF NOT EXISTS 'prometheus'@'localhost' IDENTIFIED VIA unix_socket "
    "WITH MAX_USER_CONNECTIONS 3; GRANT SLAVE MONITOR ON *.* TO 'prometheus'@'localhost';";

// Automatic failover runs in this lab (render.cpp decides the same way).
bool failover_on(const Topology& t, const SiteOptions& o) {
  return o.profile == render::Profile::Hardened && t.automatic_failover();
}

// The failover manager's account, from the monitor host only, over TLS: it reads every
// node's state, stops and points replication, and sets read_only. No data access.
std::string failover_account_sql(const Topology& t, const StatePaths& p) {
  const std::string user = fmt::format("'webstack_failover'@'{}'", t.monitor()->address);
  const std::string password = text::trim(read_text(p.failover_password()));
  return fmt::format(
      "CREATE USER IF NOT EXISTS {0} IDENTIFIED BY '{1}'; "
      "ALTER USER {0} IDENTIFIED BY '{1}' REQUIRE SSL; "
      "GRANT RELOAD, READ_ONLY ADMIN, REPLICATION SLAVE ADMIN, REPLICATION MASTER ADMIN, "
      "SLAVE MONITOR, BINLOG MONITOR ON *.* TO {0};\n",
      user, password);
}

// Every scrape target of the monitor host's Prometheus reports up (asked from inside
// that host: its API is not published beyond the edge).
void wait_scrape_targets(const Topology& t, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  std::string last;
  for (;;) {
    try {
      const auto targets = monitoring::scrape_targets(t);
      last.clear();
      for (const auto& target : targets) {
        if (target.health != "up") {
          last += fmt::format("\n  {} {} ({}): {} {}", target.job, target.host, target.url,
                              target.health, target.error);
        }
      }
      // The blackbox probe's scrape is up even when the probe fails: the site itself must
      // answer it too (through the load balancers, over HTTPS, as a client).
      for (const auto& [host, ok] : monitoring::query_by_host(t, "probe_success")) {
        if (ok != 1) last += fmt::format("\n  the probe of the site via {} fails", host);
      }
      if (!targets.empty() && last.empty()) return;
      if (targets.empty()) last = " no targets yet";
    } catch (const std::exception& e) {
      last = e.what();
    }
    if (Clock::now() > deadline) {
      throw std::runtime_error(fmt::format("Prometheus does not see every target up after {} ms:{}",
                                           timeout.count(), last));
    }
    std::this_thread::sleep_for(250ms);
  }
}

// The client host's own hosts file: `ip netns exec` bind-mounts /etc/netns/<ns>/hosts
// over /etc/hosts, so inside the client the site's name resolves to the virtual
// address(es), as the internet's DNS would.
std::string client_hosts_dir(const Topology& t) {
  return "/etc/netns/" + host_namespace(t, t.with_role(Role::Client).front()->name);
}

void write_client_hosts(const Topology& t) {
  const std::string dir = client_hosts_dir(t);
  make_dir(dir);
  std::string text = "# written by webstack up for lab " + t.name + "; removed by down\n";
  text += "127.0.0.1 localhost\n";
  for (const auto& address : t.site_addresses()) text += address + " " + t.site_name + "\n";
  write_secret(dir + "/hosts", text, 0, 0, 0644);
}

void bootstrap(const Topology& t, const StatePaths& p, const SiteOptions& o) {
  const auto& primary = t.primary();
  std::string users = read_text(o.sql_dir + "/users.sql.in");
  replace_all(users, "@APP_PASSWORD@", text::trim(read_text(p.app_password())));
  replace_all(users, "@REPL_PASSWORD@", text::trim(read_text(p.repl_password())));
  replace_all(users, "@PROBE_PASSWORD@", text::trim(read_text(p.probe_password())));
  replace_all(users, "@HOST@", "%");
  // Replication over TLS only (hardened): the repl account may not connect without it.
  if (o.profile == render::Profile::Hardened) users += "\nALTER USER 'repl'@'%' REQUIRE SSL;\n";
  root_sql_secret(p, primary.name, users);
  root_sql_file(p, primary.name, o.sql_dir + "/schema.sql");
  root_sql_file(p, primary.name, o.sql_dir + "/seed.sql");
  for (const auto* r : t.replicas()) {
    root_sql_secret(
        p, r->name,
        "STOP SLAVE; " +
            change_master_sql(
                primary.address, t.db_port, text::trim(read_text(p.repl_password())),
                o.profile == render::Profile::Hardened ? lab_ca_path(p.state) : std::string(),
                "slave_pos") +
            "; START SLAVE;\n");
  }
  const auto pos = root_sql(p, primary.name, "SELECT @@GLOBAL.gtid_binlog_pos");
  const auto rows = root_sql(p, primary.name, "SELECT COUNT(*) FROM webstack.World");
  const double secs = static_cast<double>(o.db_timeout.count()) / 1000.0;
  for (const auto* r : t.replicas()) {
    const auto res =
        root_sql(p, r->name, fmt::format("SELECT MASTER_GTID_WAIT('{}', {:.3f})", pos, secs),
                 o.db_timeout + 10s);
    const auto got = root_sql(p, r->name, "SELECT COUNT(*) FROM webstack.World");
    if (res != "0" || got != rows) {
      std::string st;
      try {
        st = root_sql(p, r->name, "SHOW SLAVE STATUS\\G");
      } catch (const std::exception& e) {
        st = e.what();
      }
      throw std::runtime_error(fmt::format(
          "replica {} did not catch up with the primary (GTID {}, World rows {} of {})\n{}",
          r->name, pos, got, rows, st));
    }
  }
}

// Every replica's replication threads run and it has applied what the primary had when
// asked. On every up, not only after the bootstrap: a lab brought up again must be
// replicating too.
void wait_replicas(const Topology& t, const StatePaths& p, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  const auto pos = root_sql(p, t.primary().name, "SELECT @@GLOBAL.gtid_binlog_pos");
  for (const auto* r : t.replicas()) {
    for (;;) {
      const auto rep = replica_report(p.state, r->name);
      if (rep.error.empty() && rep.io_running && rep.sql_running) break;
      if (Clock::now() > deadline) {
        throw std::runtime_error(fmt::format(
            "replication on {} is not running after {} ms (io={} sql={}): {}", r->name,
            timeout.count(), rep.io_running ? "Yes" : "No", rep.sql_running ? "Yes" : "No",
            rep.error.empty() ? rep.last_error : rep.error));
      }
      std::this_thread::sleep_for(100ms);
    }
    // gtid_current_pos, not MASTER_GTID_WAIT: a former primary's own transactions are in
    // its binlog, never in its gtid_slave_pos, which MASTER_GTID_WAIT waits on.
    for (;;) {
      const auto have = root_sql(p, r->name, "SELECT @@GLOBAL.gtid_current_pos");
      if (gtid_covers(have, pos)) break;
      if (Clock::now() > deadline) {
        throw std::runtime_error(
            fmt::format("replica {} has not applied the primary's GTID {} within {} ms (it has {})",
                        r->name, pos, timeout.count(), have));
      }
      std::this_thread::sleep_for(50ms);  // poll interval
    }
  }
}

// The site answers /readyz through every load balancer, from the client host, and every
// web host has been seen serving through the load balancers.
// (hardened: over HTTPS by the site's name, the chain verified against the lab CA; the
// site's own certificate when the topology gives one, which the system trust store must
// then know.)
// `host_header`: ask for another server name than the site's (a benchmark peer,
// "php.bench"): every web host must answer for it too.
void wait_site(const Topology& t, const SiteOptions& o, std::chrono::milliseconds timeout,
               const std::string& host_header = "") {
  const bool tls = o.profile == render::Profile::Hardened;
  const auto client = t.with_role(Role::Client).front();
  const auto client_ns = host_namespace(t, client->name);
  std::set<std::string> want;
  for (const auto* w : t.with_role(Role::Web)) want.insert(w->name);
  const auto deadline = Clock::now() + timeout;
  // Every balancer by its own address, then the virtual addresses (some balancer holds
  // each: keepalived has elected).
  std::vector<std::string> addresses;
  for (const auto* lb : t.with_role(Role::LoadBalancer)) addresses.push_back(lb->address);
  for (const auto& vip : t.virtual_addresses) addresses.push_back(vip);
  for (const auto& address : addresses) {
    const std::string url = tls ? fmt::format("https://{}:{}/readyz", t.site_name, t.https_port)
                                : fmt::format("http://{}:{}/readyz", address, t.http_port);
    std::vector<std::string> curl = {
        "ip",         "netns", "exec",      client_ns, "curl",
        "-s",         "-o",    "/dev/null", "-w",      "%{http_code} %header{x-served-by}",
        "--max-time", "2"};
    if (tls) {
      curl.insert(curl.end(),
                  {"--resolve", fmt::format("{}:{}:{}", t.site_name, t.https_port, address)});
      if (t.tls_certificate.empty())
        curl.insert(curl.end(), {"--cacert", lab_ca_path(o.state_dir)});
    }
    if (!host_header.empty()) curl.insert(curl.end(), {"-H", "Host: " + host_header});
    curl.push_back(url);
    std::set<std::string> seen;
    std::string last;
    for (;;) {
      const auto r = run(curl, 5s);
      last = text::trim(r.out + " " + r.err);
      if (r.exit_code == 0 && r.out.starts_with("200 ")) {
        seen.insert(text::trim(r.out.substr(4)));
        if (std::includes(seen.begin(), seen.end(), want.begin(), want.end())) break;
        continue;
      }
      if (Clock::now() > deadline) {
        throw std::runtime_error(
            fmt::format("{}{} via {} does not answer 200 from {} after {} ms (last: {})", url,
                        host_header.empty() ? "" : " (Host: " + host_header + ")", address,
                        client->name, timeout.count(), last));
      }
      std::this_thread::sleep_for(250ms);
    }
  }
}

// keepalived has settled: each virtual address is held by exactly its preferred balancer
// (the i-th address by the i-th balancer, as render.cpp gives them priorities). A
// balancer that started late takes its address back only after preempt_delay; until then
// the address could move under the first requests, and with it the round-robin state.
void wait_preferred_holders(const Topology& t, std::chrono::milliseconds timeout) {
  const auto lbs = t.with_role(Role::LoadBalancer);
  const auto deadline = Clock::now() + timeout;
  for (std::size_t i = 0; i < t.virtual_addresses.size(); ++i) {
    const std::string& vip = t.virtual_addresses[i];
    const std::string& want = lbs[i % lbs.size()]->name;
    for (;;) {
      const auto holders = address_holders(t, vip);
      if (holders == std::vector<std::string>{want}) break;
      if (Clock::now() > deadline) {
        std::string who;
        for (const auto& h : holders) who += (who.empty() ? "" : ", ") + h;
        throw std::runtime_error(fmt::format("{} is held by {} after {} ms, not by {} alone", vip,
                                             who.empty() ? "no balancer" : who, timeout.count(),
                                             want));
      }
      std::this_thread::sleep_for(200ms);  // keepalived's advert interval in the lab
    }
  }
}

// The edge's health checks (TCP, every second, up after two) find every load balancer,
// so that 127.0.0.1:<edge_port> answers as soon as `up` returns.
void wait_edge(const StatePaths& p, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  std::string last;
  for (;;) {
    try {
      const auto servers = tools::haproxy_servers(p.run + "/edge/haproxy.sock", "lb");
      last.clear();
      for (const auto& s : servers)
        if (s.status != "UP") last += (last.empty() ? "" : ", ") + s.name + " " + s.status;
      if (last.empty() && !servers.empty()) return;
    } catch (const std::exception& e) {
      last = e.what();
    }
    if (Clock::now() > deadline) {
      throw std::runtime_error(fmt::format(
          "the edge does not see every load balancer up after {} ms: {}", timeout.count(), last));
    }
    std::this_thread::sleep_for(100ms);
  }
}

}  // namespace

std::vector<int> site_processes(const Topology& t, const std::string& state_dir) {
  const auto mine = self_and_ancestors();
  std::set<int> found;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    const auto name = e.path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
    const int pid = std::stoi(name);
    if (mine.count(pid) != 0 || !alive(pid)) continue;
    std::error_code ec2;
    const auto cwd = fs::read_symlink(e.path() / "cwd", ec2).string();
    const auto cmd = cmdline(pid);
    if ((!ec2 && under(cwd, state_dir)) || cmd.find(state_dir + "/") != std::string::npos ||
        cmd.ends_with(state_dir)) {
      found.insert(pid);
    }
  }
  // Whatever runs inside the lab's namespaces.
  std::vector<std::string> nss = {bridge_namespace(t)};
  for (const auto& h : t.hosts) nss.push_back(host_namespace(t, h.name));
  for (const auto& ns : nss) {
    if (!fs::exists("/run/netns/" + ns)) continue;
    const auto r = run({"ip", "netns", "pids", ns}, 5s);
    std::istringstream in(r.out);
    for (int pid; in >> pid;)
      if (mine.count(pid) == 0 && alive(pid)) found.insert(pid);
  }
  return {found.begin(), found.end()};
}

void site_down(const Topology& t, const SiteOptions& o, bool purge) {
  const StatePaths p(o.state_dir);
  // Ask s6 first: every service down, then s6-svscan to end its supervisors and exit.
  bool asked_s6 = false;
  if (const int pid = running_svscan(p); pid > 0) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(p.service, ec)) {
      if (e.path().filename().string().starts_with(".")) continue;
      run({"s6-svc", "-d", e.path().string()}, 1s);
      // The whole lab goes: no load balancer to drain the apps from, so their lame duck
      // is cut short (SIGINT after the SIGTERM).
      if (e.path().filename().string().ends_with("-webstack-app")) {
        run({"s6-svc", "-i", e.path().string()}, 1s);
      }
    }
    run({"s6-svscanctl", "-t", p.service}, 1s);
    asked_s6 = true;
  }
  // Then SIGTERM whatever is left (at once when s6 was not there to ask: a crash), then
  // SIGKILL. Our own child (s6-svscan started by a failed up) is reaped on the way.
  const auto term_at = Clock::now() + (asked_s6 ? 1500ms : 0ms);
  const auto kill_at = Clock::now() + 3500ms;
  const auto give_up = kill_at + 1000ms;
  bool termed = false, killed = false;
  std::vector<int> left;
  for (;;) {
    while (::waitpid(-1, nullptr, WNOHANG) > 0) {
    }
    left = site_processes(t, o.state_dir);
    const auto now = Clock::now();
    if (left.empty() || now > give_up) break;
    if (!killed && now > kill_at) {
      for (int pid : left) ::kill(pid, SIGKILL);
      killed = true;
    } else if (!termed && now >= term_at) {
      for (int pid : left) ::kill(pid, SIGTERM);
      termed = true;
    }
    std::this_thread::sleep_for(50ms);
  }
  network_down(t);
  std::error_code ec;
  if (!t.with_role(Role::Client).empty()) fs::remove_all(client_hosts_dir(t), ec);
  if (purge) {
    // Only a directory `up` made is removed: a mistyped --state-dir must not erase data.
    if (fs::exists(o.state_dir, ec) && !fs::exists(fs::path(o.state_dir) / kStateMarker, ec)) {
      throw std::runtime_error(
          fmt::format("{} is not a webstack state directory (no {}): not removing it", o.state_dir,
                      kStateMarker));
    }
    fs::remove_all(o.state_dir, ec);
    if (ec)
      throw std::runtime_error(fmt::format("cannot remove {}: {}", o.state_dir, ec.message()));
  } else if (fs::exists(p.run, ec)) {
    for (auto it = fs::recursive_directory_iterator(p.run, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      const auto ext = it->path().extension().string();
      if (ext == ".pid" || ext == ".sock" || it->is_socket()) fs::remove(it->path(), ec);
    }
  }
  if (!left.empty()) {
    std::string pids;
    for (int pid : left) pids += fmt::format(" {} ({})", pid, cmdline(pid));
    throw std::runtime_error("processes of the lab still alive after SIGKILL:" + pids);
  }
}

// Everything up needs, checked before anything is created: root, the programs (and the
// Debian package that has each), the service users, the binaries, the lab's profile.
void check_prerequisites(const Topology& t, const SiteOptions& o, const StatePaths& p) {
  if (::geteuid() != 0) throw std::runtime_error("webstack up must run as root");
  struct Needed {
    const char* program;
    const char* package;
  };
  for (const auto& [prog, package] : std::initializer_list<Needed>{
           {"haproxy", "haproxy"},
           {"nginx", "nginx-light"},
           {"mariadbd", "mariadb-server"},
           {"mariadb-install-db", "mariadb-server"},
           {"mariadb", "mariadb-client"},
           {"s6-svscan", "s6"},
           {"s6-svc", "s6"},
           {"s6-svscanctl", "s6"},
           {"s6-svstat", "s6"},
           {"s6-setuidgid", "s6"},
           {"s6-log", "s6"},
           {"ip", "iproute2"},
           {"curl", "curl"},
           {"openssl", "openssl"},
           {"nft", "nftables"},
       }) {
    const bool hardened_only =
        std::string_view(prog) == "openssl" || std::string_view(prog) == "nft";
    if (hardened_only && o.profile != render::Profile::Hardened) continue;
    if (!program_in_path(prog)) {
      throw std::runtime_error(
          fmt::format("{} not found in PATH: install the Debian package {} (scripts/setup.sh "
                      "installs everything)",
                      prog, package));
    }
  }
  for (const char* u : {"mysql", "www-data", "haproxy"}) uid_of(u);
  if (!t.virtual_addresses.empty() && !program_in_path("keepalived")) {
    throw std::runtime_error(
        "keepalived not found in PATH: install the Debian package keepalived (the load "
        "balancers share virtual addresses; scripts/setup.sh installs everything)");
  }
  if (t.monitor() != nullptr) {
    for (const auto& [prog, package] : std::initializer_list<Needed>{
             {"prometheus", "prometheus"},
             {"prometheus-alertmanager", "prometheus-alertmanager"},
             {"prometheus-node-exporter", "prometheus-node-exporter"},
             {"prometheus-nginx-exporter", "prometheus-nginx-exporter"},
             {"prometheus-mysqld-exporter", "prometheus-mysqld-exporter"},
             {"prometheus-blackbox-exporter", "prometheus-blackbox-exporter"},
         }) {
      if (!program_in_path(prog)) {
        throw std::runtime_error(fmt::format(
            "{} not found in PATH: install the Debian package {} (the topology has a monitor "
            "host, {}; scripts/setup.sh installs everything)",
            prog, package, t.monitor()->name));
      }
    }
    uid_of("prometheus");
  }
  // The application servers the web hosts run besides webstack-app.
  std::set<std::string> kinds(o.peers.begin(), o.peers.end());
  for (const auto* w : t.with_role(Role::Web)) kinds.insert(w->app);
  if (kinds.count("php") != 0 && !program_in_path("php-fpm8.2")) {
    throw std::runtime_error(
        "php-fpm8.2 not found in PATH: install the Debian packages php8.2-fpm php8.2-mysql");
  }
  if (kinds.count("node") != 0) {
    if (!program_in_path("node")) {
      throw std::runtime_error("node not found in PATH: install the Debian package nodejs");
    }
    if (!fs::exists(o.peers_dir + "/node/node_modules")) {
      throw std::runtime_error(fmt::format(
          "{}/node/node_modules missing: run `npm ci --omit=dev` there (scripts/setup.sh does)",
          o.peers_dir));
    }
  }
  if (!fs::exists(o.app_binary))
    throw std::runtime_error("webstack-app not found: " + o.app_binary);
  if (failover_on(t, o) && !fs::exists(o.failover_binary))
    throw std::runtime_error("webstack-failover not found: " + o.failover_binary);
  // A lab keeps the profile it was made with (its data, certificates and users follow it).
  if (const auto made = recorded_profile(p.state); made && *made != o.profile) {
    throw std::runtime_error(fmt::format(
        "lab {} was made with profile {} (state {}): `webstack down --purge` first to make it "
        "again with profile {}",
        t.name, render::profile_name(*made), p.state, render::profile_name(o.profile)));
  }
}

// The state tree, owned and moded for the services that use it, and the secrets (made
// once, kept).
void make_state_tree(const Topology& t, const SiteOptions& o, const StatePaths& p) {
  const uid_t mysql_uid = uid_of("mysql");
  const gid_t mysql_gid = gid_of("mysql");
  const gid_t www_gid = gid_of("www-data");
  make_dir(p.state);
  std::ofstream(fs::path(p.state) / kStateMarker) << t.name << "\n";
  std::ofstream(p.profile()) << render::profile_name(o.profile) << "\n";
  {
    std::ofstream peers(p.peers());
    for (const auto& k : o.peers) peers << k << "\n";
  }
  for (const auto& d : {p.run, p.log, p.data}) make_dir(d);
  make_dir(p.secrets, 0, www_gid, 0750);
  make_dir(p.run + "/edge");
  for (const auto& h : t.hosts) {
    const bool db = h.has(Role::Database);
    const uid_t u = db ? mysql_uid : 0;
    const gid_t g = db ? mysql_gid : 0;
    make_dir(p.run + "/" + h.name, u, g);
    make_dir(p.log + "/" + h.name, u, g);
    make_dir(p.data + "/" + h.name, u, g);
    if (db) {
      make_dir(p.run + "/" + h.name + "/mysql-tmp", u, g, 0700);
      make_dir(p.datadir(h.name), u, g, 0750);
    }
    if (h.has(Role::Web)) make_dir(p.run + "/" + h.name + "/nginx-tmp");
  }
  if (!fs::exists(p.app_password()))
    write_secret(p.app_password(), random_token(24), 0, www_gid, 0640);
  set_owner_mode(p.app_password(), 0, www_gid, 0640);
  if (!fs::exists(p.repl_password())) write_secret(p.repl_password(), random_token(24), 0, 0, 0600);
  if (!fs::exists(p.probe_password()))
    write_secret(p.probe_password(), random_token(24), 0, www_gid, 0640);
  set_owner_mode(p.probe_password(), 0, www_gid, 0640);
  if (!fs::exists(p.stats_password()))
    write_secret(p.stats_password(), random_token(24), 0, 0, 0600);
  if (!fs::exists(p.failover_password()))
    write_secret(p.failover_password(), random_token(24), 0, 0, 0600);
}

// Every host's configs rendered into <state>/hosts, and each service's log directory.
std::vector<Service> render_configs(const Topology& t, const SiteOptions& o, const StatePaths& p) {
  std::error_code ec;
  fs::remove_all(p.hosts, ec);
  fs::remove_all(p.service, ec);
  const auto files = render::render_site(t, render_options(o));
  render::write_files(files, p.hosts);
  auto found = services_of(files, p);
  // Each service's s6-log directory (log/<host>/<service>, the edge's log/edge/edge).
  for (const auto& s : found)
    make_dir(p.log + "/" + (s.host.empty() ? "edge" : s.host) + "/" + s.name);
  return found;
}

// mariadb-install-db for each database host whose datadir is empty, in parallel; true
// when any was.
bool install_databases(const Topology& t, const StatePaths& p) {
  bool fresh_db = false;
  std::vector<std::pair<std::string, std::future<ProcessResult>>> jobs;
  for (const auto* h : t.with_role(Role::Database)) {
    if (!dir_empty_or_missing(p.datadir(h->name))) continue;
    fresh_db = true;
    // root@localhost authenticates by the unix socket's peer: only the machine's root
    // (webstack itself) is MariaDB's root, and never over the network.
    std::vector<std::string> args = {"mariadb-install-db",
                                     "--no-defaults",
                                     "--datadir=" + p.datadir(h->name),
                                     "--user=mysql",
                                     "--auth-root-authentication-method=socket",
                                     "--skip-test-db",
                                     "--tmpdir=" + p.run + "/" + h->name + "/mysql-tmp"};
    jobs.emplace_back(h->name, std::async(std::launch::async, [args] { return run(args, 120s); }));
  }
  for (auto& [host, job] : jobs) {
    const auto r = job.get();
    if (r.exit_code != 0) {
      std::error_code ec;
      fs::remove_all(p.datadir(host), ec);  // no half-made datadir for the next up
      throw std::runtime_error(fmt::format("mariadb-install-db for {} failed ({}): {}", host,
                                           r.exit_code, text::trim(r.out + r.err)));
    }
  }
  return fresh_db;
}

// One s6-svscan for the whole lab; the databases start at once, everything else is held
// down until the databases are ready.
void start_supervisor(const StatePaths& p, const std::vector<Service>& services) {
  make_dir(p.service);
  for (const auto& s : services) {
    if (s.name != "mariadb") {
      std::ofstream(s.dir + "/down").flush();
    }
    fs::create_directory_symlink(s.dir, s.link);
  }
  const pid_t pid = start_svscan(p);
  write_secret(p.svscan_pid(), std::to_string(pid) + "\n", 0, 0, 0644);
  // s6-svscan is scanning once its control FIFO exists; a crash shows as a dead pid.
  const auto deadline = Clock::now() + 5s;
  while (!fs::exists(p.service + "/.s6-svscan/control")) {
    if (!alive(pid)) {
      throw std::runtime_error("s6-svscan exited at once: " + tail(p.svscan_log(), 500));
    }
    if (Clock::now() > deadline) {
      throw std::runtime_error("s6-svscan did not start scanning within 5 s: " +
                               tail(p.svscan_log(), 500));
    }
    std::this_thread::sleep_for(10ms);
  }
}

// The apps, Nginx, HAProxy and the edge, in that order, then every other service.
void start_services(const std::vector<Service>& services) {
  for (const char* kind : {"webstack-app", "nginx", "haproxy", "edge"}) {
    for (const auto& s : services) {
      if (s.name != kind) continue;
      svc("-u", s.link);
      fs::remove(s.dir + "/down");
    }
  }
  for (const auto& s : services) {
    if (s.name == "mariadb" || s.name == "webstack-app" || s.name == "nginx" ||
        s.name == "haproxy" || s.name == "edge") {
      continue;
    }
    svc("-u", s.link);
    fs::remove(s.dir + "/down");
  }
}

// A lab half up (a crash, a killed up) is taken down first; the edge's ports must be free.
void make_room(const Topology& t, const SiteOptions& o, int existing, StepPrinter& step) {
  bool partial = existing > 0 || !site_processes(t, o.state_dir).empty();
  for (const auto& st : network_status(t)) partial = partial || st.ns_exists;
  if (partial) step("clean up a partial lab", [&] { site_down(t, o, false); });
  if (!port_free(t.edge_port)) {
    throw std::runtime_error(fmt::format("edge port 127.0.0.1:{} is in use", t.edge_port));
  }
  if (t.monitor() != nullptr) {
    for (const auto& [key, port] : {std::pair{"prometheus_port", t.prometheus_port},
                                    std::pair{"alertmanager_port", t.alertmanager_port}}) {
      if (!port_free(port)) {
        throw std::runtime_error(
            fmt::format("edge port 127.0.0.1:{} (lab.{}) is in use", port, key));
      }
    }
  }
}

// The databases answer, the primary takes writes, the data is there (bootstrapped once)
// and replicated, and the accounts of the exporters and the failover manager exist.
void up_databases(const Topology& t, const SiteOptions& o, const StatePaths& p, bool fresh_db,
                  StepPrinter& step) {
  for (const auto* h : t.with_role(Role::Database)) {
    step("mariadb on " + h->name + " answers", [&] { wait_db(p, h->name, o.db_timeout); });
  }
  if (failover_on(t, o)) {
    // Every node starts read-only (my.cnf): the primary takes writes once `up` (or,
    // later, the failover manager) says so.
    step("primary " + t.primary().name + " writable",
         [&] { root_sql(p, t.primary().name, "SET GLOBAL read_only = OFF"); });
  }
  if (fresh_db || !fs::exists(p.bootstrap_marker())) {
    step("bootstrap: users, schema, seed, replication", [&] {
      bootstrap(t, p, o);
      write_secret(p.bootstrap_marker(), "done\n", 0, 0, 0644);
    });
  }
  if (!t.replicas().empty()) {
    step("replication running and caught up", [&] { wait_replicas(t, p, o.db_timeout); });
  }
  if (t.monitor() != nullptr) {
    // On every up (a lab made before its topology had a monitor host gets it too).
    step("database account of the metrics exporters",
         [&] { root_sql(p, t.primary().name, kExporterAccount); });
  }
  if (failover_on(t, o)) {
    step("database account of the failover manager",
         [&] { root_sql_secret(p, t.primary().name, failover_account_sql(t, p)); });
  }
}

// The site, seen from the client host, from the edge and by Prometheus.
void check_site(const Topology& t, const SiteOptions& o, const StatePaths& p, StepPrinter& step) {
  step("site answers through the load balancer (from client)",
       [&] { wait_site(t, o, o.site_timeout); });
  if (!t.virtual_addresses.empty()) {
    step("each virtual address held by its preferred load balancer",
         [&] { wait_preferred_holders(t, o.site_timeout); });
  }
  for (const auto& peer : o.peers) {
    step("benchmark peer " + peer + ".bench answers on every web host",
         [&] { wait_site(t, o, o.site_timeout, peer + ".bench"); });
  }
  step("edge sees every load balancer up", [&] { wait_edge(p, o.site_timeout); });
  if (t.monitor() != nullptr) {
    step("monitoring: Prometheus scrapes every target, the probe reaches the site",
         [&] { wait_scrape_targets(t, o.site_timeout); });
  }
}

void site_up(const Topology& topology, const SiteOptions& o) {
  // The database roles as they are now (a promotion moves the primary).
  const Topology t = with_current_primary(topology, o.state_dir);
  const StatePaths p(o.state_dir);
  const auto t0 = Clock::now();
  check_prerequisites(t, o, p);  // nothing is created before they pass

  const int existing = running_svscan(p);
  if (existing > 0 && namespaces_present(t)) {
    std::printf("lab %s is already up (s6-svscan pid %d, state %s)\n", t.name.c_str(), existing,
                p.state.c_str());
    const auto files = render::render_site(t, render_options(o));
    print_summary(t, o, services_of(files, p));
    return;
  }
  StepPrinter step(stdout);
  make_room(t, o, existing, step);

  // A closed stdout (`webstack up | head`) must not kill up half way.
  ::signal(SIGPIPE, SIG_IGN);
  std::printf("bringing up lab %s (%s), state %s\n", t.name.c_str(), t.subnet.c_str(),
              p.state.c_str());
  try {
    step("state directory and secrets", [&] { make_state_tree(t, o, p); });

    const auto services =
        step("render configs into " + p.hosts, [&] { return render_configs(t, o, p); });
    if (o.profile == render::Profile::Hardened) {
      step("TLS: lab CA, site and database certificates",
           [&] { ensure_lab_tls(t, p.state, uid_of("mysql"), gid_of("mysql")); });
    }
    step("network namespaces", [&] { network_up(t); });
    if (!t.virtual_addresses.empty()) {
      step("virtual addresses: balancers may bind them, the client resolves the site to them", [&] {
        for (const auto* lb : t.with_role(Role::LoadBalancer)) {
          run_checked(in_host(t, lb->name, {"sysctl", "-q", "-w", "net.ipv4.ip_nonlocal_bind=1"}));
        }
        write_client_hosts(t);
      });
    }
    if (o.profile == render::Profile::Hardened) {
      step("firewalls (nftables, every host)", [&] {
        for (const auto& h : t.hosts) {
          run_checked(
              in_host(t, h.name, {"nft", "-f", p.hosts + "/" + h.name + "/nftables/ruleset.nft"}));
        }
      });
    }

    const bool fresh_db =
        step("mariadb-install-db (empty datadirs)", [&] { return install_databases(t, p); });

    // A new database has no semi-sync fallback behind it: the failover manager's record
    // of one (docs/high-availability.md) belongs to the data directories just replaced.
    if (fresh_db) {
      std::error_code ec;
      fs::remove(p.async_gtid(), ec);
    }

    step("start s6-svscan", [&] { start_supervisor(p, services); });
    up_databases(t, o, p, fresh_db, step);
    step("start apps, nginx, haproxy, edge", [&] { start_services(services); });

    check_site(t, o, p, step);
    std::printf("lab %s up in %.1f s\n", t.name.c_str(), ms_since(t0) / 1000.0);
    print_summary(t, o, services);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "webstack: up failed, tearing down what it started\n");
    try {
      site_down(t, o, false);
    } catch (const std::exception& e2) {
      std::fprintf(stderr, "webstack: teardown: %s\n", e2.what());
    }
    throw;
  }
}

void rerender_database_configs(const Topology& topology, const SiteOptions& o) {
  const Topology t = with_current_primary(topology, o.state_dir);
  auto files = render::render_site(t, render_options(o));
  std::erase_if(files, [](const render::File& f) { return f.path != "mariadb/my.cnf"; });
  render::write_files(files, StatePaths(o.state_dir).hosts);
}

std::vector<std::string> recorded_peers(const std::string& state_dir) {
  std::vector<std::string> out;
  std::istringstream in(read_text_or_empty(StatePaths(state_dir).peers()));
  for (std::string k; std::getline(in, k);)
    if (!text::trim(k).empty()) out.push_back(text::trim(k));
  return out;
}

std::optional<render::Profile> recorded_profile(const std::string& state_dir) {
  const auto text = text::trim(read_text_or_empty(StatePaths(state_dir).profile()));
  if (text.empty()) return std::nullopt;
  return render::parse_profile(text);
}

void exec_in_host(const Topology& t, std::string_view host, const std::vector<std::string>& argv) {
  if (argv.empty()) throw std::invalid_argument("exec: no command");
  const auto full = in_host(t, host, argv);
  std::vector<char*> cargv;
  for (const auto& a : full) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  std::fflush(stdout);
  ::execvp(cargv[0], cargv.data());
  throw std::runtime_error(fmt::format("cannot run {}: {}", full[0], std::strerror(errno)));
}

}  // namespace webstack::lab
