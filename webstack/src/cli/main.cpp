// webstack: the command line. It reads a topology (the embedded default, or -f FILE),
// validates it whole before doing anything, and renders the real config files of every
// host; it brings the lab up and down, shows its status, controls its services and reads
// their logs. Each command group is in its own file (cli/commands.hpp lists them).
#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>
#include <string>

#include "cli/commands.hpp"

int main(int argc, char** argv) {
  namespace cli = webstack::cli;
  try {
    CLI::App app{"webstack: the seed's web stack as real hosts, from one topology file"};
    app.set_version_flag("--version", std::string("webstack ") + WEBSTACK_VERSION);
    app.require_subcommand(1);
    cli::Context ctx;
    cli::Commands commands;
    cli::add_topology_commands(app, ctx, commands);
    cli::add_lab_commands(app, ctx, commands);
    cli::add_deploy_command(app, ctx, commands);
    cli::add_tool_commands(app, ctx, commands);
    cli::add_database_commands(app, ctx, commands);
    cli::add_machines_commands(app, ctx, commands);

    CLI11_PARSE(app, argc, argv);

    for (const auto& command : commands) {
      if (!command.app->parsed()) continue;
      if (!command.needs_topology) return command.run(webstack::topo::Topology{});
      return command.run(ctx.topology());
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
