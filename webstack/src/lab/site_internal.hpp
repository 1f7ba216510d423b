// Private to the lab's bring-up and tear-down: what site.cpp (up), site_checks.cpp (the
// site checked), bootstrap.cpp (the databases) and teardown.cpp (down) share.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <string>

#include "common/steps.hpp"
#include "lab/paths.hpp"
#include "lab/site.hpp"
#include "topology/topology.hpp"

namespace webstack::lab::detail {

// Written by up into the state directory; down --purge removes only a directory that has it.
inline constexpr const char* kStateMarker = ".webstack-lab";

// site.cpp
std::string read_text(const std::string& path);
// The last `bytes` of a file (a log), "..." first when cut.
std::string tail(const std::string& path, std::size_t bytes = 1500);
// Writes `content` to `path` created with `mode` (never readable by others in between).
void write_secret(const std::string& path, const std::string& content, uid_t uid, gid_t gid,
                  mode_t mode);
// The lab's s6-svscan per its pid file, or -1.
int running_svscan(const StatePaths& p);
// The client host's own hosts file's directory (/etc/netns/<namespace>).
std::string client_hosts_dir(const topo::Topology& t);

// bootstrap.cpp
// Automatic failover runs in this lab (render.cpp decides the same way).
bool failover_on(const topo::Topology& t, const SiteOptions& o);
// mariadb-install-db for each database host whose datadir is empty, in parallel; true
// when any was.
bool install_databases(const topo::Topology& t, const StatePaths& p);
// The databases answer, the primary takes writes, the data is there (bootstrapped once)
// and replicated, and the accounts of the exporters and the failover manager exist.
void up_databases(const topo::Topology& t, const SiteOptions& o, const StatePaths& p, bool fresh_db,
                  StepPrinter& step);

// site_checks.cpp
// The site, seen from the client host, from the edge and by Prometheus.
void check_site(const topo::Topology& t, const SiteOptions& o, const StatePaths& p,
                StepPrinter& step);

}  // namespace webstack::lab::detail
