// Private to `webstack db rebuild`: what rebuild.cpp (the rebuild's phases) and
// rebuild_errant.cpp (a node's transactions the primary lacks, found in the binlogs and
// saved) share.
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

}  // namespace webstack::lab::detail
