// A rebuilt node's transactions the primary lacks (see lab/rebuild_internal.hpp): found by
// comparing the node's binlog with the primary's, and saved as mariadb-binlog's SQL.
#include <fmt/format.h>

#include <chrono>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "common/process.hpp"
#include "common/text.hpp"
#include "lab/rebuild_internal.hpp"

namespace webstack::lab {

namespace {

using namespace std::chrono_literals;

}  // namespace

// The binlog files a datadir's index names, oldest first.
std::vector<std::string> detail::binlog_files(const std::string& datadir) {
  std::vector<std::string> files;
  std::istringstream index(read_text_or_empty(datadir + "/mysql-bin.index"));
  for (std::string line; std::getline(index, line);) {
    line = text::trim(line);
    if (line.empty()) continue;
    files.push_back(line.front() == '/' ? line : datadir + "/" + line.substr(line.rfind('/') + 1));
  }
  return files;
}

namespace {

// The GTIDs of `files` (mariadb-binlog of the files, so the server need not run), in
// order. Throws when mariadb-binlog fails: a GTID missed could be a transaction lost.
std::vector<std::string> binlog_gtids(const std::vector<std::string>& files) {
  if (files.empty()) return {};
  // Only the events' header lines ("#261207 2:32:31 server id 1 end_log_pos 813 ...
  // GTID 0-1-4 trans"): a statement's text (the row events' annotations) may say "GTID".
  std::vector<std::string> argv = {
      "bash", "-c",
      "mariadb-binlog --skip-annotate-row-events \"$@\" | sed -nE "
      "'s/^#[0-9]{6} .* end_log_pos [0-9]+ .*[[:space:]]GTID ([0-9]+-[0-9]+-[0-9]+)( .*)?$/\\1/p'; "
      "s=(\"${PIPESTATUS[@]}\"); [ \"${s[0]}\" = 0 ] || { echo \"mariadb-binlog exited "
      "${s[0]}\" >&2; exit 3; }",
      "bash"};
  argv.insert(argv.end(), files.begin(), files.end());
  const auto r = run(argv, 300s);
  if (r.exit_code != 0) {
    throw std::runtime_error("reading the binlog " + files.front() + "...: " + text::trim(r.err));
  }
  std::vector<std::string> out;
  std::istringstream lines(r.out);
  for (std::string g; std::getline(lines, g);) out.push_back(g);
  return out;
}

// "0-2-17" -> (0, 17).
std::pair<long long, long long> domain_and_seq(const std::string& gtid) {
  const auto a = gtid.find('-'), b = gtid.rfind('-');
  return {std::stoll(gtid.substr(0, a)), std::stoll(gtid.substr(b + 1))};
}

}  // namespace

// The transactions of `host` (its binlog from `datadir`) that the primary never had,
// written as mariadb-binlog's SQL to `file`; returns how many ("" when none). The
// primary's history is its binlog (`primary_files`) and, before it, its position
// (`primary_pos`, read before those files were closed): per domain, a transaction is the
// primary's if its binlog has it, or if its sequence number lies below where that binlog
// starts (or, when the binlog has none of the domain, at most the position's). What lies
// below is compared by number only: a node whose binlog and the primary's both start late
// (each rebuilt since) can miss a transaction that diverged before that.
std::string detail::save_errant(const std::string& host, const std::string& datadir,
                                const std::vector<std::string>& primary_files,
                                const std::string& primary_pos, const std::string& file) {
  const auto files = binlog_files(datadir);
  const auto mine = binlog_gtids(files);
  const auto theirs = binlog_gtids(primary_files);
  std::set<std::string> have(theirs.begin(), theirs.end());
  // Per domain, the lowest sequence number the primary's binlog must hold to have it.
  std::map<long long, long long> floor;
  std::istringstream pos(primary_pos);
  for (std::string g; std::getline(pos, g, ',');) {
    g = text::trim(g);
    if (g.empty()) continue;
    const auto [d, n] = domain_and_seq(g);
    floor[d] = n + 1;
  }
  std::map<long long, long long> oldest;
  for (const auto& g : theirs) {
    const auto [d, n] = domain_and_seq(g);
    if (!oldest.contains(d) || n < oldest[d]) oldest[d] = n;
  }
  for (const auto& [d, n] : oldest) floor[d] = n;
  std::size_t first = mine.size();
  for (std::size_t i = 0; i < mine.size() && first == mine.size(); ++i) {
    const auto [d, n] = domain_and_seq(mine[i]);
    if (!have.contains(mine[i]) && (!floor.contains(d) || n >= floor[d])) first = i;
  }
  if (first == mine.size()) return "";
  std::vector<std::string> argv = {"bash", "-c",
                                   "umask 077; f=$1; shift; mariadb-binlog --verbose \"$@\" > "
                                   "\"$f.partial\" && mv \"$f.partial\" \"$f\"",
                                   "bash", file};
  if (first > 0) argv.push_back("--start-position=" + mine[first - 1]);
  argv.insert(argv.end(), files.begin(), files.end());
  const auto r = run(argv, 300s);
  if (r.exit_code != 0) {
    throw std::runtime_error(fmt::format("saving {}'s transactions the primary lacks to {}: {}",
                                         host, file, text::trim(r.err)));
  }
  // Every one of them in the file, or the data is not replaced.
  const std::string saved = read_text_or_empty(file);
  for (std::size_t i = first; i < mine.size(); ++i) {
    if (saved.find("GTID " + mine[i]) == std::string::npos) {
      throw std::runtime_error(
          fmt::format("{} lacks {}'s transaction {}: nothing replaced", file, host, mine[i]));
    }
  }
  // Counted exactly: the file runs from the first such to the end (mariadb-binlog reads
  // from a position), and may hold transactions the primary has between them.
  std::size_t errant = 0;
  for (std::size_t i = first; i < mine.size(); ++i) {
    const auto [d, n] = domain_and_seq(mine[i]);
    errant += !have.contains(mine[i]) && (!floor.contains(d) || n >= floor[d]) ? 1 : 0;
  }
  return fmt::format("{} (GTID {} to {})", errant, mine[first], mine.back());
}

}  // namespace webstack::lab
