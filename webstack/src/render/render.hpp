// Renders every real config file of a site from templates/ (one mustache template per
// config file): per host, what its roles need. The lab (`webstack up`) writes them into
// its state directory; `webstack render` writes them for review or for real servers.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "topology/topology.hpp"

namespace webstack::render {

// What the site is made of besides the topology. Hardened (the default) closes the
// seed's own faults: HTTPS at the load balancers (HTTP redirects), an nftables firewall
// on every host, replication over TLS. Seed reproduces the seed's design as it was:
// plain HTTP and no firewall, for study.
enum class Profile { Hardened, Seed };
std::string_view profile_name(Profile p);  // "hardened", "seed"
// Throws std::invalid_argument naming the known profiles.
Profile parse_profile(std::string_view name);

// Where the files go. Lab: the lab's state directory (s6 run scripts, paths under the
// state directory, network namespaces). Hosts: real servers, one bundle per host with
// every file at its path on the server (/etc/haproxy/haproxy.cfg ...), systemd units for
// our own services, the packaged services' own units kept; production intervals.
enum class Target { Lab, Hosts };
std::string_view target_name(Target t);  // "lab", "hosts"
// Throws std::invalid_argument naming the known targets.
Target parse_target(std::string_view name);

// Where our binaries live on a real server (the deploy installs them there).
inline constexpr std::string_view kHostAppBinary = "/usr/local/bin/webstack-app";
inline constexpr std::string_view kHostFailoverBinary = "/usr/local/bin/webstack-failover";
// `webstack db rebuild` (the lab's): the primary streams a mariadb-backup of itself over
// TLS to this port of the node being rebuilt (database hosts to each other only, in the
// lab's firewall; real servers have no rebuild yet, and no such rule).
inline constexpr std::uint16_t kDbRebuildPort = 4444;

struct Options {
  Target target = Target::Lab;
  Profile profile = Profile::Hardened;
  // Application servers every web host runs beside its own (topology `app`), each served
  // by Nginx under the name "<kind>.bench" (and "nginx.bench": `return 200`, the HTTP
  // ceiling): what `webstack bench` compares. Kinds: "webstack", "php", "node".
  std::vector<std::string> peers;
  std::string peers_dir;  // absolute path of bench/peers (php/index.php, node/server.js)
  // Short health-check, scrape and alert intervals for the lab (each alert fires within
  // 30 s of its cause); false: the production intervals, for real servers.
  bool lab = true;
  std::string templates_dir;    // the repository's templates/
  std::string state_dir;        // absolute; where the lab keeps data, sockets, logs, pids
  std::string app_binary;       // absolute path of webstack-app
  std::string failover_binary;  // absolute path of webstack-failover
  std::string www_dir;          // absolute path of the static files Nginx serves
  // The lab's `webstack` and the topology file it was brought up with ("": the built-in
  // one): the failover manager runs `webstack db rebuild` with them. Empty cli_binary: no
  // automatic rebuild.
  std::string cli_binary, topology_file;
};

struct File {
  std::string host;  // "lb-01"; "" for files of the lab itself (e.g. the edge)
  // Relative to the host's directory: "haproxy/haproxy.cfg" in the lab; for real hosts
  // the path on the server without its leading '/', "etc/haproxy/haproxy.cfg".
  std::string path;
  std::string content;
  unsigned mode = 0644;  // 0755 for s6 run scripts
};

// Every file of every host, in a stable order. Throws std::runtime_error naming the
// template on a missing template or a mustache error; for Target::Hosts, also when the
// topology lacks what real servers need (deploy.admin_addresses) or asks for what only
// the lab has (benchmark peers).
std::vector<File> render_site(const topo::Topology& topology, const Options& options);

// Writes `files` under `out_dir` as out_dir/<host>/<path> (out_dir/<path> for host "").
// Creates directories; replaces existing files atomically (write + rename).
void write_files(const std::vector<File>& files, const std::string& out_dir);

}  // namespace webstack::render
