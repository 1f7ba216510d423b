// dashboard (the lab live in a browser) and bench (the stack against its peers).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>

#include "bench/bench.hpp"
#include "cli/commands.hpp"
#include "dashboard/dashboard.hpp"
#include "lab/status.hpp"

namespace webstack::cli {

namespace {

struct BenchCommandOptions {
  bench::Options bench;
  int seconds = 10;
  bool lab = false, no_ceilings = false;
};

}  // namespace

void add_tool_commands(CLI::App& cli, Context& ctx, Commands& out) {
  auto dash = std::make_shared<dashboard::DashboardOptions>();
  auto* dashboard = cli.add_subcommand(
      "dashboard",
      "Serve the lab live in a browser on loopback (topology, traffic, alerts, requests) with "
      "buttons for its faults; prints the URL with its token (env WEBSTACK_DASHBOARD_TOKEN "
      "sets the token)");
  add_lab_options(dashboard, ctx);
  dashboard->add_option("--port", dash->port, "Port (0: any free one)")->capture_default_str();
  dashboard->add_option("--bind", dash->bind, "Loopback address to listen on")
      ->capture_default_str();
  out.push_back({dashboard, [&ctx, dash](const topo::Topology& t) {
                   dash->state_dir = ctx.lab_dir(t);
                   dash->topology_file = ctx.file.empty() ? "" : absolute(ctx.file);
                   dash->cli_path = std::filesystem::read_symlink("/proc/self/exe").string();
                   dash->www_dir = ctx.source_path("WEBSTACK_DASHBOARD", "dashboard");
                   if (const char* token = std::getenv("WEBSTACK_DASHBOARD_TOKEN");
                       token != nullptr) {
                     dash->token = token;
                   }
                   dashboard::run_dashboard(t, *dash);
                   return 0;
                 }});

  auto o = std::make_shared<BenchCommandOptions>();
  auto* bench = cli.add_subcommand(
      "bench", "Benchmark webstack-app against PHP-FPM and Node.js through the whole stack");
  add_lab_options(bench, ctx);
  bench->add_option("--app", o->bench.apps, "Application servers: webstack, php, node (all)")
      ->delimiter(',');
  bench
      ->add_option("--test", o->bench.tests,
                   "Tests: plaintext, json, db, queries, fortunes, updates (all); write, "
                   "write-keyed (guestbook posts without and with an Idempotency-Key) when named")
      ->delimiter(',');
  bench->add_option("--duration", o->seconds, "Seconds per run")->capture_default_str();
  bench->add_option("--connections", o->bench.connections, "wrk connections = sysbench threads")
      ->capture_default_str();
  bench->add_option("--rounds", o->bench.rounds, "Interleaved rounds")->capture_default_str();
  bench->add_option("--out", o->bench.out_dir, "Report directory (default <state>/bench/<time>)");
  bench->add_flag("--no-ceilings", o->no_ceilings,
                  "Skip the ceilings (Nginx return 200, sysbench point-select)");
  bench->add_flag("--lab", o->lab,
                  "Time the lab itself instead: cold up, warm up, down (a throwaway copy)");
  out.push_back({bench, [&ctx, o](const topo::Topology& t) {
                   const std::string dir = ctx.lab_dir(t);
                   auto opts = ctx.site_options(dir);
                   if (const auto made = lab::recorded_profile(dir)) opts.profile = *made;
                   if (o->lab) {
                     bench::run_lab_bench(t, opts, o->bench.rounds, stdout);
                     return 0;
                   }
                   auto b = o->bench;
                   b.duration = std::chrono::seconds(o->seconds);
                   b.ceilings = !o->no_ceilings;
                   if (!b.out_dir.empty()) b.out_dir = absolute(b.out_dir);
                   bench::run_bench(t, opts, b, stdout);
                   return 0;
                 }});
}

}  // namespace webstack::cli
