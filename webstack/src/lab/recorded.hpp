// What a lab's state directory records about it (lab/paths.hpp names the files): the
// profile and benchmark peers it was made with, and the database primary as it is now.
// The topology's `db = "primary"` is where the lab starts; a promotion records the new
// primary in <state>/primary, and every command that cares reads the topology through
// with_current_primary(). Below the lab's operations: it reads files, runs nothing.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "render/render.hpp"
#include "topology/topology.hpp"

namespace webstack::lab {

// `t` with the database roles as they are now: the host named in <state>/primary (if
// any, and a database host) is the primary, every other database host a replica.
topo::Topology with_current_primary(const topo::Topology& t, const std::string& state_dir);

// The profile a lab's state directory was made with, if any.
std::optional<render::Profile> recorded_profile(const std::string& state_dir);
// The benchmark peers the running lab was brought up with (<state>/peers, "" = none).
std::vector<std::string> recorded_peers(const std::string& state_dir);

}  // namespace webstack::lab
