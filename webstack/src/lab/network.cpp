#include "lab/network.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "common/ipv4.hpp"
#include "common/process.hpp"

namespace webstack::lab {

namespace {

using Argv = std::vector<std::string>;

// ---------------------------------------------------------------------------------------------
// Parsing `ip` output.

std::vector<std::string> split_ws(std::string_view s) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\\')) {
      ++i;
    }
    const std::size_t start = i;
    while (i < s.size() && s[i] != ' ' && s[i] != '\t' && s[i] != '\\') {
      ++i;
    }
    if (i > start) {
      out.emplace_back(s.substr(start, i - start));
    }
  }
  return out;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) {
      out.push_back(line);
    }
  }
  return out;
}

struct Link {
  int index = 0;
  std::string name;  // without "@peer"
  int peer = -1;     // "@ifN": the peer's index in another namespace
  std::vector<std::string> flags;
  std::string master;

  bool has_flag(std::string_view f) const {
    return std::find(flags.begin(), flags.end(), f) != flags.end();
  }
};

// `ip -o link show` lines: "6: eth0@if5: <BROADCAST,UP,LOWER_UP> mtu 1500 ... master br0 ...".
// Interface names cannot contain ':' or whitespace.
std::vector<Link> parse_links(const std::string& text) {
  std::vector<Link> links;
  for (const auto& line : lines_of(text)) {
    const auto c1 = line.find(':');
    if (c1 == std::string::npos) {
      continue;
    }
    const auto c2 = line.find(':', c1 + 1);
    if (c2 == std::string::npos) {
      continue;
    }
    Link l;
    try {
      l.index = std::stoi(line.substr(0, c1));
    } catch (const std::exception&) {
      continue;
    }
    std::string name = line.substr(c1 + 1, c2 - c1 - 1);
    name.erase(0, name.find_first_not_of(' '));
    if (const auto at = name.find('@'); at != std::string::npos) {
      const std::string peer = name.substr(at + 1);
      name.resize(at);
      if (peer.rfind("if", 0) == 0) {
        try {
          l.peer = std::stoi(peer.substr(2));
        } catch (const std::exception&) {
        }
      }
    }
    l.name = name;
    const auto rest = split_ws(std::string_view(line).substr(c2 + 1));
    for (std::size_t i = 0; i < rest.size(); ++i) {
      const auto& tok = rest[i];
      if (i == 0 && tok.size() >= 2 && tok.front() == '<' && tok.back() == '>') {
        std::string f = tok.substr(1, tok.size() - 2);
        std::size_t p = 0;
        while (p <= f.size()) {
          const auto comma = f.find(',', p);
          const auto end = comma == std::string::npos ? f.size() : comma;
          if (end > p) {
            l.flags.push_back(f.substr(p, end - p));
          }
          p = end + 1;
        }
      } else if (tok == "master" && i + 1 < rest.size()) {
        l.master = rest[i + 1];
      }
    }
    links.push_back(std::move(l));
  }
  return links;
}

const Link* find_link(const std::vector<Link>& links, std::string_view name) {
  for (const auto& l : links) {
    if (l.name == name) {
      return &l;
    }
  }
  return nullptr;
}

struct Addr {
  std::string dev;
  std::string cidr;  // "10.77.0.11/24"
};

// `ip -o -4 addr show` lines: "2: eth0    inet 10.77.0.11/24 brd ... scope global eth0\ ...".
std::vector<Addr> parse_addrs(const std::string& text) {
  std::vector<Addr> out;
  for (const auto& line : lines_of(text)) {
    const auto tok = split_ws(line);
    if (tok.size() >= 4 && tok[2] == "inet") {
      std::string dev = tok[1];
      if (const auto at = dev.find('@'); at != std::string::npos) {
        dev.resize(at);
      }
      out.push_back({dev, tok[3]});
    }
  }
  return out;
}

bool has_addr(const std::vector<Addr>& addrs, std::string_view dev, std::string_view cidr) {
  return std::any_of(addrs.begin(), addrs.end(),
                     [&](const Addr& a) { return a.dev == dev && a.cidr == cidr; });
}

