// The lab on this machine: up, down, status, exec, link, cert, logs, alerts, and the
// service controls (stop, start, restart, kill, pause, resume, reload).
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <tuple>

#include "cli/commands.hpp"
#include "lab/control.hpp"
#include "lab/monitoring.hpp"
#include "lab/status.hpp"
#include "lab/tls.hpp"
#include "render/render.hpp"

namespace webstack::cli {

namespace {

struct LabOptions {
  bool purge = false;
  bool status_json = false, status_rules = false;
  bool alerts_json = false;
  std::string exec_host;
  std::vector<std::string> exec_argv;
  std::string link_host, link_state;
  std::string service_spec;
  int log_lines = 50;
  bool log_follow = false;
};

// up and down: the peers and profile asked for, else those the lab was made with.
lab::SiteOptions up_down_options(const Context& ctx, const topo::Topology& t) {
  auto opts = ctx.site_options(ctx.lab_dir(t));
  opts.peers = ctx.peers.empty() ? lab::recorded_peers(opts.state_dir) : ctx.checked_peers();
  if (!ctx.profile.empty()) {
    opts.profile = render::parse_profile(ctx.profile);
  } else if (const auto made = lab::recorded_profile(opts.state_dir)) {
    opts.profile = *made;
  }
  return opts;
}

int print_ca(const Context& ctx, const topo::Topology& t) {
  const std::string dir = ctx.lab_dir(t);
  const auto made = lab::recorded_profile(dir);
  const auto ca = lab::lab_ca_path(dir);
  if (made == render::Profile::Seed) {
    throw std::runtime_error(
        fmt::format("lab {} runs the seed profile: plain HTTP, no certificate", t.name));
  }
  if (!std::filesystem::exists(ca)) {
    throw std::runtime_error(
        fmt::format("no certificate authority at {}: `webstack up` makes it", ca));
  }
  if (!t.tls_certificate.empty()) {
    std::fprintf(stderr,
                 "webstack: the site uses the certificate of the topology (%s); the lab CA "
                 "below signs only the databases' certificates\n",
                 t.tls_certificate.c_str());
  }
  std::printf("%s\n", ca.c_str());
  return 0;
}

// Replaces this process with tail (returns only by throwing).
int tail_log(const std::string& path, int lines, bool follow) {
  std::vector<std::string> tail = {"tail", "-n", std::to_string(lines)};
  if (follow) tail.push_back("-F");
  tail.push_back(path);
  std::vector<char*> argv;
  argv.reserve(tail.size() + 1);
  for (auto& a : tail) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::fflush(stdout);
  ::execvp(argv[0], argv.data());
  throw std::runtime_error(fmt::format("cannot run tail: {}", std::strerror(errno)));
}

void add_service_controls(CLI::App& cli, Context& ctx, Commands& out,
                          const std::shared_ptr<LabOptions>& o) {
  for (const auto& [name, action, help] :
       {std::tuple{"stop", lab::ServiceAction::Stop,
                   "Stop a service (s6: SIGTERM, stays down) and wait until it is down"},
        std::tuple{"start", lab::ServiceAction::Start,
                   "Start a stopped service and wait until it is up"},
        std::tuple{"restart", lab::ServiceAction::Restart,
                   "Restart a service (SIGTERM, s6 starts it again)"},
        std::tuple{"kill", lab::ServiceAction::Kill,
                   "SIGKILL a service's process group (a crash); s6 restarts it"},
        std::tuple{"pause", lab::ServiceAction::Pause,
                   "SIGSTOP a service's process group (a hung service)"},
        std::tuple{"resume", lab::ServiceAction::Resume,
                   "SIGCONT a paused service's process group"},
        std::tuple{"reload", lab::ServiceAction::Reload,
                   "Reload a service's config without dropping a connection (haproxy: "
                   "master-worker SIGUSR2; nginx, keepalived, prometheus: SIGHUP)"}}) {
    auto* sub = cli.add_subcommand(name, help);
    add_lab_options(sub, ctx);
    sub->add_option("service", o->service_spec,
                    "HOST/SERVICE: lb-01/haproxy, web-01/nginx, web-01/webstack-app (or "
                    "web-01/app), web-01/mariadb, edge")
        ->required();
    out.push_back(
        {sub, [&ctx, o, action = action](const topo::Topology& t) {
           std::printf(
               "%s\n",
               lab::control_service(t, ctx.lab_dir(t), o->service_spec, action).summary.c_str());
           return 0;
         }});
  }
}

void add_up(CLI::App& cli, Context& ctx, Commands& out) {
  auto* up =
      cli.add_subcommand("up", "Bring the lab up on this machine (root): network, services, data");
  add_lab_options(up, ctx);
  up->add_option("--templates", ctx.templates_dir, "Templates directory (env WEBSTACK_TEMPLATES)");
  up->add_option("--www", ctx.www_dir, "Static files directory (env WEBSTACK_WWW)");
  up->add_option("--app-binary", ctx.app_binary, "webstack-app path (env WEBSTACK_APP)");
  up->add_option("--peers", ctx.peers, kPeersHelp)->delimiter(',');
  up->add_option("--profile", ctx.profile,
                 std::string(kProfileHelp) + "; default: the lab's own when it exists");
  out.push_back({up, [&ctx](const topo::Topology& t) {
                   lab::site_up(t, up_down_options(ctx, t));
                   return 0;
                 }});
}

void add_down(CLI::App& cli, Context& ctx, Commands& out, const std::shared_ptr<LabOptions>& o) {
  auto* down = cli.add_subcommand("down", "Stop every process of the lab and remove its network");
  add_lab_options(down, ctx);
  down->add_flag("--purge", o->purge, "Also remove the state directory (databases, secrets, logs)");
  out.push_back(
      {down, [&ctx, o](const topo::Topology& t) {
         const auto t0 = std::chrono::steady_clock::now();
         lab::site_down(t, up_down_options(ctx, t), o->purge);
         std::printf("lab %s down%s (%.1f s)\n", t.name.c_str(),
                     o->purge ? ", state directory removed" : "",
                     std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
         return 0;
       }});
}

void add_status(CLI::App& cli, Context& ctx, Commands& out, const std::shared_ptr<LabOptions>& o) {
  auto* status = cli.add_subcommand(
      "status", "Show the lab's hosts, services, load balancers and replication (exit 3: down)");
  add_lab_options(status, ctx);
  status->add_flag("--json", o->status_json, "One JSON object instead of the table");
  status->add_flag("--rules", o->status_rules, "Print each host's firewall ruleset in full");
  out.push_back({status, [&ctx, o](const topo::Topology& t) {
                   const auto st = lab::lab_status(t, ctx.lab_dir(t));
                   if (o->status_json) {
                     std::printf("%s\n", lab::to_json(st).c_str());
                   } else {
                     lab::print_status(st, stdout, o->status_rules);
                   }
                   return st.up ? 0 : 3;  // 3: the lab is down (scripts can tell)
                 }});
}

void add_exec(CLI::App& cli, Context& ctx, Commands& out, const std::shared_ptr<LabOptions>& o) {
  auto* exec =
      cli.add_subcommand("exec", "Run a command in a host's namespace: exec HOST -- CMD...");
  exec->add_option("-f,--file", ctx.file, kFileHelp);
  exec->add_option("host", o->exec_host, "Host name")->required();
  exec->add_option("command", o->exec_argv, "Command and its arguments (after --)")->required();
  out.push_back({exec, [o](const topo::Topology& t) {
                   lab::exec_in_host(t, o->exec_host, o->exec_argv);
                   return 0;
                 }});
}

void add_link(CLI::App& cli, Context& ctx, Commands& out, const std::shared_ptr<LabOptions>& o) {
  auto* link = cli.add_subcommand(
      "link", "Set a host's network link down or up (a pulled cable): link HOST down|up");
  add_lab_options(link, ctx, "State directory (default: /var/lib/webstack/<lab>; not needed)");
  link->add_option("host", o->link_host, "HOST")->required();
  link->add_option("state", o->link_state, "down or up")->required();
  out.push_back({link, [o](const topo::Topology& t) {
                   lab::set_link(t, o->link_host, o->link_state, stdout);
                   return 0;
                 }});
}

void add_cert(CLI::App& cli, Context& ctx, Commands& out) {
  auto* cert = cli.add_subcommand(
      "cert", "Print the path of the lab's certificate authority (for a browser to trust)");
  add_lab_options(cert, ctx);
  out.push_back({cert, [&ctx](const topo::Topology& t) { return print_ca(ctx, t); }});
}

void add_alerts(CLI::App& cli, Context& ctx, Commands& out, const std::shared_ptr<LabOptions>& o) {
  auto* alerts = cli.add_subcommand(
      "alerts", "List the alerts firing now, from the monitor host's Alertmanager");
  add_lab_options(alerts, ctx,
                  "State directory (default: /var/lib/webstack/<lab>; not needed: "
                  "Alertmanager is asked over the lab network)");
  alerts->add_flag("--json", o->alerts_json, "A JSON array instead of the table");
  out.push_back({alerts, [o](const topo::Topology& t) {
                   const auto firing = lab::monitoring::firing_alerts(t);
                   if (o->alerts_json) {
                     std::printf("%s\n", lab::monitoring::alerts_json(firing).c_str());
                   } else {
                     lab::monitoring::print_alerts(firing, stdout);
                   }
                   return 0;
                 }});
}

void add_logs(CLI::App& cli, Context& ctx, Commands& out, const std::shared_ptr<LabOptions>& o) {
  auto* logs = cli.add_subcommand("logs", "Print a service's log: logs HOST/SERVICE");
  add_lab_options(logs, ctx);
  logs->add_option("service", o->service_spec, "HOST/SERVICE, as for stop/start")->required();
  logs->add_option("-n,--lines", o->log_lines, "How many of the last lines")->capture_default_str();
  logs->add_flag("--follow", o->log_follow, "Keep printing new lines (tail -F)");
  out.push_back({logs, [&ctx, o](const topo::Topology& t) {
                   if (o->log_lines < 0) throw std::invalid_argument("--lines must be 0 or more");
                   return tail_log(lab::service_log_file(t, ctx.lab_dir(t), o->service_spec),
                                   o->log_lines, o->log_follow);
                 }});
}

}  // namespace

void add_lab_commands(CLI::App& cli, Context& ctx, Commands& out) {
  auto o = std::make_shared<LabOptions>();
  add_up(cli, ctx, out);
  add_down(cli, ctx, out, o);
  add_status(cli, ctx, out, o);
  add_exec(cli, ctx, out, o);
  add_service_controls(cli, ctx, out, o);
  add_link(cli, ctx, out, o);
  add_cert(cli, ctx, out);
  add_alerts(cli, ctx, out, o);
  add_logs(cli, ctx, out, o);
}

}  // namespace webstack::cli
