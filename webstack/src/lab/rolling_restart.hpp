// `webstack deploy`: a rolling restart of the site's application servers with no failed
// request. One web host at a time: drained on every load balancer through HAProxy's
// runtime API (no new requests; those in flight finish), its webstack-app restarted (the
// binary the lab runs: a new build, or the same) and its Nginx reloaded (SIGHUP: new
// workers, the old ones finish their connections), then, once the app answers /readyz,
// put back on every balancer; the next host only after every balancer sees it UP. Last,
// each balancer's HAProxy is reloaded, one at a time (master-worker: the config on disk,
// no connection closed).
#pragma once

#include <chrono>
#include <cstdio>
#include <string>

#include "topology/topology.hpp"

namespace webstack::lab {

struct RollingRestartOptions {
  std::string state_dir;
  std::chrono::milliseconds drain_timeout{15000};  // in-flight requests of a drained host
  std::chrono::milliseconds ready_timeout{30000};  // the restarted app ready, and UP again
};

// Prints one line per step with its time on `out`. Throws std::runtime_error (naming
// the host and the step) when the lab is not up or a step does not finish in time; the
// host being deployed is then left drained, never half in rotation.
void rolling_restart(const topo::Topology& t, const RollingRestartOptions& o, std::FILE* out);

}  // namespace webstack::lab