std::set<std::string> list_namespaces() {
  std::set<std::string> out;
  for (const auto& line : lines_of(run_checked({"ip", "netns", "list"}))) {
    const auto tok = split_ws(line);
    if (!tok.empty()) {
      out.insert(tok[0]);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// IPv4.

// "a.b.c.d/n" or "a.b.c.d" (a /32), as `ip` prints them.
std::optional<ipv4::Cidr> parse_net(std::string_view s) {
  if (s.find('/') == std::string_view::npos) {
    const auto a = ipv4::parse_address(s);
    return a ? std::optional(ipv4::Cidr{*a, 32}) : std::nullopt;
  }
  return ipv4::parse_cidr(s);
}

// A network (or address) inside the lab subnet: as specific as the subnet or more.
bool inside(const ipv4::Cidr& lab, const ipv4::Cidr& n) {
  return n.prefix >= lab.prefix && lab.contains(n.network);
}

ipv4::Cidr lab_net(const topo::Topology& t) {
  const auto n = ipv4::parse_cidr(t.subnet);
  if (!n) throw std::invalid_argument("lab subnet is not an IPv4 CIDR: " + t.subnet);
  return ipv4::Cidr{n->network & n->mask(), n->prefix};
}

// ---------------------------------------------------------------------------------------------
// Commands.

Argv ip_in(const std::string& ns, std::initializer_list<std::string> args) {
  Argv a{"ip", "-n", ns};
  a.insert(a.end(), args);
  return a;
}

void ignore(const Argv& argv) {
  (void)run(argv);
}

std::string host_cidr(const topo::Topology& t, const topo::Host& h) {
  return h.address + "/" + std::to_string(t.prefix_length());
}

std::string gateway_cidr(const topo::Topology& t) {
  return t.gateway() + "/" + std::to_string(t.prefix_length());
}

void validate(const topo::Topology& t) {
  if (t.find("net") != nullptr) {
    throw std::invalid_argument(
        "a host named \"net\" would share its namespace name with the lab's bridge namespace " +
        bridge_namespace(t));
  }
  if (t.hosts.size() > 0xfff) {
    throw std::invalid_argument("too many hosts for the lab network (at most 4095)");
  }
  (void)lab_net(t);
}

// Deletes every veth in the ROOT namespace named with this lab's temporary prefix (what a
// crashed up leaves). Only veths: another kind of interface with such a name is not ours.
void remove_stray_temps(const topo::Topology& t, std::vector<std::string>* log) {
  const std::string prefix = temp_prefix(t);
  const ProcessResult r = run({"ip", "-o", "link", "show", "type", "veth"});
  if (r.exit_code != 0) {
    return;
  }
  for (const auto& l : parse_links(r.out)) {
    if (l.name.rfind(prefix, 0) == 0) {
      // Deleting one end deletes its peer, wherever it is; the peer may already be gone.
      if (run({"ip", "link", "del", l.name}).exit_code == 0 && log != nullptr) {
        log->push_back("deleted stray veth " + l.name + " in the root namespace");
      }
    }
  }
}

// Whether host `i` is exactly as up() builds it. `bridge_links` lists the bridge namespace.
bool host_complete(const topo::Topology& t, const topo::Host& h, const std::string& ns,
                   const std::vector<Link>& bridge_links) {
  const ProcessResult links = run(ip_in(ns, {"-o", "link", "show"}));
  if (links.exit_code != 0) {
    return false;
  }
  const auto host_links = parse_links(links.out);
  const Link* lo = find_link(host_links, "lo");
  const Link* eth = find_link(host_links, kHostInterface);
  const Link* port = find_link(bridge_links, h.name);
  if (lo == nullptr || !lo->has_flag("UP") || eth == nullptr || !eth->has_flag("UP") ||
      port == nullptr || !port->has_flag("UP") || port->master != kBridgeName ||
      eth->peer != port->index || port->peer != eth->index) {
    return false;
  }
  const ProcessResult addrs = run(ip_in(ns, {"-o", "-4", "addr", "show", "dev", "eth0"}));
  if (addrs.exit_code != 0 || !has_addr(parse_addrs(addrs.out), kHostInterface, host_cidr(t, h))) {
    return false;
  }
  const ProcessResult route = run(ip_in(ns, {"-4", "route", "show", "default"}));
  if (route.exit_code != 0) {
    return false;
  }
  for (const auto& line : lines_of(route.out)) {
    const auto tok = split_ws(line);
    if (tok.size() >= 5 && tok[0] == "default" && tok[1] == "via" && tok[2] == t.gateway() &&
        tok[3] == "dev" && tok[4] == kHostInterface) {
      return true;
    }
  }
  return false;
}

// Builds (or rebuilds) host `i`: its namespace when `fresh`, its veth pair (created in the
// root namespace under temporary names, then moved and renamed in one step), its address,
// lo, eth0 and the default route via the gateway. Leaves a complete host alone.
void setup_host(const topo::Topology& t, std::size_t i, bool fresh, bool bridge_existed,
                const std::vector<Link>& bridge_links, std::vector<char>& created,
                std::vector<char>& rebuilt, std::vector<std::string>& log) {
  const topo::Host& h = t.hosts[i];
  const std::string ns = host_namespace(t, h.name);
  const std::string brns = bridge_namespace(t);
  const std::string br(kBridgeName);
  const std::string eth(kHostInterface);
  const std::string tmp_host = temp_veth_name(t, i, true);
  const std::string tmp_port = temp_veth_name(t, i, false);
  if (fresh) {
    run_checked({"ip", "netns", "add", ns});
    created[i] = 1;
    log.push_back("created namespace " + ns);
  } else if (bridge_existed && host_complete(t, h, ns, bridge_links)) {
    return;
  } else {
    // Present but incomplete: rebuild its veth from scratch.
    rebuilt[i] = 1;
    ignore(ip_in(ns, {"link", "del", eth}));
    ignore(ip_in(ns, {"link", "del", tmp_host}));
    log.push_back("rebuilding the veth of " + ns);
  }
  // A stale bridge port (its host namespace deleted by hand, a crash mid-way).
  for (const auto& stale : {h.name, tmp_port}) {
    if (find_link(bridge_links, stale) != nullptr) {
      ignore(ip_in(brns, {"link", "del", stale}));
    }
  }
  run_checked({"ip", "link", "add", tmp_host, "type", "veth", "peer", "name", tmp_port});
  run_checked({"ip", "link", "set", tmp_port, "netns", brns, "name", h.name});
  run_checked({"ip", "link", "set", tmp_host, "netns", ns, "name", eth, "up"});
  run_checked(ip_in(brns, {"link", "set", h.name, "master", br, "up"}));
  run_checked(ip_in(ns, {"addr", "add", host_cidr(t, h), "dev", eth}));
  run_checked(ip_in(ns, {"link", "set", "lo", "up"}));
  run_checked(ip_in(ns, {"route", "replace", "default", "via", t.gateway(), "dev", eth}));
  log.push_back("connected " + ns + " (" + host_cidr(t, h) + ") to " + brns + "/" + br);
}

// What one network_up call created, to undo on failure.
struct Created {
  explicit Created(std::size_t hosts) : host_created(hosts, 0), host_rebuilt(hosts, 0) {}

  bool bridge_ns_created = false;
  bool created_bridge = false;  // br0, in a bridge namespace that existed
  // Per host (each written by its own thread only): its namespace was created, its veth
  // was rebuilt in a namespace that existed.
  std::vector<char> host_created;
  std::vector<char> host_rebuilt;
};

// The bridge namespace as setup_bridge found it: its links (none when it is new), and
// whether br0 was there.
struct BridgeFound {
  std::vector<Link> links;
  bool bridge_existed;
};

// The bridge namespace and its bridge.
BridgeFound setup_bridge(const topo::Topology& t, const std::set<std::string>& existing,
                         Created& created, std::vector<std::string>& log) {
  const std::string brns = bridge_namespace(t);
  const std::string br(kBridgeName);
  const bool bridge_fresh = existing.count(brns) == 0;
  if (bridge_fresh) {
    run_checked({"ip", "netns", "add", brns});
    created.bridge_ns_created = true;
    log.push_back("created namespace " + brns);
  }
  std::vector<Link> bridge_links;
  if (!bridge_fresh) {
    bridge_links = parse_links(run_checked(ip_in(brns, {"-o", "link", "show"})));
  }
  if (const Link* lo = find_link(bridge_links, "lo"); lo == nullptr || !lo->has_flag("UP")) {
    run_checked(ip_in(brns, {"link", "set", "lo", "up"}));
  }
  const Link* bridge = find_link(bridge_links, br);
  if (bridge == nullptr) {
    run_checked(ip_in(brns, {"link", "add", br, "type", "bridge"}));
    created.created_bridge = !bridge_fresh;
    log.push_back("created bridge " + br + " in " + brns);
  }
  bool bridge_has_gw = false;
  if (bridge != nullptr) {
    bridge_has_gw =
        has_addr(parse_addrs(run_checked(ip_in(brns, {"-o", "-4", "addr", "show", "dev", br}))), br,
                 gateway_cidr(t));
  }
  if (!bridge_has_gw) {
    run_checked(ip_in(brns, {"addr", "add", gateway_cidr(t), "dev", br}));
    log.push_back("gave " + br + " the gateway address " + gateway_cidr(t));
  }
  if (bridge == nullptr || !bridge->has_flag("UP")) {
    run_checked(ip_in(brns, {"link", "set", br, "up"}));
  }
  const bool bridge_existed = bridge != nullptr;
  return {std::move(bridge_links), bridge_existed};
}

// The hosts, each in its own thread (they are independent; a spawn of `ip` is the cost).
void setup_hosts(const topo::Topology& t, const std::set<std::string>& existing,
                 const BridgeFound& found, Created& created, std::vector<std::string>& log) {
  const std::size_t n = t.hosts.size();
  std::vector<std::vector<std::string>> host_logs(n);
  std::vector<std::exception_ptr> host_errors(n);
  std::vector<std::thread> threads;
  threads.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    threads.emplace_back([&, i] {
      try {
        setup_host(t, i, existing.count(host_namespace(t, t.hosts[i].name)) == 0,
                   found.bridge_existed, found.links, created.host_created, created.host_rebuilt,
                   host_logs[i]);
      } catch (...) {
        host_errors[i] = std::current_exception();
      }
    });
  }
  for (auto& th : threads) {
    th.join();
  }
  for (std::size_t i = 0; i < n; ++i) {
    log.insert(log.end(), host_logs[i].begin(), host_logs[i].end());
  }
  for (const auto& e : host_errors) {
    if (e) {
      std::rethrow_exception(e);
    }
  }
}

// Undo what a network_up call created, newest first; errors here are secondary.
void undo_network_up(const topo::Topology& t, const Created& created) {
  const std::string brns = bridge_namespace(t);
  const std::string br(kBridgeName);
  const std::string eth(kHostInterface);
  for (std::size_t i = 0; i < t.hosts.size(); ++i) {
    if (!created.host_rebuilt[i]) {
      continue;
    }
    const std::string ns = host_namespace(t, t.hosts[i].name);
    ignore(ip_in(ns, {"link", "del", eth}));
    ignore(ip_in(ns, {"link", "del", temp_veth_name(t, i, true)}));
    ignore(ip_in(brns, {"link", "del", t.hosts[i].name}));
    ignore(ip_in(brns, {"link", "del", temp_veth_name(t, i, false)}));
  }
  remove_stray_temps(t, nullptr);
  for (std::size_t i = 0; i < t.hosts.size(); ++i) {
    if (created.host_created[i]) {
      ignore({"ip", "netns", "delete", host_namespace(t, t.hosts[i].name)});
    }
  }
  if (created.bridge_ns_created) {
    ignore({"ip", "netns", "delete", brns});
  }
  if (created.created_bridge) {
    ignore(ip_in(brns, {"link", "del", br}));
  }
}
}  // namespace

// ---------------------------------------------------------------------------------------------
// Names.

std::string host_namespace(const topo::Topology& t, std::string_view host) {
  return t.name + "-" + std::string(host);
}

std::string bridge_namespace(const topo::Topology& t) {
  return t.name + "-net";
}

std::string temp_prefix(const topo::Topology& t) {
  std::uint32_t h = 2166136261u;  // FNV-1a
  for (const unsigned char c : t.name) {
    h ^= c;
    h *= 16777619u;
  }
  char buf[16];
  std::snprintf(buf, sizeof buf, "wsv%06x", static_cast<unsigned>(h & 0xffffffu));
  return buf;
}

std::string temp_veth_name(const topo::Topology& t, std::size_t index, bool host_end) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%03x%c", static_cast<unsigned>(index & 0xfffu),
                host_end ? 'a' : 'b');
  return temp_prefix(t) + buf;
}

