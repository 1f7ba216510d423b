#include "render/render.hpp"

#include "render/render_context.hpp"

#include <fmt/format.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string_view>
#include <utility>

#include <kainjow/mustache.hpp>

namespace webstack::render {
namespace {

namespace fs = std::filesystem;
namespace mstch = kainjow::mustache;
using topo::Host;
using topo::Role;
using topo::Topology;

struct Template {
  std::string name;     // relative to templates_dir, e.g. "haproxy/haproxy.cfg.mustache"
  std::string path;     // as opened, for messages
  std::string content;  // rendered
};

// Reads, parses and renders templates, each file read and parsed once per render_site.
class Renderer {
 public:
  explicit Renderer(std::string templates_dir) : dir_(std::move(templates_dir)) {}

  // The text of template `name`, unrendered.
  std::string text(const std::string& name) const {
    const std::string path = (fs::path(dir_) / name).string();
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      throw std::runtime_error("template " + path + ": cannot read: " + std::strerror(errno));
    }
    std::ostringstream text;
    text << in.rdbuf();
    if (in.bad()) throw std::runtime_error("template " + path + ": read error");
    return text.str();
  }

  std::string render(const std::string& name, const mstch::data& context) {
    const std::string path = (fs::path(dir_) / name).string();
    auto it = cache_.find(name);
    if (it == cache_.end()) {
      it = cache_.emplace(name, mstch::mustache(text(name))).first;
      if (!it->second.is_valid()) {
        const std::string why = it->second.error_message();
        cache_.erase(it);
        throw std::runtime_error("template " + path + ": " + why);
      }
      // Config files, not HTML: {{var}} is inserted as is.
      it->second.set_custom_escape([](const std::string& s) { return s; });
    }
    std::string out = it->second.render(context);
    if (!it->second.is_valid()) {
      throw std::runtime_error("template " + path + ": " + it->second.error_message());
    }
    return out;
  }

