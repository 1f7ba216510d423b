#include <cstdlib>
#include <filesystem>
#include <stdexcept>

#include "cli/commands.hpp"

namespace webstack::cli {

namespace fs = std::filesystem;

std::string absolute(const std::string& p) {
  return fs::absolute(p).lexically_normal().string();
}

std::string resource(const std::string& option, const char* env, const std::string& built_in) {
  if (!option.empty()) return absolute(option);
  if (const char* v = std::getenv(env); v != nullptr && *v != '\0') return absolute(v);
  return built_in;
}

void add_lab_options(CLI::App* cmd, Context& ctx, const char* state_dir_help) {
  cmd->add_option("-f,--file", ctx.file, kFileHelp);
  cmd->add_option("--state-dir", ctx.state_dir, state_dir_help);
}

topo::Topology Context::topology() const {
  return file.empty() ? topo::default_topology() : topo::load_topology_file(file);
}

std::string Context::lab_dir(const topo::Topology& t) const {
  return state_dir.empty() ? "/var/lib/webstack/" + t.name : absolute(state_dir);
}

std::string Context::source_path(const char* env, const std::string& relative) const {
  return resource("", env, std::string(WEBSTACK_SOURCE_DIR) + "/" + relative);
}

std::string Context::templates() const {
  return resource(templates_dir, "WEBSTACK_TEMPLATES",
                  std::string(WEBSTACK_SOURCE_DIR) + "/templates");
}

std::string Context::www() const {
  return resource(www_dir, "WEBSTACK_WWW", std::string(WEBSTACK_SOURCE_DIR) + "/www");
}

lab::SiteOptions Context::site_options(const std::string& lab_state) const {
  lab::SiteOptions opts;
  opts.templates_dir = templates();
  opts.www_dir = www();
  opts.app_binary = resource(app_binary, "WEBSTACK_APP", WEBSTACK_APP_PATH);
  opts.failover_binary = resource("", "WEBSTACK_FAILOVER", WEBSTACK_FAILOVER_PATH);
  std::error_code ec;
  opts.cli_binary = fs::read_symlink("/proc/self/exe", ec).string();
  opts.topology_file = file.empty() ? "" : absolute(file);
  opts.sql_dir = source_path("WEBSTACK_SQL", "sql");
  opts.peers_dir = source_path("WEBSTACK_PEERS", "bench/peers");
  opts.state_dir = lab_state;
  return opts;
}

std::vector<std::string> Context::checked_peers() const {
  for (const auto& p : peers) {
    if (p != "webstack" && p != "php" && p != "node") {
      throw std::invalid_argument("--peers: unknown application server \"" + p +
                                  "\" (known: webstack, php, node)");
    }
  }
  return peers;
}

}  // namespace webstack::cli