// ---------------------------------------------------------------------------------------------
// up / down / status.

std::vector<std::string> network_up(const topo::Topology& t) {
  validate(t);
  std::vector<std::string> log;
  // What this call created, to undo on failure.
  Created created(t.hosts.size());
  try {
    remove_stray_temps(t, &log);
    const std::set<std::string> existing = list_namespaces();
    const BridgeFound found = setup_bridge(t, existing, created, log);
    setup_hosts(t, existing, found, created, log);
  } catch (...) {
    undo_network_up(t, created);
    throw;
  }
  return log;
}

void network_down(const topo::Topology& t) {
  const std::set<std::string> existing = list_namespaces();
  std::vector<std::string> names;
  for (const auto& h : t.hosts) {
    names.push_back(host_namespace(t, h.name));
  }
  names.push_back(bridge_namespace(t));
  std::string errors;
  for (const auto& ns : names) {
    if (existing.count(ns) == 0) {
      continue;
    }
    const ProcessResult r = run({"ip", "netns", "delete", ns});
    if (r.exit_code != 0 && list_namespaces().count(ns) != 0) {
      errors += (errors.empty() ? "" : "; ") + ("`ip netns delete " + ns + "`: " + r.err);
    }
  }
  remove_stray_temps(t, nullptr);
  if (!errors.empty()) {
    throw std::runtime_error("down: " + errors);
  }
}

