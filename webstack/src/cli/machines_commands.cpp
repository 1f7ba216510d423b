// machines up|down|ssh: emulated real servers (deploy/machines) for proving a deploy.
#include <chrono>
#include <cstdio>
#include <memory>

#include "cli/commands.hpp"
#include "common/process.hpp"
#include "hosts/machines.hpp"

namespace webstack::cli {

namespace {

struct MachinesCommandOptions {
  std::string state_dir, host;
  std::vector<std::string> argv;
  bool purge = false;
};

}  // namespace

void add_machines_commands(CLI::App& cli, Context& ctx, Commands& out) {
  auto o = std::make_shared<MachinesCommandOptions>();
  auto* machines = cli.add_subcommand(
      "machines",
      "Emulated real servers: every host but the client a Debian 12 machine booting systemd "
      "in its namespace (systemd-nspawn), for proving a deploy; SSH from the client host");
  machines->require_subcommand(1);
  auto* up = machines->add_subcommand("up", "Boot every machine (root)");
  auto* down = machines->add_subcommand("down", "Stop every machine, remove the network");
  down->add_flag("--purge", o->purge, "Also remove the machines' disks and key");
  auto* ssh =
      machines->add_subcommand("ssh", "Run a command on a machine over SSH: ssh HOST -- CMD...");
  ssh->add_option("host", o->host, "Host name")->required();
  ssh->add_option("command", o->argv, "Command and its arguments (after --)")->required();
  for (auto* sub : {up, down, ssh}) {
    sub->add_option("-f,--file", ctx.file, kFileHelp);
    sub->add_option("--state-dir", o->state_dir,
                    "State directory (default: /var/lib/webstack/<lab>-machines)");
  }
  const auto options = [&ctx, o](const topo::Topology& t) {
    hosts::MachinesOptions m;
    m.state_dir =
        o->state_dir.empty() ? "/var/lib/webstack/" + t.name + "-machines" : absolute(o->state_dir);
    m.script = ctx.source_path("WEBSTACK_MACHINES", "deploy/machines/machines.sh");
    m.cache_dir = resource("", "WEBSTACK_MACHINES_CACHE", "/var/cache/webstack-machines");
    return m;
  };
  out.push_back({up, [options](const topo::Topology& t) {
                   hosts::machines_up(t, options(t));
                   return 0;
                 }});
  out.push_back({down, [options, o](const topo::Topology& t) {
                   hosts::machines_down(t, options(t), o->purge);
                   return 0;
                 }});
  out.push_back({ssh, [options, o](const topo::Topology& t) {
                   const auto r = run(hosts::ssh_command(t, options(t), o->host, o->argv),
                                      std::chrono::minutes(10));
                   std::fputs(r.out.c_str(), stdout);
                   std::fputs(r.err.c_str(), stderr);
                   return r.exit_code;
                 }});
}

}  // namespace webstack::cli
