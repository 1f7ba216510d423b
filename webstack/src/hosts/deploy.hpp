// `webstack deploy --target hosts`: the topology on real servers, with the standard tools
// of that job. One command does what docs/deploy.md otherwise lists as steps:
//   1. render every server's bundle (render --target hosts) and Ansible's inventory;
//   2. the secrets: the vault file given, or, when it does not exist yet, a new one made
//      by deploy/ansible/make-vault.py and encrypted with ansible-vault on the way to
//      disk (the plain text never touches a disk);
//   3. deploy/ansible/site.yml with ansible-playbook, attached to the terminal (its
//      output is the report; it may ask for the vault's password), --check --diff with
//      `check` (what would change; nothing changes).
// Ansible runs from wherever this command runs: the operator's machine (or, for the
// emulated machines of `webstack machines`, the lab's client host through `webstack exec
// client --`), over SSH as [deploy] ssh_user.
#pragma once

#include <string>
#include <vector>

#include "render/render.hpp"
#include "topology/topology.hpp"

namespace webstack::hosts {

struct DeployOptions {
  render::Options render;                 // templates and www; target and intervals are set here
  std::string ansible_dir;                // deploy/ansible (site.yml, ansible.cfg, make-vault.py)
  std::string vault;                      // absolute; made when missing (needs vault_password_file)
  std::string vault_password_file;        // "" : ansible asks when the vault is encrypted
  std::string ca_dir;                     // a new vault's CA is made (or found) here
  std::string bundle_dir;                 // "" : a temporary directory, removed afterwards
  bool check = false;                     // --check --diff: report, change nothing
  std::vector<std::string> ansible_args;  // appended to ansible-playbook's arguments
};

// Runs the three steps; returns ansible-playbook's exit status (0: every server done;
// 2: a task failed; 4: a server unreachable). Throws std::runtime_error (or
// topo::TopologyError) before anything reaches a server when an input is wrong: a
// topology real servers cannot take, a missing program, a vault that cannot be made or
// read, a bundle directory that holds something else. A vault it fails to make is not
// left half-written.
int deploy(const topo::Topology& t, const DeployOptions& o);

}  // namespace webstack::hosts
