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
#include "lab/monitoring.hpp"
#include "lab/network.hpp"
#include "lab/paths.hpp"
#include "lab/recorded.hpp"
#include "lab/site_internal.hpp"
#include "lab/status.hpp"
#include "lab/tls.hpp"
#include "render/render.hpp"
#include "tools/mariadb.hpp"

namespace webstack::lab {

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

using topo::Role;
using topo::Topology;

using detail::check_site;
using detail::client_hosts_dir;
using detail::failover_on;
using detail::install_databases;
using detail::kStateMarker;
using detail::read_text;
using detail::running_svscan;
using detail::tail;
using detail::up_databases;
using detail::write_secret;

struct Service {
  std::string host;  // "" for the edge
  std::string name;  // "mariadb", "nginx", "webstack-app", "haproxy", "edge"
  std::string dir;   // the rendered service dir, <state>/hosts/<host>/s6/<name>
  std::string link;  // <state>/service/<host>-<name> (or "edge")
};

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

}  // namespace

std::string detail::read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string detail::tail(const std::string& path, std::size_t bytes) {
  auto s = read_text_or_empty(path);
  if (s.size() > bytes) s = "..." + s.substr(s.size() - bytes);
  return s;
}

// Writes `content` to `path` created with `mode` (never readable by others in between).
void detail::write_secret(const std::string& path, const std::string& content, uid_t uid, gid_t gid,
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

// The lab's s6-svscan per its pid file, or -1.
int detail::running_svscan(const StatePaths& p) {
  return lab_svscan_pid(p.state);
}

// The client host's own hosts file: `ip netns exec` bind-mounts /etc/netns/<ns>/hosts
// over /etc/hosts, so inside the client the site's name resolves to the virtual
// address(es), as the internet's DNS would.
std::string detail::client_hosts_dir(const Topology& t) {
  return "/etc/netns/" + host_namespace(t, t.with_role(Role::Client).front()->name);
}

namespace {

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
  refs.reserve(services.size());
  for (const auto& s : services) refs.push_back({s.host, s.name, s.link});
  print_services(t, refs, stdout);
}

bool namespaces_present(const Topology& t) {
  for (const auto& st : network_status(t))
    if (!st.ns_exists || !st.address_ok) return false;
  return true;
}

void write_client_hosts(const Topology& t) {
  const std::string dir = client_hosts_dir(t);
  make_dir(dir);
  std::string text = "# written by webstack up for lab " + t.name + "; removed by down\n";
  text += "127.0.0.1 localhost\n";
  for (const auto& address : t.site_addresses()) text += address + " " + t.site_name + "\n";
  write_secret(dir + "/hosts", text, 0, 0, 0644);
}

struct Needed {
  const char* program;
  const char* package;
};

// The programs every lab runs (openssl and nft: the hardened profile's only).
void check_programs(const SiteOptions& o) {
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
}

// The monitor host's programs and user.
void check_monitoring_programs(const Topology& t) {
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
void check_peer_programs(const Topology& t, const SiteOptions& o) {
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
}

}  // namespace

// Everything up needs, checked before anything is created: root, the programs (and the
// Debian package that has each), the service users, the binaries, the lab's profile.
void check_prerequisites(const Topology& t, const SiteOptions& o, const StatePaths& p) {
  if (::geteuid() != 0) throw std::runtime_error("webstack up must run as root");
  check_programs(o);
  for (const char* u : {"mysql", "www-data", "haproxy"}) uid_of(u);
  if (!t.virtual_addresses.empty() && !program_in_path("keepalived")) {
    throw std::runtime_error(
        "keepalived not found in PATH: install the Debian package keepalived (the load "
        "balancers share virtual addresses; scripts/setup.sh installs everything)");
  }
  if (t.monitor() != nullptr) check_monitoring_programs(t);
  check_peer_programs(t, o);
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

void exec_in_host(const Topology& t, std::string_view host, const std::vector<std::string>& argv) {
  if (argv.empty()) throw std::invalid_argument("exec: no command");
  const auto full = in_host(t, host, argv);
  std::vector<char*> cargv;
  cargv.reserve(full.size() + 1);
  for (const auto& a : full) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  std::fflush(stdout);
  ::execvp(cargv[0], cargv.data());
  throw std::runtime_error(fmt::format("cannot run {}: {}", full[0], std::strerror(errno)));
}

}  // namespace webstack::lab
