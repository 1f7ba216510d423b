// Emulated real servers, for proving a deploy the way it runs against real ones: every
// host of a topology but the client becomes a full Debian 12 machine that boots systemd
// as PID 1 from its own root file system, inside the lab's network namespace
// "<lab>-<host>" (deploy/machines/machines.sh: a debootstrap tree shared through one
// overlay per machine, systemd-nspawn). The client's namespace plays the administrators'
// host: SSH (and Ansible) run from there, as from an operator's machine.
//
// State, under state_dir (made by machines_up, removed by machines_down):
//   .webstack-machines        marker: down --purge removes only a directory up made
//   ssh/id_ed25519[.pub]      the key every machine's root accepts (0600)
//   machines/<host>/          each machine's overlay, console log and pid
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "topology/topology.hpp"

namespace webstack::hosts {

struct MachinesOptions {
  std::string state_dir;  // absolute
  std::string script;     // deploy/machines/machines.sh
  std::string cache_dir;  // where the root file system is built once and kept
};

// The machines: every host but the client, in topology order.
std::vector<std::string> machine_hosts(const topo::Topology& t);

// The lab's network, the root file system (built on first use, ~1 minute), a key, and
// every machine booted and answering SSH from the client host. Prints each step with its
// time. On failure, stops what it started and removes the network, then rethrows.
void machines_up(const topo::Topology& t, const MachinesOptions& o);

// Stops every machine (a clean poweroff, SIGKILL past the timeout) and removes the
// network; with purge, the state directory too (only one machines_up made). Missing
// pieces are fine.
void machines_down(const topo::Topology& t, const MachinesOptions& o, bool purge);

// argv run as root on machine `host` over SSH from the client host (the administrators'
// view), with the state's key; each argument arrives as one (quoted for the remote
// shell). Host keys are not recorded (each machine makes its own at first boot).
std::vector<std::string> ssh_command(const topo::Topology& t, const MachinesOptions& o,
                                     const std::string& host, const std::vector<std::string>& argv);

}  // namespace webstack::hosts