 private:
  std::string dir_;
  std::map<std::string, mstch::mustache> cache_;
};

// One rendered file: its template, where it goes in the lab (relative to the host's
// directory under the state directory) and on a real server (its absolute path without
// the leading '/'); nullptr: not rendered for that target.
struct Output {
  const char* template_name;
  const char* lab_path;
  const char* host_path;
  unsigned mode;
};

// What each role needs, in the order files are listed.
constexpr Output kLbFiles[] = {
    {"haproxy/haproxy.cfg.mustache", "haproxy/haproxy.cfg", "etc/haproxy/haproxy.cfg", 0644},
    {"s6/haproxy/run.mustache", "s6/haproxy/run", nullptr, 0755},
    {"systemd/haproxy.conf.mustache", nullptr, "etc/systemd/system/haproxy.service.d/webstack.conf",
     0644},
};
constexpr Output kKeepalivedFiles[] = {
    {"keepalived/keepalived.conf.mustache", "keepalived/keepalived.conf",
     "etc/keepalived/keepalived.conf", 0644},
    {"s6/keepalived/run.mustache", "s6/keepalived/run", nullptr, 0755},
};
constexpr Output kWebFiles[] = {
    {"nginx/nginx.conf.mustache", "nginx/nginx.conf", "etc/nginx/nginx.conf", 0644},
    {"s6/nginx/run.mustache", "s6/nginx/run", nullptr, 0755},
};
// Each application server a web host runs (its own, and the benchmark peers).
constexpr Output kWebstackAppFiles[] = {
    {"app/webstack-app.toml.mustache", "app/webstack-app.toml", "etc/webstack/webstack-app.toml",
     0644},
    {"s6/webstack-app/run.mustache", "s6/webstack-app/run", nullptr, 0755},
    {"systemd/webstack-app.service.mustache", nullptr, "etc/systemd/system/webstack-app.service",
     0644},
};
constexpr Output kPhpFiles[] = {
    {"php/php-fpm.conf.mustache", "php/php-fpm.conf", nullptr, 0644},
    {"s6/php-fpm/run.mustache", "s6/php-fpm/run", nullptr, 0755},
};
constexpr Output kNodeFiles[] = {
    {"s6/node/run.mustache", "s6/node/run", nullptr, 0755},
};
// On a real server, a drop-in beside Debian's own MariaDB settings (read last).
constexpr Output kDbFiles[] = {
    {"mariadb/my.cnf.mustache", "mariadb/my.cnf", "etc/mysql/mariadb.conf.d/99-webstack.cnf", 0644},
    {"s6/mariadb/run.mustache", "s6/mariadb/run", nullptr, 0755},
};
// Monitoring (only when the site has a monitor host). On a real server the packages'
// units read their flags from /etc/default (ARGS).
constexpr Output kMonitorFiles[] = {
    {"prometheus/prometheus.yml.mustache", "prometheus/prometheus.yml",
     "etc/prometheus/prometheus.yml", 0644},
    {"prometheus/alerts.yml.mustache", "prometheus/alerts.yml", "etc/prometheus/alerts.yml", 0644},
    {"prometheus/blackbox.yml.mustache", "prometheus/blackbox.yml", "etc/prometheus/blackbox.yml",
     0644},
    {"alertmanager/alertmanager.yml.mustache", "alertmanager/alertmanager.yml",
     "etc/prometheus/alertmanager.yml", 0644},
    {"s6/prometheus/run.mustache", "s6/prometheus/run", nullptr, 0755},
    {"s6/alertmanager/run.mustache", "s6/alertmanager/run", nullptr, 0755},
    {"s6/blackbox-exporter/run.mustache", "s6/blackbox-exporter/run", nullptr, 0755},
    {"systemd/default/prometheus.mustache", nullptr, "etc/default/prometheus", 0644},
    {"systemd/default/prometheus-alertmanager.mustache", nullptr,
     "etc/default/prometheus-alertmanager", 0644},
    {"systemd/default/prometheus-blackbox-exporter.mustache", nullptr,
     "etc/default/prometheus-blackbox-exporter", 0644},
};
constexpr Output kNodeExporterFiles[] = {
    {"s6/node-exporter/run.mustache", "s6/node-exporter/run", nullptr, 0755},
    {"systemd/default/prometheus-node-exporter.mustache", nullptr,
     "etc/default/prometheus-node-exporter", 0644},
};
constexpr Output kNginxExporterFiles[] = {
    {"s6/nginx-exporter/run.mustache", "s6/nginx-exporter/run", nullptr, 0755},
    {"systemd/default/prometheus-nginx-exporter.mustache", nullptr,
     "etc/default/prometheus-nginx-exporter", 0644},
};
constexpr Output kMysqldExporterFiles[] = {
    {"s6/mysqld-exporter/run.mustache", "s6/mysqld-exporter/run", nullptr, 0755},
    {"systemd/default/prometheus-mysqld-exporter.mustache", nullptr,
     "etc/default/prometheus-mysqld-exporter", 0644},
};
// Automatic failover: the manager (monitor host), the fencing agent (database hosts).
constexpr Output kFailoverManagerFiles[] = {
    {"failover/manager.toml.mustache", "failover/manager.toml",
     "etc/webstack/failover-manager.toml", 0644},
    {"s6/failover-manager/run.mustache", "s6/failover-manager/run", nullptr, 0755},
    {"systemd/webstack-failover-manager.service.mustache", nullptr,
     "etc/systemd/system/webstack-failover-manager.service", 0644},
};
constexpr Output kFailoverAgentFiles[] = {
    {"failover/agent.toml.mustache", "failover/agent.toml", "etc/webstack/failover-agent.toml",
     0644},
    {"s6/failover-agent/run.mustache", "s6/failover-agent/run", nullptr, 0755},
    {"systemd/webstack-failover-agent.service.mustache", nullptr,
     "etc/systemd/system/webstack-failover-agent.service", 0644},
};
// On a real server, nftables.service loads /etc/nftables.conf at boot.
constexpr Output kFirewallFiles[] = {
    {"nftables/ruleset.nft.mustache", "nftables/ruleset.nft", "etc/nftables.conf", 0644},
};
constexpr Output kEdgeFiles[] = {
    {"edge/haproxy.cfg.mustache", "edge/haproxy.cfg", nullptr, 0644},
    {"s6/edge/run.mustache", "s6/edge/run", nullptr, 0755},
};

// In the lab every service (an s6/<name>/run file) gets a logger: s6/<name>/log/run
// (s6-log into <state>/log/<host>/<name>/, read by `webstack logs`). On a real server
// journald keeps the logs.
template <std::size_t N>
void emit(std::vector<File>& files, Renderer& r, const std::string& host,
          const Output (&outputs)[N], const mstch::data& context, Target target) {
  for (const auto& o : outputs) {
    const char* path_or_null = target == Target::Lab ? o.lab_path : o.host_path;
    if (path_or_null == nullptr) continue;
    const std::string_view path = path_or_null;
    files.push_back(File{host, std::string(path), r.render(o.template_name, context), o.mode});
    if (path.starts_with("s6/") && path.ends_with("/run")) {
      const std::string service(path.substr(3, path.size() - 3 - 4));
      mstch::data log_context = context;
      log_context.set("service", service);
      files.push_back(File{host, "s6/" + service + "/log/run",
                           r.render("s6/log/run.mustache", log_context), 0755});
    }
  }
}

// Real servers: what only the lab can run, and what they need.
void check_hosts_target(const Topology& topology, const Options& options) {
  if (topology.admin_addresses.empty()) {
    throw topo::TopologyError(
        topology.source, 0, "deploy.admin_addresses",
        "missing; real servers need it (their firewalls open SSH to these addresses only), "
        "e.g. [deploy] admin_addresses = [\"192.0.2.10\"]");
  }
  if (!options.peers.empty()) {
    throw std::runtime_error("the benchmark peers (--peers) run in the lab only");
  }
  for (const auto& h : topology.hosts) {
    if (h.has(Role::Web) && h.app != "webstack") {
      throw topo::TopologyError(
          topology.source, h.line, "app",
          fmt::format("host {} runs \"{}\", a benchmark peer, for the lab only; real "
                      "servers run webstack-app",
                      h.name, h.app));
    }
  }
}

// Host `h`'s files, rendered with its `context`.
void emit_host(std::vector<File>& files, Renderer& r, const Topology& topology, const Host& h,
               const mstch::data& context, const Options& options) {
  const Target target = options.target;
  const auto out = [&](const auto& outputs) { emit(files, r, h.name, outputs, context, target); };
  // Roles in a fixed order, whatever their order in the file.
  if (h.has(Role::LoadBalancer)) {
    out(kLbFiles);
    if (!topology.virtual_addresses.empty()) out(kKeepalivedFiles);
  }
  if (h.has(Role::Web)) {
    out(kWebFiles);
    if (runs(options, h, "webstack")) out(kWebstackAppFiles);
    if (runs(options, h, "php")) out(kPhpFiles);
    if (runs(options, h, "node")) out(kNodeFiles);
  }
  if (h.has(Role::Database)) out(kDbFiles);
  if (options.profile == Profile::Hardened && topology.automatic_failover()) {
    if (h.has(Role::Monitor)) out(kFailoverManagerFiles);
    if (h.has(Role::Database)) out(kFailoverAgentFiles);
  }
  if (topology.monitor() != nullptr && !h.has(Role::Client)) {
    if (h.has(Role::Monitor)) out(kMonitorFiles);
    out(kNodeExporterFiles);
    if (h.has(Role::Web)) out(kNginxExporterFiles);
    if (h.has(Role::Database)) out(kMysqldExporterFiles);
  }
  // A client host runs nothing of the site, but gets its firewall like every host.
  if (options.profile == Profile::Hardened) out(kFirewallFiles);
}

[[noreturn]] void fail(const std::string& what, const std::string& path, int err) {
  throw std::runtime_error(what + " " + path + ": " + std::strerror(err));
}

// A relative path that stays inside its directory.
void check_relative(const File& f) {
  const fs::path p(f.path);
  bool ok = !f.path.empty() && p.is_relative();
  for (const auto& part : p) ok = ok && part != ".." && part != ".";
  if (f.host.find('/') != std::string::npos || f.host == ".." || f.host == ".") ok = false;
  if (!ok) {
    throw std::runtime_error("render: refusing to write \"" + f.path + "\" of host \"" + f.host +
                             "\" (not a plain relative path)");
  }
}

void write_one(const fs::path& target, const std::string& content, unsigned mode) {
  std::error_code ec;
  fs::create_directories(target.parent_path(), ec);
  if (ec) {
    throw std::runtime_error("cannot create " + target.parent_path().string() + ": " +
                             ec.message());
  }
  // A temporary file in the same directory, renamed over the target: a reader sees the
  // old file or the new one, never a partial one.
  std::string tmp = target.string() + ".tmp-XXXXXX";
  const int fd = ::mkstemp(tmp.data());
  if (fd < 0) fail("cannot create", tmp, errno);
  const auto give_up = [&](const char* what) {
    const int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    fail(what, tmp, err);
  };
  std::size_t done = 0;
  while (done < content.size()) {
    const ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      give_up("cannot write");
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fchmod(fd, static_cast<mode_t>(mode)) != 0) give_up("cannot chmod");
  if (::fsync(fd) != 0) give_up("cannot sync");
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    fail("cannot write", tmp, err);
  }
  if (::rename(tmp.c_str(), target.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    fail("cannot rename " + tmp + " to", target.string(), err);
  }
}

}  // namespace

