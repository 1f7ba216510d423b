// webstack: the command line. It reads a topology (the embedded default, or -f FILE),
// validates it whole before doing anything, and renders the real config files of every
// host; it brings the lab up and down, shows its status, controls its services and reads
// their logs.
#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "bench/bench.hpp"
#include "dashboard/dashboard.hpp"
#include "hosts/deploy.hpp"
#include "lab/control.hpp"
#include "lab/database.hpp"
#include "lab/deploy.hpp"
#include "lab/machines.hpp"
#include "lab/monitoring.hpp"
#include "lab/process.hpp"
#include "lab/site.hpp"
#include "lab/status.hpp"
#include "lab/tls.hpp"
#include "render/render.hpp"
#include "topology/topology.hpp"

namespace {

namespace fs = std::filesystem;
using webstack::topo::Topology;

Topology load(const std::string& file) {
  return file.empty() ? webstack::topo::default_topology()
                      : webstack::topo::load_topology_file(file);
}

std::string absolute(const std::string& p) {
  return fs::absolute(p).lexically_normal().string();
}

// Where a resource is: an explicit option, else the environment, else where the build
// tree this binary comes from has it.
std::string resource(const std::string& option, const char* env, const std::string& built_in) {
  if (!option.empty()) return absolute(option);
  if (const char* v = std::getenv(env); v != nullptr && *v != '\0') return absolute(v);
  return built_in;
}

std::vector<std::string> checked_peers(const std::vector<std::string>& peers) {
  for (const auto& p : peers) {
    if (p != "webstack" && p != "php" && p != "node") {
      throw std::invalid_argument("--peers: unknown application server \"" + p +
                                  "\" (known: webstack, php, node)");
    }
  }
  return peers;
}

void print_summary(const Topology& t) {
  std::printf("site %s (%s), lab %s on %s, edge 127.0.0.1:%u\n", t.site_name.c_str(),
              t.balance.c_str(), t.name.c_str(), t.subnet.c_str(), t.edge_port);
  for (const auto& h : t.hosts) {
    std::string roles;
    for (auto r : h.roles) {
      if (!roles.empty()) roles += ",";
      roles += webstack::topo::role_name(r);
      if (r == webstack::topo::Role::Database) {
        roles += h.db == webstack::topo::DbRole::Primary ? "(primary)" : "(replica)";
      }
    }
    std::printf("  %-12s %-15s %s\n", h.name.c_str(), h.address.c_str(), roles.c_str());
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{"webstack: the seed's web stack as real hosts, from one topology file"};
  cli.set_version_flag("--version", std::string("webstack ") + WEBSTACK_VERSION);
  cli.require_subcommand(1);
  std::string file;

  auto* init = cli.add_subcommand("init", "Print the default topology (a starting point for -f)");

  auto* validate = cli.add_subcommand("validate", "Check a topology file and print its hosts");
  validate->add_option("-f,--file", file, "Topology file (default: the embedded seed site)");

  std::string out_dir = "rendered", state_dir, templates_dir, www_dir, app_binary;
  auto* render =
      cli.add_subcommand("render", "Write every host's config files for review, starting nothing");
  render->add_option("-f,--file", file, "Topology file (default: the embedded seed site)");
  render->add_option("-o,--out", out_dir, "Output directory (one folder per host)")
      ->capture_default_str();
  render->add_option("--state-dir", state_dir,
                     "State directory the configs refer to (default: /var/lib/webstack/<lab>)");
  render->add_option("--templates", templates_dir, "Templates directory (env WEBSTACK_TEMPLATES)");
  render->add_option("--www", www_dir, "Static files directory (env WEBSTACK_WWW)");
  render->add_option("--app-binary", app_binary, "webstack-app path (env WEBSTACK_APP)");
  std::string profile;
  const char* profile_help =
      "hardened (default: HTTPS, firewalls, replication over TLS) or seed (the seed's design: "
      "plain HTTP, no firewall)";
  render->add_option("--profile", profile, profile_help);
  std::vector<std::string> peers;
  const char* peers_help =
      "Benchmark peers every web host runs beside its app, served as <kind>.bench: webstack, "
      "php, node (comma-separated)";
  render->add_option("--peers", peers, peers_help)->delimiter(',');
  bool production = false;
  render->add_flag("--production", production,
                   "Production intervals (scrapes, rule evaluation, alert delays) instead of "
                   "the lab's short ones");
  std::string target = "lab";
  render
      ->add_option("--target", target,
                   "lab (the lab's layout, for review) or hosts (real servers: one bundle per "
                   "host, files at their paths on the server, systemd units, production "
                   "intervals)")
      ->capture_default_str();

  std::string up_state_dir;
  auto* up =
      cli.add_subcommand("up", "Bring the lab up on this machine (root): network, services, data");
  up->add_option("-f,--file", file, "Topology file (default: the embedded seed site)");
  up->add_option("--state-dir", up_state_dir, "State directory (default: /var/lib/webstack/<lab>)");
  up->add_option("--templates", templates_dir, "Templates directory (env WEBSTACK_TEMPLATES)");
  up->add_option("--www", www_dir, "Static files directory (env WEBSTACK_WWW)");
  up->add_option("--app-binary", app_binary, "webstack-app path (env WEBSTACK_APP)");
  up->add_option("--peers", peers, peers_help)->delimiter(',');
  up->add_option("--profile", profile,
                 std::string(profile_help) + "; default: the lab's own when it exists");

  bool purge = false;
  auto* down = cli.add_subcommand("down", "Stop every process of the lab and remove its network");
  down->add_option("-f,--file", file, "Topology file (default: the embedded seed site)");
  down->add_option("--state-dir", up_state_dir,
                   "State directory (default: /var/lib/webstack/<lab>)");
  down->add_flag("--purge", purge, "Also remove the state directory (databases, secrets, logs)");

  bool status_json = false;
  auto* status = cli.add_subcommand(
      "status", "Show the lab's hosts, services, load balancers and replication (exit 3: down)");
  status->add_option("-f,--file", file, "Topology file (default: the embedded seed site)");
  status->add_option("--state-dir", up_state_dir,
                     "State directory (default: /var/lib/webstack/<lab>)");
  status->add_flag("--json", status_json, "One JSON object instead of the table");
  bool status_rules = false;
  status->add_flag("--rules", status_rules, "Print each host's firewall ruleset in full");

  std::string exec_host;
  std::vector<std::string> exec_argv;
  auto* exec =
      cli.add_subcommand("exec", "Run a command in a host's namespace: exec HOST -- CMD...");
  exec->add_option("-f,--file", file, "Topology file (default: the embedded seed site)");
  exec->add_option("host", exec_host, "Host name")->required();
  exec->add_option("command", exec_argv, "Command and its arguments (after --)")->required();

  // stop|start|restart|kill|pause|resume|reload HOST/SERVICE
  std::string service_spec;
  std::vector<std::pair<CLI::App*, webstack::lab::ServiceAction>> service_commands;
  for (const auto& [name, action, help] :
       {std::tuple{"stop", webstack::lab::ServiceAction::Stop,
                   "Stop a service (s6: SIGTERM, stays down) and wait until it is down"},
        std::tuple{"start", webstack::lab::ServiceAction::Start,
                   "Start a stopped service and wait until it is up"},
        std::tuple{"restart", webstack::lab::ServiceAction::Restart,
                   "Restart a service (SIGTERM, s6 starts it again)"},
        std::tuple{"kill", webstack::lab::ServiceAction::Kill,
                   "SIGKILL a service's process group (a crash); s6 restarts it"},
        std::tuple{"pause", webstack::lab::ServiceAction::Pause,
                   "SIGSTOP a service's process group (a hung service)"},
        std::tuple{"resume", webstack::lab::ServiceAction::Resume,
                   "SIGCONT a paused service's process group"},
        std::tuple{"reload", webstack::lab::ServiceAction::Reload,
                   "Reload a service's config without dropping a connection (haproxy: "
                   "master-worker SIGUSR2; nginx, keepalived, prometheus: SIGHUP)"}}) {
    auto* sub = cli.add_subcommand(name, help);
    sub->add_option("-f,--file", file, "Topology file (default: the embedded seed site)");
    sub->add_option("--state-dir", up_state_dir,
                    "State directory (default: /var/lib/webstack/<lab>)");
    sub->add_option("service", service_spec,
                    "HOST/SERVICE: lb-01/haproxy, web-01/nginx, web-01/webstack-app (or "
                    "web-01/app), web-01/mariadb, edge")
        ->required();
    service_commands.emplace_back(sub, action);
  }

  bool deploy_rolling = true;
  std::string deploy_target = "lab";
  webstack::hosts::DeployOptions hosts_deploy;
  auto* deploy = cli.add_subcommand(
      "deploy",
      "Lab: restart every web host's app with no failed request (one host at a time, drained "
      "on every load balancer, restarted, ready, back in rotation). --target hosts: put the "
      "topology on real servers (render, secrets, deploy/ansible/site.yml over SSH)");
  deploy->add_option("-f,--file", file, "Topology file (default: the embedded seed site)");
  deploy->add_option("--state-dir", up_state_dir,
                     "State directory (default: /var/lib/webstack/<lab>)");
  deploy->add_flag("--rolling", deploy_rolling, "One host at a time (the only way it deploys)");
  deploy->add_option("--target", deploy_target, "lab (the running lab) or hosts (real servers)")
      ->check(CLI::IsMember({"lab", "hosts"}))
      ->capture_default_str();
  std::vector<CLI::Option*> hosts_only = {
      deploy->add_option("--vault", hosts_deploy.vault,
                         "hosts: the secrets (ansible-vault file); made when missing"),
      deploy->add_option("--vault-password-file", hosts_deploy.vault_password_file,
                         "hosts: the vault's password (default: asked when it is encrypted)"),
      deploy->add_option("--ca-dir", hosts_deploy.ca_dir,
                         "hosts: where a new vault's CA is kept (default: <vault>-ca)"),
      deploy->add_option("--bundle", hosts_deploy.bundle_dir,
                         "hosts: keep the rendered bundle here (default: a temporary directory)"),
      deploy->add_flag("--check", hosts_deploy.check,
                       "hosts: show what would change (ansible --check --diff), change nothing"),
      deploy->add_option("ansible_args", hosts_deploy.ansible_args,
                         "hosts: more ansible-playbook arguments, after -- (--limit, "
                         "--private-key, -e webstack_app_restart=true ...)")};

  webstack::dashboard::DashboardOptions dash;
  auto* dashboard = cli.add_subcommand(
      "dashboard",
      "Serve the lab live in a browser on loopback (topology, traffic, alerts, requests) with "
      "buttons for its faults; prints the URL with its token (env WEBSTACK_DASHBOARD_TOKEN "
      "sets the token)");
  dashboard->add_option("-f,--file", file, "Topology file (default: the embedded seed site)");
  dashboard->add_option("--state-dir", up_state_dir,
                        "State directory (default: /var/lib/webstack/<lab>)");
  dashboard->add_option("--port", dash.port, "Port (0: any free one)")->capture_default_str();
  dashboard->add_option("--bind", dash.bind, "Loopback address to listen on")
      ->capture_default_str();

  std::string db_host;
  bool db_force = false;
  auto* db =
      cli.add_subcommand("db", "The database pair: promote a replica, rejoin or rebuild a node");
  db->require_subcommand(1);
  db->add_option("-f,--file", file, "Topology file (default: the embedded seed site)");
  db->add_option("--state-dir", up_state_dir, "State directory (default: /var/lib/webstack/<lab>)");
  auto* db_promote = db->add_subcommand(
      "promote", "Make a replica the primary: fence the old one, catch up, switch, report");
  db_promote->add_option("host", db_host, "The replica to promote (default: the first)");
  db_promote->add_flag("--force", db_force,
                       "Promote even a replica that lacks writes the old primary (gone) "
                       "acknowledged without semi-sync (they are lost; the command names them)");
  auto* db_rejoin = db->add_subcommand(
      "rejoin", "Bring a former primary back as a replica of the current primary");
  db_rejoin->add_option("host", db_host, "HOST")->required();
  auto* db_rebuild = db->add_subcommand(
      "rebuild",
      "Replace a replica's data with a backup of the primary (a diverged node); the "
      "transactions it held that the primary lacks are saved to <state>/errant/");
  db_rebuild->add_option("host", db_host, "HOST")->required();
  for (auto* sub : {db_promote, db_rejoin, db_rebuild}) {
    sub->add_option("-f,--file", file, "Topology file (default: the embedded seed site)");
    sub->add_option("--state-dir", up_state_dir,
                    "State directory (default: /var/lib/webstack/<lab>)");
  }

  // Emulated real servers (deploy/machines): up|down|ssh.
  std::string machines_state_dir, machines_host;
  std::vector<std::string> machines_argv;
  bool machines_purge = false;
  auto* machines = cli.add_subcommand(
      "machines",
      "Emulated real servers: every host but the client a Debian 12 machine booting systemd "
      "in its namespace (systemd-nspawn), for proving a deploy; SSH from the client host");
  machines->require_subcommand(1);
  auto* machines_up = machines->add_subcommand("up", "Boot every machine (root)");
  auto* machines_down = machines->add_subcommand("down", "Stop every machine, remove the network");
  machines_down->add_flag("--purge", machines_purge, "Also remove the machines' disks and key");
  auto* machines_ssh =
      machines->add_subcommand("ssh", "Run a command on a machine over SSH: ssh HOST -- CMD...");
  machines_ssh->add_option("host", machines_host, "Host name")->required();
  machines_ssh->add_option("command", machines_argv, "Command and its arguments (after --)")
      ->required();
  for (auto* sub : {machines_up, machines_down, machines_ssh}) {
    sub->add_option("-f,--file", file, "Topology file (default: the embedded seed site)");
    sub->add_option("--state-dir", machines_state_dir,
                    "State directory (default: /var/lib/webstack/<lab>-machines)");
  }

  std::string failover_action;
  auto* failover = cli.add_subcommand(
      "failover", "Automatic database failover: pause|resume the manager, or its status");
  failover->add_option("action", failover_action, "pause, resume or status")
      ->required()
      ->check(CLI::IsMember({"pause", "resume", "status"}));
  failover->add_option("-f,--file", file, "Topology file (default: the embedded seed site)");
  failover->add_option("--state-dir", up_state_dir,
                       "State directory (default: /var/lib/webstack/<lab>)");

  std::string link_host, link_state;
  auto* link = cli.add_subcommand(
      "link", "Set a host's network link down or up (a pulled cable): link HOST down|up");
  link->add_option("-f,--file", file, "Topology file (default: the embedded seed site)");
  link->add_option("--state-dir", up_state_dir,
                   "State directory (default: /var/lib/webstack/<lab>; not needed)");
  link->add_option("host", link_host, "HOST")->required();
  link->add_option("state", link_state, "down or up")->required();

  auto* cert = cli.add_subcommand(
      "cert", "Print the path of the lab's certificate authority (for a browser to trust)");
  cert->add_option("-f,--file", file, "Topology file (default: the embedded seed site)");
  cert->add_option("--state-dir", up_state_dir,
                   "State directory (default: /var/lib/webstack/<lab>)");

  webstack::bench::Options bench_opts;
  int bench_seconds = 10;
  bool bench_lab = false, bench_no_ceilings = false;
  auto* bench = cli.add_subcommand(
      "bench", "Benchmark webstack-app against PHP-FPM and Node.js through the whole stack");
  bench->add_option("-f,--file", file, "Topology file (default: the embedded seed site)");
  bench->add_option("--state-dir", up_state_dir,
                    "State directory (default: /var/lib/webstack/<lab>)");
  bench->add_option("--app", bench_opts.apps, "Application servers: webstack, php, node (all)")
      ->delimiter(',');
  bench
      ->add_option("--test", bench_opts.tests,
                   "Tests: plaintext, json, db, queries, fortunes, updates (all); write, write-keyed "
                   "(guestbook posts without and with an Idempotency-Key) when named")
      ->delimiter(',');
  bench->add_option("--duration", bench_seconds, "Seconds per run")->capture_default_str();
  bench->add_option("--connections", bench_opts.connections, "wrk connections = sysbench threads")
      ->capture_default_str();
  bench->add_option("--rounds", bench_opts.rounds, "Interleaved rounds")->capture_default_str();
  bench->add_option("--out", bench_opts.out_dir, "Report directory (default <state>/bench/<time>)");
  bench->add_flag("--no-ceilings", bench_no_ceilings,
                  "Skip the ceilings (Nginx return 200, sysbench point-select)");
  bench->add_flag("--lab", bench_lab,
                  "Time the lab itself instead: cold up, warm up, down (a throwaway copy)");

  bool alerts_json = false;
  auto* alerts = cli.add_subcommand(
      "alerts", "List the alerts firing now, from the monitor host's Alertmanager");
  alerts->add_option("-f,--file", file, "Topology file (default: the embedded seed site)");
  alerts->add_option("--state-dir", up_state_dir,
                     "State directory (default: /var/lib/webstack/<lab>; not needed: "
                     "Alertmanager is asked over the lab network)");
  alerts->add_flag("--json", alerts_json, "A JSON array instead of the table");

  int log_lines = 50;
  bool log_follow = false;
  auto* logs = cli.add_subcommand("logs", "Print a service's log: logs HOST/SERVICE");
  logs->add_option("-f,--file", file, "Topology file (default: the embedded seed site)");
  logs->add_option("--state-dir", up_state_dir,
                   "State directory (default: /var/lib/webstack/<lab>)");
  logs->add_option("service", service_spec, "HOST/SERVICE, as for stop/start")->required();
  logs->add_option("-n,--lines", log_lines, "How many of the last lines")->capture_default_str();
  logs->add_flag("--follow", log_follow, "Keep printing new lines (tail -F)");

  CLI11_PARSE(cli, argc, argv);

  try {
    if (init->parsed()) {
      std::fwrite(webstack::topo::default_topology_text().data(), 1,
                  webstack::topo::default_topology_text().size(), stdout);
      return 0;
    }
    const Topology topology = load(file);
    if (validate->parsed()) {
      std::printf("%s: valid\n", topology.source.c_str());
      print_summary(topology);
      return 0;
    }
    if (render->parsed()) {
      webstack::render::Options opts;
      const std::string source = WEBSTACK_SOURCE_DIR;
      opts.templates_dir = resource(templates_dir, "WEBSTACK_TEMPLATES", source + "/templates");
      opts.www_dir = resource(www_dir, "WEBSTACK_WWW", source + "/www");
      opts.app_binary = resource(app_binary, "WEBSTACK_APP", WEBSTACK_APP_PATH);
      opts.failover_binary = resource("", "WEBSTACK_FAILOVER", WEBSTACK_FAILOVER_PATH);
      opts.state_dir =
          state_dir.empty() ? "/var/lib/webstack/" + topology.name : absolute(state_dir);
      if (!profile.empty()) opts.profile = webstack::render::parse_profile(profile);
      opts.peers = checked_peers(peers);
      opts.peers_dir = resource("", "WEBSTACK_PEERS", source + "/bench/peers");
      opts.lab = !production;
      opts.target = webstack::render::parse_target(target);
      const auto files = webstack::render::render_site(topology, opts);
      webstack::render::write_files(files, out_dir);
      std::set<std::string> hosts;
      for (const auto& f : files) {
        if (!f.host.empty()) hosts.insert(f.host);
      }
      std::printf("rendered %zu files for %zu hosts into %s\n", files.size(), hosts.size(),
                  absolute(out_dir).c_str());
      return 0;
    }
    // Where a lab's pieces come from (options, environment, this build's source tree).
    const auto site_options = [&](const std::string& lab_state) {
      webstack::lab::SiteOptions opts;
      const std::string source = WEBSTACK_SOURCE_DIR;
      opts.templates_dir = resource(templates_dir, "WEBSTACK_TEMPLATES", source + "/templates");
      opts.www_dir = resource(www_dir, "WEBSTACK_WWW", source + "/www");
      opts.app_binary = resource(app_binary, "WEBSTACK_APP", WEBSTACK_APP_PATH);
      opts.failover_binary = resource("", "WEBSTACK_FAILOVER", WEBSTACK_FAILOVER_PATH);
      std::error_code ec;
      opts.cli_binary = fs::read_symlink("/proc/self/exe", ec).string();
      opts.topology_file = file.empty() ? "" : absolute(file);
      opts.sql_dir = resource("", "WEBSTACK_SQL", source + "/sql");
      opts.peers_dir = resource("", "WEBSTACK_PEERS", source + "/bench/peers");
      opts.state_dir = lab_state;
      return opts;
    };
    if (up->parsed() || down->parsed()) {
      auto opts = site_options(up_state_dir.empty() ? "/var/lib/webstack/" + topology.name
                                                    : absolute(up_state_dir));
      // The peers asked for, else those the lab was brought up with.
      opts.peers =
          peers.empty() ? webstack::lab::recorded_peers(opts.state_dir) : checked_peers(peers);
      // The profile asked for, else the one the lab was made with, else hardened.
      if (!profile.empty()) {
        opts.profile = webstack::render::parse_profile(profile);
      } else if (const auto made = webstack::lab::recorded_profile(opts.state_dir)) {
        opts.profile = *made;
      }
      if (up->parsed()) {
        webstack::lab::site_up(topology, opts);
      } else {
        const auto t0 = std::chrono::steady_clock::now();
        webstack::lab::site_down(topology, opts, purge);
        std::printf("lab %s down%s (%.1f s)\n", topology.name.c_str(),
                    purge ? ", state directory removed" : "",
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
      return 0;
    }
    if (status->parsed()) {
      const std::string dir =
          up_state_dir.empty() ? "/var/lib/webstack/" + topology.name : absolute(up_state_dir);
      const auto st = webstack::lab::lab_status(topology, dir);
      if (status_json) {
        std::printf("%s\n", webstack::lab::to_json(st).c_str());
      } else {
        webstack::lab::print_status(st, stdout, status_rules);
      }
      return st.up ? 0 : 3;  // 3: the lab is down (scripts can tell)
    }
    if (alerts->parsed()) {
      const auto firing = webstack::lab::monitoring::firing_alerts(topology);
      if (alerts_json) {
        std::printf("%s\n", webstack::lab::monitoring::alerts_json(firing).c_str());
      } else {
        webstack::lab::monitoring::print_alerts(firing, stdout);
      }
      return 0;
    }
    if (link->parsed()) {
      webstack::lab::set_link(topology, link_host, link_state, stdout);
      return 0;
    }
    if (exec->parsed()) webstack::lab::exec_in_host(topology, exec_host, exec_argv);
    const std::string lab_dir =
        up_state_dir.empty() ? "/var/lib/webstack/" + topology.name : absolute(up_state_dir);
    if (db_promote->parsed()) {
      auto opts = site_options(lab_dir);
      if (const auto made = webstack::lab::recorded_profile(lab_dir)) opts.profile = *made;
      opts.peers = webstack::lab::recorded_peers(lab_dir);
      webstack::lab::promote(topology, opts, db_host, db_force, stdout);
      return 0;
    }
    if (machines->parsed()) {
      webstack::lab::MachinesOptions m;
      m.state_dir = machines_state_dir.empty() ? "/var/lib/webstack/" + topology.name + "-machines"
                                               : absolute(machines_state_dir);
      m.script = resource("", "WEBSTACK_MACHINES",
                          std::string(WEBSTACK_SOURCE_DIR) + "/deploy/machines/machines.sh");
      m.cache_dir = resource("", "WEBSTACK_MACHINES_CACHE", "/var/cache/webstack-machines");
      if (machines_up->parsed()) webstack::lab::machines_up(topology, m);
      if (machines_down->parsed()) webstack::lab::machines_down(topology, m, machines_purge);
      if (machines_ssh->parsed()) {
        const auto r = webstack::lab::run(
            webstack::lab::ssh_command(topology, m, machines_host, machines_argv),
            std::chrono::minutes(10));
        std::fputs(r.out.c_str(), stdout);
        std::fputs(r.err.c_str(), stderr);
        return r.exit_code;
      }
      return 0;
    }
    if (dashboard->parsed()) {
      dash.state_dir = lab_dir;
      dash.topology_file = file.empty() ? "" : absolute(file);
      dash.cli_path = fs::read_symlink("/proc/self/exe").string();
      dash.www_dir =
          resource("", "WEBSTACK_DASHBOARD", std::string(WEBSTACK_SOURCE_DIR) + "/dashboard");
      if (const char* token = std::getenv("WEBSTACK_DASHBOARD_TOKEN"); token != nullptr) {
        dash.token = token;
      }
      webstack::dashboard::run_dashboard(topology, dash);
      return 0;
    }
    if (failover->parsed()) {
      webstack::lab::failover_control(topology, lab_dir, failover_action, stdout);
      return 0;
    }
    if (db_rejoin->parsed()) {
      webstack::lab::rejoin(topology, lab_dir, db_host, stdout);
      return 0;
    }
    if (db_rebuild->parsed()) {
      webstack::lab::rebuild(topology, lab_dir, db_host, stdout);
      return 0;
    }
    if (deploy->parsed() && deploy_target == "hosts") {
      if (hosts_deploy.vault.empty()) {
        throw std::invalid_argument(
            "deploy --target hosts: --vault FILE is required (the site's secrets; made when "
            "the file does not exist)");
      }
      const std::string source = WEBSTACK_SOURCE_DIR;
      auto& h = hosts_deploy;
      h.render.templates_dir = resource(templates_dir, "WEBSTACK_TEMPLATES", source + "/templates");
      h.render.www_dir = resource(www_dir, "WEBSTACK_WWW", source + "/www");
      h.ansible_dir = resource("", "WEBSTACK_ANSIBLE", source + "/deploy/ansible");
      h.vault = absolute(h.vault);
      if (h.ca_dir.empty()) h.ca_dir = fs::path(h.vault).replace_extension().string() + "-ca";
      h.ca_dir = absolute(h.ca_dir);
      if (!h.vault_password_file.empty()) h.vault_password_file = absolute(h.vault_password_file);
      if (!h.bundle_dir.empty()) h.bundle_dir = absolute(h.bundle_dir);
      return webstack::hosts::deploy(topology, h);
    }
    if (deploy->parsed()) {
      for (const auto* opt : hosts_only) {
        if (opt->count() > 0) {
          throw std::invalid_argument(fmt::format(
              "deploy: {} is for --target hosts (the lab's deploy is a rolling restart)",
              opt->get_name()));
        }
      }
      webstack::lab::DeployOptions d;
      d.state_dir = lab_dir;
      webstack::lab::rolling_deploy(topology, d, stdout);
      return 0;
    }
    for (const auto& [sub, action] : service_commands) {
      if (!sub->parsed()) continue;
      webstack::lab::control_service(topology, lab_dir, service_spec, action, stdout);
      return 0;
    }
    if (bench->parsed()) {
      auto opts = site_options(lab_dir);
      if (const auto made = webstack::lab::recorded_profile(lab_dir)) opts.profile = *made;
      if (bench_lab) {
        webstack::bench::run_lab_bench(topology, opts, bench_opts.rounds, stdout);
        return 0;
      }
      bench_opts.duration = std::chrono::seconds(bench_seconds);
      bench_opts.ceilings = !bench_no_ceilings;
      if (!bench_opts.out_dir.empty()) bench_opts.out_dir = absolute(bench_opts.out_dir);
      webstack::bench::run_bench(topology, opts, bench_opts, stdout);
      return 0;
    }
    if (cert->parsed()) {
      const auto made = webstack::lab::recorded_profile(lab_dir);
      const auto ca = webstack::lab::lab_ca_path(lab_dir);
      if (made == webstack::render::Profile::Seed) {
        throw std::runtime_error(
            fmt::format("lab {} runs the seed profile: plain HTTP, no certificate", topology.name));
      }
      if (!fs::exists(ca)) {
        throw std::runtime_error(
            fmt::format("no certificate authority at {}: `webstack up` makes it", ca));
      }
      if (!topology.tls_certificate.empty()) {
        std::fprintf(stderr,
                     "webstack: the site uses the certificate of the topology (%s); the lab CA "
                     "below signs only the databases' certificates\n",
                     topology.tls_certificate.c_str());
      }
      std::printf("%s\n", ca.c_str());
      return 0;
    }
    if (logs->parsed()) {
      if (log_lines < 0) throw std::invalid_argument("--lines must be 0 or more");
      const auto path = webstack::lab::service_log_file(topology, lab_dir, service_spec);
      std::vector<std::string> tail = {"tail", "-n", std::to_string(log_lines)};
      if (log_follow) tail.push_back("-F");
      tail.push_back(path);
      std::vector<char*> targv;
      for (auto& a : tail) targv.push_back(a.data());
      targv.push_back(nullptr);
      std::fflush(stdout);
      ::execvp(targv[0], targv.data());
      throw std::runtime_error(fmt::format("cannot run tail: {}", std::strerror(errno)));
    }
  } catch (const webstack::topo::TopologyError& e) {
    std::fprintf(stderr, "webstack: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "webstack: %s\n", e.what());
    return 1;
  }
  return 0;
}
