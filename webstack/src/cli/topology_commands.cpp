// init, validate, render: the topology alone, nothing started.
#include <cstdio>
#include <memory>
#include <set>

#include "cli/commands.hpp"
#include "render/render.hpp"

namespace webstack::cli {

namespace {

void print_summary(const topo::Topology& t) {
  std::printf("site %s (%s), lab %s on %s, edge 127.0.0.1:%u\n", t.site_name.c_str(),
              t.balance.c_str(), t.name.c_str(), t.subnet.c_str(), t.edge_port);
  for (const auto& h : t.hosts) {
    std::string roles;
    for (auto r : h.roles) {
      if (!roles.empty()) roles += ",";
      roles += topo::role_name(r);
      if (r == topo::Role::Database) {
        roles += h.db == topo::DbRole::Primary ? "(primary)" : "(replica)";
      }
    }
    std::printf("  %-12s %-15s %s\n", h.name.c_str(), h.address.c_str(), roles.c_str());
  }
}

struct RenderOptions {
  std::string out_dir = "rendered";
  bool production = false;
  std::string target = "lab";
};

}  // namespace

void add_topology_commands(CLI::App& cli, Context& ctx, Commands& out) {
  auto* init = cli.add_subcommand("init", "Print the default topology (a starting point for -f)");
  out.push_back({init,
                 [](const topo::Topology&) {
                   const auto text = topo::default_topology_text();
                   std::fwrite(text.data(), 1, text.size(), stdout);
                   return 0;
                 },
                 false});

  auto* validate = cli.add_subcommand("validate", "Check a topology file and print its hosts");
  validate->add_option("-f,--file", ctx.file, kFileHelp);
  out.push_back({validate, [](const topo::Topology& t) {
                   std::printf("%s: valid\n", t.source.c_str());
                   print_summary(t);
                   return 0;
                 }});

  auto o = std::make_shared<RenderOptions>();
  auto* render =
      cli.add_subcommand("render", "Write every host's config files for review, starting nothing");
  render->add_option("-f,--file", ctx.file, kFileHelp);
  render->add_option("-o,--out", o->out_dir, "Output directory (one folder per host)")
      ->capture_default_str();
  render->add_option("--state-dir", ctx.state_dir,
                     "State directory the configs refer to (default: /var/lib/webstack/<lab>)");
  render->add_option("--templates", ctx.templates_dir,
                     "Templates directory (env WEBSTACK_TEMPLATES)");
  render->add_option("--www", ctx.www_dir, "Static files directory (env WEBSTACK_WWW)");
  render->add_option("--app-binary", ctx.app_binary, "webstack-app path (env WEBSTACK_APP)");
  render->add_option("--profile", ctx.profile, kProfileHelp);
  render->add_option("--peers", ctx.peers, kPeersHelp)->delimiter(',');
  render->add_flag("--production", o->production,
                   "Production intervals (scrapes, rule evaluation, alert delays) instead of "
                   "the lab's short ones");
  render
      ->add_option("--target", o->target,
                   "lab (the lab's layout, for review) or hosts (real servers: one bundle per "
                   "host, files at their paths on the server, systemd units, production "
                   "intervals)")
      ->capture_default_str();
  out.push_back({render, [&ctx, o](const topo::Topology& t) {
                   render::Options opts;
                   opts.templates_dir = ctx.templates();
                   opts.www_dir = ctx.www();
                   opts.app_binary = resource(ctx.app_binary, "WEBSTACK_APP", WEBSTACK_APP_PATH);
                   opts.failover_binary = resource("", "WEBSTACK_FAILOVER", WEBSTACK_FAILOVER_PATH);
                   opts.state_dir = ctx.lab_dir(t);
                   if (!ctx.profile.empty()) opts.profile = render::parse_profile(ctx.profile);
                   opts.peers = ctx.checked_peers();
                   opts.peers_dir = ctx.source_path("WEBSTACK_PEERS", "bench/peers");
                   opts.lab = !o->production;
                   opts.target = render::parse_target(o->target);
                   const auto files = render::render_site(t, opts);
                   render::write_files(files, o->out_dir);
                   std::set<std::string> hosts;
                   for (const auto& f : files) {
                     if (!f.host.empty()) hosts.insert(f.host);
                   }
                   std::printf("rendered %zu files for %zu hosts into %s\n", files.size(),
                               hosts.size(), absolute(o->out_dir).c_str());
                   return 0;
                 }});
}

}  // namespace webstack::cli
