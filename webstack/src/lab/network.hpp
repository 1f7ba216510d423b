// The lab's network as real network namespaces on this machine.
//
// Every host of a topology gets a namespace "<lab>-<host>" with a veth "eth0" holding the
// host's address; the other end of each veth, named after the host, sits in the bridge
// namespace "<lab>-net" as a port of the bridge "br0", which holds the gateway address
// (subnet + 1) and is each host's default route. The root namespace holds no lab
// address, route or interface: veth pairs are created there under temporary names
// ("wsv" + a hash of the lab name + the host's index + 'a' | 'b') and moved out at once.
//
// Every command is `ip` run without a shell (common/process.hpp).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "topology/topology.hpp"

namespace webstack::lab {

inline constexpr std::string_view kBridgeName = "br0";      // in the bridge namespace
inline constexpr std::string_view kHostInterface = "eth0";  // in each host namespace

std::string host_namespace(const topo::Topology& t, std::string_view host);  // "<lab>-<host>"
std::string bridge_namespace(const topo::Topology& t);                       // "<lab>-net"
// "wsv" + 6 hex digits of a hash of the lab name: the prefix of every temporary veth name.
std::string temp_prefix(const topo::Topology& t);
// The temporary name of host `index`'s veth end: "<prefix><3 hex digits><a|b>", 13 chars;
// 'a' becomes eth0 in the host namespace, 'b' the bridge port.
std::string temp_veth_name(const topo::Topology& t, std::size_t index, bool host_end);

struct HostStatus {
  std::string host;
  std::string ns;
  std::string address;  // "10.77.0.11/24", as expected
  bool ns_exists = false;
  bool address_ok = false;  // eth0 in the namespace holds `address`
  bool link_up = false;     // eth0 is administratively up (`webstack link HOST down` not)
};

// Brings the lab's network up. Idempotent: what already exists as expected is left
// alone (nothing is run but checks), what is missing or broken (a crash, a namespace
// deleted by hand) is built or rebuilt. Returns what it did, one line per change (empty
// when everything was already in place). On failure, undoes what this call created
// (namespaces, veths, the bridge) and rethrows: a failed up leaves nothing of its own.
// Throws std::invalid_argument for a topology whose namespace names would collide (a
// host named "net").
std::vector<std::string> network_up(const topo::Topology& t);

// Deletes every host namespace and the bridge namespace (with them, their veth ends)
// and any temporary veth a crashed up left in the root namespace. Missing pieces are
// fine; down twice is a no-op. Throws std::runtime_error (after trying everything) only
// if something that exists could not be deleted.
void network_down(const topo::Topology& t);

// One entry per host, in topology order.
std::vector<HostStatus> network_status(const topo::Topology& t);

// {"ip", "netns", "exec", "<lab>-<host>", argv...}. Throws std::invalid_argument for an
// unknown host.
std::vector<std::string> in_host(const topo::Topology& t, std::string_view host,
                                 const std::vector<std::string>& argv);

// A description of every lab address, route or interface found in the ROOT namespace
// ("; "-separated), "" when there is none. Looks at `ip -o addr`, `ip -o link` and
// `ip route show table all`: addresses inside the lab subnet, routes to or via it,
// interfaces named like a temporary veth or like one of the hosts.
std::string root_namespace_leaks(const topo::Topology& t);

}  // namespace webstack::lab
