// webstack-app: the application server. Reads its configuration (defaults, TOML file,
// WEBSTACK_* environment, flags), refuses a bad value before binding anything, then
// serves until SIGTERM/SIGINT and drains gracefully.
#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

#include "core/config.hpp"
#include "core/log.hpp"
#include "db/library.hpp"
#include "http/server.hpp"

extern char** environ;

namespace {

std::string keys_help() {
  std::string out =
      "Configuration keys (TOML [section] key, env WEBSTACK_SECTION_KEY, --set "
      "section.key=value):\n";
  for (const auto& k : webstack::config_keys()) out += "  " + k + "\n";
  return out;
}

}  // namespace

int main(int argc, char** argv) try {
  CLI::App cli{"webstack-app: the webstack application server"};
  cli.footer(keys_help());
  std::string config_path;
  std::vector<std::string> sets;
  bool check_config = false;
  std::optional<unsigned> port, threads;
  cli.add_option("-c,--config", config_path, "TOML configuration file")->envname("WEBSTACK_CONFIG");
  cli.add_option("--set", sets, "Override a key: --set server.port=8081 (repeatable)");
  cli.add_option("-p,--port", port, "Same as --set server.port=N");
  cli.add_option("-t,--threads", threads, "Same as --set server.threads=N (0: one per core)");
  cli.add_flag("--check-config", check_config, "Validate the configuration, print it, and exit");
  cli.set_version_flag("--version", std::string("webstack-app ") + WEBSTACK_VERSION);
  CLI11_PARSE(cli, argc, argv);

  webstack::Config cfg;
  try {
    if (!config_path.empty()) webstack::apply_toml_file(cfg, config_path);
    webstack::apply_environment(cfg, environ);
    if (port) webstack::apply_setting(cfg, "server.port", std::to_string(*port), "--port");
    if (threads)
      webstack::apply_setting(cfg, "server.threads", std::to_string(*threads), "--threads");
    for (const auto& s : sets) {
      auto eq = s.find('=');
      if (eq == std::string::npos || eq == 0) {
        throw webstack::ConfigError(s, "--set", "expected KEY=VALUE");
      }
      webstack::apply_setting(cfg, s.substr(0, eq), s.substr(eq + 1), "--set");
    }
    webstack::validate(cfg);
  } catch (const webstack::ConfigError& e) {
    std::fprintf(stderr, "webstack-app: configuration error: %s\n", e.what());
    return 2;
  }
  webstack::log::Level level{};
  webstack::log::parse_level(cfg.log_level, level);
  webstack::log::set_level(level);

  if (check_config) {
    std::fputs(webstack::to_toml(cfg).c_str(), stdout);
    return 0;
  }

  // Not an error: a single-account setup. The prober warns if that account cannot see
  // replication.
  if (cfg.db.probe_password.empty()) {
    webstack::log::info("db.probe_password not set: the topology probe logs in as db.user",
                        {{"user", cfg.db.user}});
  }
  webstack::db::library_init();
  int rc = 0;
  try {
    webstack::http::Server server(cfg);
    rc = server.run();
  } catch (const std::exception& e) {
    webstack::log::error("startup failed", {{"error", e.what()}});
    rc = 1;
  }
  webstack::db::library_end();
  return rc;
} catch (const std::exception& e) {
  std::fprintf(stderr, "webstack-app: %s\n", e.what());
  return 1;
}
