// The database pair: db promote|rejoin|rebuild, and failover pause|resume|status.
#include <cstdio>
#include <memory>

#include "cli/commands.hpp"
#include "lab/control.hpp"
#include "lab/database.hpp"

namespace webstack::cli {

namespace {

struct DatabaseOptions {
  std::string host;
  bool force = false;
  std::string failover_action;
};

}  // namespace

void add_database_commands(CLI::App& cli, Context& ctx, Commands& out) {
  auto o = std::make_shared<DatabaseOptions>();
  auto* db =
      cli.add_subcommand("db", "The database pair: promote a replica, rejoin or rebuild a node");
  db->require_subcommand(1);
  add_lab_options(db, ctx);
  auto* promote = db->add_subcommand(
      "promote", "Make a replica the primary: fence the old one, catch up, switch, report");
  promote->add_option("host", o->host, "The replica to promote (default: the first)");
  promote->add_flag("--force", o->force,
                    "Promote even a replica that lacks writes the old primary (gone) "
                    "acknowledged without semi-sync (they are lost; the command names them)");
  auto* rejoin = db->add_subcommand(
      "rejoin", "Bring a former primary back as a replica of the current primary");
  rejoin->add_option("host", o->host, "HOST")->required();
  auto* rebuild = db->add_subcommand(
      "rebuild",
      "Replace a replica's data with a backup of the primary (a diverged node); the "
      "transactions it held that the primary lacks are saved to <state>/errant/");
  rebuild->add_option("host", o->host, "HOST")->required();
  for (auto* sub : {promote, rejoin, rebuild}) add_lab_options(sub, ctx);

  out.push_back({promote, [&ctx, o](const topo::Topology& t) {
                   const std::string dir = ctx.lab_dir(t);
                   auto opts = ctx.site_options(dir);
                   if (const auto made = lab::recorded_profile(dir)) opts.profile = *made;
                   opts.peers = lab::recorded_peers(dir);
                   lab::promote(t, opts, o->host, o->force, stdout);
                   return 0;
                 }});
  out.push_back({rejoin, [&ctx, o](const topo::Topology& t) {
                   lab::rejoin(t, ctx.lab_dir(t), o->host, stdout);
                   return 0;
                 }});
  out.push_back({rebuild, [&ctx, o](const topo::Topology& t) {
                   lab::rebuild(t, ctx.lab_dir(t), o->host, stdout);
                   return 0;
                 }});

  auto* failover = cli.add_subcommand(
      "failover", "Automatic database failover: pause|resume the manager, or its status");
  failover->add_option("action", o->failover_action, "pause, resume or status")
      ->required()
      ->check(CLI::IsMember({"pause", "resume", "status"}));
  add_lab_options(failover, ctx);
  out.push_back({failover, [&ctx, o](const topo::Topology& t) {
                   lab::failover_control(t, ctx.lab_dir(t), o->failover_action, stdout);
                   return 0;
                 }});
}

}  // namespace webstack::cli
