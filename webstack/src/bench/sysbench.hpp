// Private to `webstack bench`: its database ceiling, sysbench oltp_point_select against
// the replica from a web host (bench.cpp runs it beside wrk; sysbench.cpp is all of it).
#pragma once

#include <string>

#include "bench/bench.hpp"
#include "topology/topology.hpp"

namespace webstack::bench::detail {

// The database ceiling's account, table and options file (made once, kept, in the lab's
// secrets); returns the options file, the replicas caught up with the table.
std::string prepare_sysbench(const topo::Topology& t, const std::string& state);

// sysbench point-select against the first replica (else the primary) from a web host.
WrkResult run_sysbench(const topo::Topology& t, const std::string& cfg, const Options& o);

}  // namespace webstack::bench::detail
