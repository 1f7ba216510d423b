// The templates' mustache contexts: the site's keys (site_context) and each host's
// (host_context).
#include "render/render_context.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace webstack::render {
namespace {

namespace mstch = kainjow::mustache;
using topo::Host;
using topo::Role;
using topo::Topology;

// A TOML basic string: "..." with quotes, backslashes and control characters escaped.
std::string toml_string(const std::string& s) {
  std::string out = "\"";
  for (const char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      out += fmt::format("\\u{:04x}", static_cast<unsigned char>(c));
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string ns_of(const Topology& t, const Host& h) {
  return t.name + "-" + h.name;
}

mstch::data host_item(const Topology& t, const Host& h, bool first) {
  mstch::data d;
  d.set("name", h.name);
  d.set("address", h.address);
  d.set("ns", ns_of(t, h));
  d.set("first", first);
  d.set("ssh_target", h.ssh.empty() ? h.address : h.ssh);  // real servers: where SSH goes
  return d;
}

mstch::data host_list(const Topology& t, const std::vector<const Host*>& hosts) {
  mstch::data list{mstch::data::type::list};
  for (std::size_t i = 0; i < hosts.size(); ++i) {
    mstch::data item = host_item(t, *hosts[i], i == 0);
    item.set("index", std::to_string(i + 1));
    if (hosts[i]->db) {
      item.set("is_primary", hosts[i]->is_primary());
      item.set("is_replica", hosts[i]->is_replica());
    }
    list.push_back(item);
  }
  return list;
}

std::string addresses(const std::vector<const Host*>& hosts) {
  std::string out;
  for (const Host* h : hosts) out += (out.empty() ? "" : ", ") + h->address;
  return out;
}

// The failover manager's state port on the monitor host (its state, and its vote for the
// primary's lease).
constexpr std::uint16_t kFailoverPort = 9096;
// Each database host's fencing agent: its vote and its state.
constexpr std::uint16_t kFailoverAgentPort = 9097;

// The site context (site_context) in parts. Who runs it and how: the target, the
// administrators, the profile, the benchmark peers.
void set_profile(mstch::data& d, const Topology& t, const Options& o) {
  const bool hardened = o.profile == Profile::Hardened;
  const bool real = o.target == Target::Hosts;
  d.set("real_hosts", real);  // for real servers (SSH, systemd, Debian's paths)
  d.set("admin_addresses", fmt::format("{}", fmt::join(t.admin_addresses, ", ")));
  mstch::data admin_list{mstch::data::type::list};
  for (std::size_t i = 0; i < t.admin_addresses.size(); ++i) {
    mstch::data item;
    item.set("address", t.admin_addresses[i]);
    item.set("first", i == 0);
    admin_list.push_back(item);
  }
  d.set("admin_list", admin_list);
  d.set("ssh_user", t.ssh_user);
  d.set("profile", std::string(profile_name(o.profile)));
  d.set("tls", hardened);
  d.set("firewall", hardened);
  d.set("semi_sync", hardened);  // the seed's replication was asynchronous
  d.set("https_port", std::to_string(t.https_port));
  d.set("bench", !o.peers.empty());
  d.set("peers_dir", o.peers_dir);
  d.set("node_port", std::to_string(t.app_port + 2));  // Node.js peer, loopback
  // The peers read from the first replica (the app finds a healthy one itself).
  const auto replicas = t.replicas();
  d.set("peer_replica", replicas.empty()
                            ? std::string()
                            : fmt::format("{}:{}", replicas.front()->address, t.db_port));
  d.set("peer_primary", fmt::format("{}:{}", t.primary().address, t.db_port));
  d.set("https_port_suffix",
        t.https_port == 443 ? std::string() : fmt::format(":{}", t.https_port));
  // The port the edge relays to on the load balancers: TLS untouched when there is TLS.
  d.set("edge_target_port", std::to_string(hardened ? t.https_port : t.http_port));
}

// The hosts of each role, monitoring and the application servers.
void set_roles(mstch::data& d, const Topology& t, const Options& o) {
  d.set("lb_addresses", addresses(t.with_role(Role::LoadBalancer)));
  d.set("web_addresses", addresses(t.with_role(Role::Web)));
  d.set("db_addresses", addresses(t.with_role(Role::Database)));
  // Monitoring: a host with role "monitor" runs Prometheus, Alertmanager and the
  // blackbox prober; every other host of the site (not the client) runs the exporters.
  d.set("lab", o.lab);
  d.set("monitoring", t.monitor() != nullptr);
  d.set("mon_hosts", host_list(t, t.with_role(Role::Monitor)));
  d.set("mon_addresses", addresses(t.with_role(Role::Monitor)));
  std::vector<const Host*> monitored;
  for (const auto& h : t.hosts) {
    if (!h.has(Role::Client)) monitored.push_back(&h);
  }
  d.set("node_hosts", host_list(t, monitored));
  std::vector<const Host*> app_hosts;  // web hosts whose own app is webstack-app
  for (const Host* h : t.with_role(Role::Web)) {
    if (h->app == "webstack") app_hosts.push_back(h);
  }
  d.set("app_hosts", host_list(t, app_hosts));
  d.set("has_app_hosts", !app_hosts.empty());
  d.set("node_addresses", addresses(monitored));
}

// The load balancers' virtual addresses, the client's namespace, where the site is
// reached, HAProxy's and VRRP's timings.
void set_load_balancing(mstch::data& d, const Topology& t, const Options& o) {
  // The load balancers' shared virtual addresses (keepalived), when the site has them.
  const bool vip = !t.virtual_addresses.empty();
  d.set("vip", vip);
  d.set("vip_address", vip ? t.virtual_addresses.front() : std::string());
  d.set("active_active", t.lb_mode == "active-active");
  mstch::data vips{mstch::data::type::list};
  for (std::size_t i = 0; i < t.virtual_addresses.size(); ++i) {
    mstch::data item;
    item.set("name", fmt::format("vip-{}", i + 1));
    item.set("address", t.virtual_addresses[i]);
    vips.push_back(item);
  }
  d.set("vips", vips);
  d.set("client_ns", t.with_role(Role::Client).empty()
                         ? std::string()
                         : ns_of(t, *t.with_role(Role::Client).front()));
  d.set("prefix_length", std::to_string(t.prefix_length()));
  // Where the site is reached: the virtual addresses and every balancer's own address.
  std::vector<std::string> site_addresses = t.virtual_addresses;
  for (const Host* h : t.with_role(Role::LoadBalancer)) site_addresses.push_back(h->address);
  d.set("site_addresses", fmt::format("{}", fmt::join(site_addresses, ", ")));
  d.set("get_timeout", std::string(o.lab ? "3s" : "10s"));  // HAProxy: a GET's wait for an answer
  // HAProxy: a keyed write's wait before it is retried on another web host. Longer than a
  // promotion usually takes (about 5 s in the lab), short enough that a write stuck on a
  // host cut off is not held for `timeout server`; a retry that meets the first run still
  // going (the app waits up to db.keyed_write_wait_ms) waits on its key, never writes twice.
  d.set("keyed_timeout", std::string(o.lab ? "10s" : "20s"));
  d.set("advert_int", std::string(o.lab ? "0.2" : "1"));  // VRRP advertisements, seconds
}

// Ports, names and paths.
void set_ports_and_paths(mstch::data& d, const Topology& t, const Options& o) {
  const bool real = o.target == Target::Hosts;
  d.set("prometheus_port", std::string("9090"));
  d.set("alertmanager_port", std::string("9093"));
  d.set("node_exporter_port", std::string("9100"));
  d.set("nginx_exporter_port", std::string("9113"));
  d.set("mysqld_exporter_port", std::string("9104"));
  d.set("blackbox_port", std::string("9115"));
  d.set("haproxy_metrics_port", std::string("8404"));
  d.set("edge_prometheus_port", std::to_string(t.prometheus_port));
  d.set("edge_alertmanager_port", std::to_string(t.alertmanager_port));
  d.set("lab_name", t.name);
  d.set("ns_prefix", t.name);
  d.set("subnet", t.subnet);
  d.set("site_name", t.site_name);
  d.set("balance", t.balance);
  d.set("http_port", std::to_string(t.http_port));
  d.set("web_port", std::to_string(t.web_port));
  d.set("app_port", std::to_string(t.app_port));
  d.set("db_port", std::to_string(t.db_port));
  d.set("db_rebuild_port", std::to_string(kDbRebuildPort));
  d.set("edge_port", std::to_string(t.edge_port));
  d.set("state_dir", o.state_dir);
  d.set("www_dir", real ? std::string("/var/www/webstack") : o.www_dir);
  d.set("app_binary", real ? std::string(kHostAppBinary) : o.app_binary);
  d.set("templates_dir", o.templates_dir);
}

void set_failover(mstch::data& d, const Topology& t, const Options& o) {
  const bool hardened = o.profile == Profile::Hardened;
  const bool real = o.target == Target::Hosts;
  // Automatic failover (hardened only: it relies on semi-sync): the manager on the monitor
  // host, a fencing agent on each database host. The timings come from these few values;
  // render_test asserts how they must relate (docs/high-availability.md, "Timings").
  const bool failover = hardened && t.automatic_failover();
  const int failover_after_ms = t.failover_after > 0 ? t.failover_after * 1000
                                : o.lab              ? 2000
                                                     : 30000;
  d.set("failover", failover);
  d.set("failover_binary", real ? std::string(kHostFailoverBinary) : o.failover_binary);
  d.set("failover_port", std::to_string(kFailoverPort));
  d.set("failover_agent_port", std::to_string(kFailoverAgentPort));
  d.set("failover_after_ms", std::to_string(failover_after_ms));
  d.set("failover_interval_ms", "250");
  d.set("failover_lease_ms", std::string(o.lab ? "1000" : "1500"));
  d.set("failover_timeout_ms", std::string(o.lab ? "1000" : "2000"));
  d.set("failover_question_timeout_ms", "250");
  // How long commits wait for a replica's acknowledgement before the lease holder's agent
  // turns semi-sync off (below the app's 5 s query timeout: such a write waits, then
  // succeeds).
  d.set("semi_sync_fallback_ms", "3000");
  // A diverged node rebuilt by the manager: in the lab, where `webstack db rebuild` runs.
  const bool rebuild = failover && !real && !o.cli_binary.empty();
  d.set("failover_rebuild", rebuild);
  if (rebuild) {
    std::vector<std::string> argv = {o.cli_binary, "db", "rebuild", "{host}"};
    if (!o.topology_file.empty()) argv.insert(argv.end(), {"-f", o.topology_file});
    argv.insert(argv.end(), {"--state-dir", o.state_dir});
    std::string array;
    for (const auto& a : argv) {
      array += array.empty() ? "[" : ", ";
      array += toml_string(a);
    }
    d.set("failover_rebuild_command", array + "]");
  }
}

// The hosts of each role as lists, and the database nodes.
void set_host_lists(mstch::data& d, const Topology& t) {
  const auto dbs = t.with_role(Role::Database);
  d.set("lb_hosts", host_list(t, t.with_role(Role::LoadBalancer)));
  d.set("web_hosts", host_list(t, t.with_role(Role::Web)));
  d.set("db_hosts", host_list(t, dbs));  // file order; index == server_id

  // The database nodes as the app wants them: the primary first, then the replicas.
  std::vector<const Host*> nodes;
  for (const Host* h : dbs) {
    if (h->is_primary()) nodes.push_back(h);
  }
  for (const Host* h : dbs) {
    if (!h->is_primary()) nodes.push_back(h);
  }
  d.set("db_nodes", host_list(t, nodes));
  const auto primary =
      std::find_if(dbs.begin(), dbs.end(), [](const Host* h) { return h->is_primary(); });
  d.set("primary_name", primary == dbs.end() ? std::string() : (*primary)->name);
  d.set("primary_address", primary == dbs.end() ? std::string() : (*primary)->address);
}
}  // namespace

// The web host runs application server `kind`: its own, or a benchmark peer.
bool runs(const Options& o, const Host& h, std::string_view kind) {
  return h.app == kind || std::find(o.peers.begin(), o.peers.end(), kind) != o.peers.end();
}

// Everything every template may use; the per-host keys are set by host_context().
mstch::data site_context(const Topology& t, const Options& o) {
  mstch::data d;
  set_profile(d, t, o);
  set_roles(d, t, o);
  set_load_balancing(d, t, o);
  set_ports_and_paths(d, t, o);
  set_failover(d, t, o);
  set_host_lists(d, t);
  return d;
}

namespace {

// keepalived on load balancer `h`: one VRRP instance per virtual address. Active-passive:
// the balancers in file order, the first with the highest priority. Active-active: the
// second address prefers the second balancer.
mstch::data vrrp_instances(const Topology& t, const Host& h, const Options& o) {
  const auto lbs = t.with_role(Role::LoadBalancer);
  const auto rank = static_cast<std::size_t>(std::find(lbs.begin(), lbs.end(), &h) - lbs.begin());
  mstch::data list{mstch::data::type::list};
  for (std::size_t i = 0; i < t.virtual_addresses.size(); ++i) {
    const std::size_t preferred = (rank + lbs.size() - i % lbs.size()) % lbs.size();
    mstch::data item;
    item.set("instance", fmt::format("site_{}", i + 1));
    item.set("router_id", std::to_string(51 + i));
    item.set("priority", std::to_string(150 - 10 * static_cast<int>(preferred)));
    item.set("vip", t.virtual_addresses[i]);
    item.set("preempt_delay", std::string(o.lab ? "5" : "60"));
    std::vector<const Host*> peers;
    for (const Host* other : lbs) {
      if (other != &h) peers.push_back(other);
    }
    item.set("peers", host_list(t, peers));
    list.push_back(item);
  }
  return list;
}

// Where the services keep their files: under the lab's state directory, or where the
// Debian packages keep them on a real server (our own files under /etc/webstack).
void set_paths(mstch::data& d, const Host& h, const Options& o) {
  const bool lab = o.target == Target::Lab;
  const std::string run = o.state_dir + "/run/" + h.name;
  const std::string data = o.state_dir + "/data/" + h.name;
  const auto path = [&](const char* key, const std::string& in_lab, const char* on_host) {
    d.set(key, lab ? in_lab : std::string(on_host));
  };
  path("secrets_dir", o.state_dir + "/secrets", "/etc/webstack/secrets");
  path("ca_file", o.state_dir + "/tls/ca.crt", "/etc/webstack/tls/ca.crt");
  path("site_pem", o.state_dir + "/secrets/tls/site.pem", "/etc/webstack/tls/site.pem");
  path("haproxy_pidfile", run + "/haproxy.pid", "/run/haproxy.pid");
  path("haproxy_socket", run + "/haproxy.sock", "/run/haproxy/admin.sock");
  path("nginx_pidfile", run + "/nginx.pid", "/run/nginx.pid");
  path("nginx_temp", run + "/nginx-tmp", "/var/lib/nginx");
  path("mysql_datadir", data + "/mysql", "/var/lib/mysql");
  path("mysql_tmpdir", run + "/mysql-tmp", "/tmp");
  path("mysql_socket", run + "/mysqld.sock", "/run/mysqld/mysqld.sock");
  path("mysql_pidfile", run + "/mysqld.pid", "/run/mysqld/mysqld.pid");
  path("mysql_tls", data + "/tls", "/etc/mysql/tls");
  path("failover_state", o.state_dir, "/var/lib/webstack-failover");
  path("failover_pause_file", o.state_dir + "/failover-paused",
       "/var/lib/webstack-failover/paused");
}
}  // namespace

mstch::data host_context(const mstch::data& site, const Topology& t, const Host& h,
                         const Options& o) {
  mstch::data d = site;
  d.set("host", h.name);
  d.set("address", h.address);
  d.set("interface", h.interface);
  set_paths(d, h, o);
  // A database host's fencing agent's fellow voters: the other database hosts' agents,
  // and the failover manager on the monitor host.
  mstch::data peers{mstch::data::type::list};
  for (const Host* other : t.with_role(Role::Database)) {
    if (other == &h) continue;
    mstch::data item;
    item.set("name", other->name);
    item.set("address", other->address);
    peers.push_back(item);
  }
  d.set("db_peers", peers);
  d.set("monitor_name", t.monitor() != nullptr ? t.monitor()->name : std::string());
  d.set("monitor_address", t.monitor() != nullptr ? t.monitor()->address : std::string());
  d.set("ns", ns_of(t, h));
  d.set("is_lb", h.has(Role::LoadBalancer));
  d.set("is_web", h.has(Role::Web));
  d.set("is_db", h.has(Role::Database));
  d.set("is_client", h.has(Role::Client));
  d.set("is_mon", h.has(Role::Monitor));
  d.set("is_primary", h.is_primary());
  d.set("is_replica", h.is_replica());
  int server_id = 0;
  for (const auto& other : t.hosts) {
    if (other.has(Role::Database)) ++server_id;
    if (&other == &h) break;
  }
  d.set("server_id", h.has(Role::Database) ? std::to_string(server_id) : std::string());
  // The web host's application servers: the one its site traffic goes to, and whether
  // each kind runs here (for the benchmarks' "<kind>.bench" server blocks).
  d.set("default_webstack", h.app == "webstack");
  d.set("default_php", h.app == "php");
  d.set("default_node", h.app == "node");
  d.set("runs_webstack", runs(o, h, "webstack"));
  d.set("runs_php", runs(o, h, "php"));
  d.set("runs_node", runs(o, h, "node"));
  if (h.has(Role::LoadBalancer) && !t.virtual_addresses.empty()) {
    d.set("vrrp_instances", vrrp_instances(t, h, o));
  }
  return d;
}

}  // namespace webstack::render