std::vector<HostStatus> network_status(const topo::Topology& t) {
  const std::set<std::string> existing = list_namespaces();
  std::vector<HostStatus> out;
  for (const auto& h : t.hosts) {
    HostStatus s;
    s.host = h.name;
    s.ns = host_namespace(t, h.name);
    s.address = host_cidr(t, h);
    s.ns_exists = existing.count(s.ns) != 0;
    if (s.ns_exists) {
      const ProcessResult r = run(ip_in(s.ns, {"-o", "-4", "addr", "show", "dev", "eth0"}));
      s.address_ok = r.exit_code == 0 && has_addr(parse_addrs(r.out), kHostInterface, s.address);
      // "2: eth0@if9: <BROADCAST,MULTICAST,UP,LOWER_UP> ...": UP among the flags.
      const ProcessResult l = run(ip_in(s.ns, {"-o", "link", "show", "dev", "eth0"}));
      const auto open = l.out.find('<'), close = l.out.find('>');
      if (l.exit_code == 0 && open < close && close != std::string::npos) {
        std::string_view flags = std::string_view(l.out).substr(open + 1, close - open - 1);
        for (std::size_t at = 0; at <= flags.size();) {
          const auto comma = std::min(flags.find(',', at), flags.size());
          if (flags.substr(at, comma - at) == "UP") s.link_up = true;
          at = comma + 1;
        }
      }
    }
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<std::string> in_host(const topo::Topology& t, std::string_view host,
                                 const std::vector<std::string>& argv) {
  if (t.find(host) == nullptr) {
    throw std::invalid_argument("no host named \"" + std::string(host) + "\" in " + t.source);
  }
  std::vector<std::string> out{"ip", "netns", "exec", host_namespace(t, host)};
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

std::string root_namespace_leaks(const topo::Topology& t) {
  const ipv4::Cidr lab = lab_net(t);
  std::vector<std::string> found;

  for (const auto& a : parse_addrs(run_checked({"ip", "-o", "-4", "addr", "show"}))) {
    if (const auto n = parse_net(a.cidr); n && lab.contains(n->network)) {
      found.push_back("address " + a.cidr + " on " + a.dev);
    }
  }

  const std::string prefix = temp_prefix(t);
  for (const auto& l : parse_links(run_checked({"ip", "-o", "link", "show"}))) {
    const bool temp = l.name.rfind(prefix, 0) == 0;
    const bool host = t.find(l.name) != nullptr;
    if (temp || host || l.name.rfind(t.name + "-", 0) == 0) {
      found.push_back("interface " + l.name);
    }
  }

  static const std::set<std::string> kTypes = {"unicast",   "local",       "broadcast", "multicast",
                                               "blackhole", "unreachable", "prohibit",  "throw",
                                               "nat",       "anycast"};
  for (const auto& line : lines_of(run_checked({"ip", "-4", "route", "show", "table", "all"}))) {
    const auto tok = split_ws(line);
    std::size_t i = 0;
    if (i < tok.size() && kTypes.count(tok[i]) != 0) {
      ++i;
    }
    bool leak = false;
    if (i < tok.size() && tok[i] != "default") {
      const auto dest = parse_net(tok[i]);
      leak = dest && inside(lab, *dest);
    }
    for (std::size_t j = i; j + 1 < tok.size(); ++j) {
      if (tok[j] != "via" && tok[j] != "src") continue;
      if (const auto a = ipv4::parse_address(tok[j + 1]); a && lab.contains(*a)) leak = true;
    }
    if (leak) {
      found.push_back("route " + line);
    }
  }

  std::string out;
  for (const auto& f : found) {
    out += (out.empty() ? "" : "; ") + f;
  }
  return out;
}

}  // namespace webstack::lab
