// Private to `webstack db rebuild`: what rebuild.cpp (the rebuild's phases) takes from
// rebuild_errant.cpp (a node's transactions the primary lacks, found in the binlogs and
// saved) and rebuild_leftovers.cpp (what a rebuild cut short left running, killed).
#pragma once

#include <string>
#include <vector>

namespace webstack::lab::detail {

// rebuild_errant.cpp
// The binlog files a datadir's index names, oldest first.
std::vector<std::string> binlog_files(const std::string& datadir);
// The transactions of `host` (its binlog from `datadir`) that the primary (its binlog
// `primary_files`, and before it its position `primary_pos`) never had, written as
// mariadb-binlog's SQL to `file`; returns how many ("" when none).
std::string save_errant(const std::string& host, const std::string& datadir,
                        const std::vector<std::string>& primary_files,
                        const std::string& primary_pos, const std::string& file);

// rebuild_leftovers.cpp
// Kills what a rebuild of a node cut short left running: the processes whose command line
// names the node's rebuild files under `host_data`, and the stream's listener (`listen`) in
// the node's namespace (`ns_file`); waits until they are gone (10 s at most).
void kill_rebuild_leftovers(const std::string& host_data, const std::string& ns_file,
                            const std::string& listen);

}  // namespace webstack::lab::detail
