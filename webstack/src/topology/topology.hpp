// The site as a topology file describes it: hosts, their roles and addresses, the load
// balancing, the database primary and replicas. The same model becomes network
// namespaces on one machine (`webstack up`) or per-host bundles for real servers.
//
// A file is validated as a whole before anything uses it; the first error found is
// thrown as a TopologyError naming the file, the line and the key.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "common/ipv4.hpp"

namespace webstack::topo {

enum class Role { LoadBalancer, Web, Database, Client, Monitor };
// "lb", "web", "db", "client", "monitor" (as in the file)
std::string_view role_name(Role r);

enum class DbRole { Primary, Replica };

struct Host {
  std::string name;     // [a-z0-9-], starts with a letter, at most 12 characters
  std::string address;  // IPv4 inside the lab subnet
  std::vector<Role> roles;
  std::optional<DbRole> db;  // set exactly when roles has Database
  // A web host's application server behind its Nginx: "webstack" (webstack-app), or a
  // benchmark peer from bench/peers/: "php" (PHP-FPM) or "node" (Node.js).
  std::string app = "webstack";
  // For real servers (`render --target hosts`, `deploy`): where SSH reaches the host
  // ("" means its address), and the network interface that carries its address
  // (keepalived's VRRP runs on it).
  std::string ssh;
  std::string interface = "eth0";
  int line = 0;  // where the host's table starts in its file (0: embedded)

  bool has(Role r) const;
  bool is_primary() const;  // db = "primary"
  bool is_replica() const;  // db = "replica"
};

struct Topology {
  std::string source = "<embedded default>";  // file path, for messages

  // [lab]
  std::string name = "webstack";        // prefix of namespaces and links; [a-z0-9-], <= 8
  std::string subnet = "10.77.0.0/24";  // IPv4 CIDR, prefix length 16..29
  std::uint16_t edge_port = 8080;       // the edge HAProxy on 127.0.0.1
  // The edge's ports for the monitor host's Prometheus and Alertmanager (127.0.0.1).
  std::uint16_t prometheus_port = 9090;
  std::uint16_t alertmanager_port = 9093;

  // [site]
  std::string site_name = "www.foobar.test";
  std::string balance = "roundrobin";  // HAProxy algorithm: roundrobin | leastconn | source
  std::uint16_t http_port = 80;        // load balancer's listening port (HTTP)
  std::uint16_t https_port = 443;      // load balancer's TLS port (not in the seed profile)
  // A certificate (PEM, chain) and its key for the site instead of the lab CA's; both or
  // neither; absolute, or relative to the topology file's directory.
  std::string tls_certificate;
  std::string tls_key;
  std::uint16_t app_port = 8080;  // webstack-app on each web host (loopback)
  std::uint16_t web_port = 80;    // Nginx on each web host
  std::uint16_t db_port = 3306;

  // [lb]: the virtual addresses the load balancers share (keepalived); empty: clients use
  // the one load balancer's own address.
  std::string lb_mode = "active-passive";  // or "active-active" (one address per balancer)
  std::vector<std::string> virtual_addresses;

  // [db]: "automatic": a failover manager on the monitor host promotes a replica when
  // the primary is lost (needs a monitor host and a replica); "manual": `webstack db
  // promote` only. failover_after: seconds without a writable primary before it does
  // (0: the default, 3 in the lab and 30 on real servers).
  std::string failover = "automatic";
  int failover_after = 0;
  bool automatic_failover() const;  // "automatic", with a monitor host and a replica

  // [deploy]: real servers. admin_addresses: who may reach the servers' SSH (IPv4
  // addresses or CIDR blocks; the firewall opens port 22 to them only); ssh_user: the
  // account Ansible logs in as (root, or one with sudo).
  std::vector<std::string> admin_addresses;
  std::string ssh_user = "root";

  std::vector<Host> hosts;  // in file order

  const Host* find(std::string_view host_name) const;
  std::vector<const Host*> with_role(Role r) const;
  const Host& primary() const;                // the one db = "primary"
  std::vector<const Host*> replicas() const;  // db = "replica", in file order
  const Host* monitor() const;                // the host with role "monitor", if any
  // Where clients send the site's traffic: the virtual addresses, else the load
  // balancers' own addresses.
  std::vector<std::string> site_addresses() const;
  std::string gateway() const;  // the subnet's first address (the bridge)
  int prefix_length() const;    // 24 for "10.77.0.0/24"
  // The subnet as numbers; std::logic_error if it is not a CIDR (a parsed topology's is).
  ipv4::Cidr subnet_cidr() const;
};

class TopologyError : public std::runtime_error {
 public:
  // what(): "FILE:LINE: KEY: WHY" (LINE omitted when 0, KEY when empty).
  TopologyError(std::string file, int line, std::string key, const std::string& why);
  const std::string& file() const { return file_; }
  int line() const { return line_; }
  const std::string& key() const { return key_; }

 private:
  std::string file_;
  int line_;
  std::string key_;
};

// ---------------------------------------------------------------------------------------------
// Parsing (parse.cpp; parser.hpp lists the parser's files).

// The seed's site: lb-01 (HAProxy, round robin), web-01 (Nginx + webstack-app + MariaDB
// primary), web-02 (Nginx + webstack-app + MariaDB replica), and a client host.
Topology default_topology();
// The text of the default topology, a valid topology file (`webstack init` prints it):
// src/topology/default.toml, compiled in (cmake/embed_text.cmake).
std::string_view default_topology_text();

Topology load_topology_file(const std::string& path);
// `source` names the text in errors (a path, or "<embedded default>").
Topology parse_topology(std::string_view text, const std::string& source);

}  // namespace webstack::topo