std::string_view profile_name(Profile p) {
  return p == Profile::Seed ? "seed" : "hardened";
}

Profile parse_profile(std::string_view name) {
  if (name == "hardened") return Profile::Hardened;
  if (name == "seed") return Profile::Seed;
  throw std::invalid_argument("unknown profile \"" + std::string(name) +
                              "\" (known: hardened, seed)");
}

std::string_view target_name(Target t) {
  return t == Target::Hosts ? "hosts" : "lab";
}

Target parse_target(std::string_view name) {
  if (name == "lab") return Target::Lab;
  if (name == "hosts") return Target::Hosts;
  throw std::invalid_argument("unknown target \"" + std::string(name) + "\" (known: lab, hosts)");
}

std::vector<File> render_site(const topo::Topology& topology, const Options& given) {
  Options options = given;
  const Target target = options.target;
  if (target == Target::Hosts) {
    check_hosts_target(topology, options);
    options.lab = false;  // production intervals
  }
  Renderer r(options.templates_dir);
  mstch::data site = site_context(topology, options);
  // Partials ({{>name}}): command-line flags shared by the lab's s6 run scripts and the
  // real servers' /etc/default files (one line each), and our units' sandbox.
  const auto partial = [&](const std::string& key, const std::string& name) {
    std::string text = r.text(name);
    while (!text.empty() && text.back() == '\n') text.pop_back();
    site.set(key, text);
  };
  for (const char* name : {"node-exporter", "nginx-exporter", "mysqld-exporter", "prometheus",
                           "alertmanager", "blackbox-exporter"}) {
    std::string key = std::string(name) + "_flags";
    std::replace(key.begin(), key.end(), '-', '_');
    partial(key, fmt::format("exporters/{}.flags.mustache", name));
  }
  partial("systemd_sandbox", "systemd/sandbox.mustache");
  std::vector<File> files;
  for (const auto& h : topology.hosts) {
    // The client stands for the internet: no real server of the site.
    if (target == Target::Hosts && h.has(Role::Client)) continue;
    emit_host(files, r, topology, h, host_context(site, topology, h, options), options);
  }
  if (target == Target::Hosts) {
    // Ansible's inventory of these servers, beside their bundles.
    files.push_back(File{"", "inventory.yml", r.render("ansible/inventory.yml.mustache", site)});
  }
  if (target == Target::Lab) {
    mstch::data edge = site;
    edge.set("host", std::string("edge"));
    emit(files, r, "", kEdgeFiles, edge, target);
  }
  return files;
}

void write_files(const std::vector<File>& files, const std::string& out_dir) {
  for (const auto& f : files) check_relative(f);
  for (const auto& f : files) {
    const fs::path dir = f.host.empty() ? fs::path(out_dir) : fs::path(out_dir) / f.host;
    write_one(dir / f.path, f.content, f.mode);
  }
}

}  // namespace webstack::render
