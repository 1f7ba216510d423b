// The failover manager's diverged nodes and their rebuilds: marked in each round's views,
// the rebuild command started in the background, reaped, and tried again after a failure.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "common/process.hpp"
#include "failover/daemon.hpp"
#include "failover/manager_detail.hpp"

namespace webstack::failover::manager_detail {

// A node the primary refused as diverged stays so while its binlog and the primary are
// the same and it does not replicate (a rebuild empties its binlog; a person may repair
// it otherwise), even where its GTID position looks in order. The rebuild's node is
// marked while its data is still the old one, and nodes that cannot be rebuilt now.
void Manager::mark_diverged() {
  for (auto& n : nodes_) {
    if (rebuild_pid_ > 0 && n.name == rebuild_host_ && !n.reachable) rebuild_seen_down_ = true;
    if (!n.reachable) continue;
    if (const auto it = diverged_at_.find(n.name); it != diverged_at_.end()) {
      if (n.gtid_binlog_pos != it->second.binlog || decider_.primary() != it->second.primary ||
          (n.io_running && n.sql_running)) {
        diverged_at_.erase(it);
      } else {
        n.diverged = true;
      }
    }
    // Its old data until the rebuild stopped it, or its binlog changed.
    n.rebuilding = rebuild_pid_ > 0 && n.name == rebuild_host_ && !rebuild_seen_down_ &&
                   n.gtid_binlog_pos == rebuild_binlog_;
    const auto retry = rebuild_retry_.find(n.name);
    n.rebuild_wait =
        rebuild_pid_ > 0 || (retry != rebuild_retry_.end() && Clock::now() < retry->second.at);
    // A rebuild this manager did not start (by hand, or before a restart) holds the
    // node's lock: no rebuild of it, and no promotion.
    if (rebuild_pid_ <= 0 && lock_held(n.name)) n.rebuild_wait = n.rebuild_locked = true;
  }
}

// The rebuild command's lock on `host` (`rebuild_lock`, an OFD lock) is held by someone:
// tested without taking it (a rebuild starting now must not find it taken by us).
bool Manager::lock_held(const std::string& host) const {
  if (c_.rebuild_lock.empty()) return false;
  std::string path = c_.rebuild_lock;
  if (const auto at = path.find("{host}"); at != std::string::npos) path.replace(at, 6, host);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  struct flock probe {};
  probe.l_type = F_WRLCK;
  probe.l_whence = SEEK_SET;
  const bool held = ::fcntl(fd, F_OFD_GETLK, &probe) == 0 && probe.l_type != F_UNLCK;
  ::close(fd);
  return held;
}

// A rebuild killed part way (by a signal: the command itself starts the node again on
// any error) can leave the node's MariaDB stopped, where the rules see nothing to
// rebuild: tried again from here, while the site has its primary and failover is not
// paused. A node that answers is the rules' again.
void Manager::retry_unreachable_rebuild(Clock::time_point now) {
  if (rebuild_pid_ > 0 || decider_.down_since() || paused_) return;
  for (auto it = rebuild_retry_.begin(); it != rebuild_retry_.end();) {
    const NodeView* v = nullptr;
    for (const auto& n : nodes_)
      if (n.name == it->first) v = &n;
    if (v == nullptr || it->first == decider_.primary()) {
      it = rebuild_retry_.erase(it);
      continue;
    }
    if (!v->reachable && it->second.left_down && now >= it->second.at) {
      const std::string host = it->first;
      say("rebuild {}: it does not answer since its last rebuild failed: trying again", host);
      try {
        start_rebuild(host);
      } catch (const std::exception& e) {
        say("rebuild {} failed: {}", host, e.what());
      }
      return;
    }
    ++it;
  }
}

// The rebuild command runs in the background (minutes, for a large database) with this
// log as its output, in a session of its own (stopping or killing the manager's service
// leaves it running; a restarted manager sees the command's lock held, and waits) and
// with no descriptor of ours but its output. Rounds go on meanwhile:
// its last step waits for this manager to rejoin the node.
void Manager::start_rebuild(const std::string& host) {
  if (rebuild_pid_ > 0) return;  // one at a time
  std::vector<std::string> args;
  args.reserve(c_.rebuild_command.size());
  for (std::string a : c_.rebuild_command) {
    for (auto at = a.find("{host}"); at != std::string::npos; at = a.find("{host}", at)) {
      a.replace(at, 6, host);
      at += host.size();
    }
    args.push_back(std::move(a));
  }
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  // The MariaDB client library's sockets are not close-on-exec.
  posix_spawn_file_actions_addclosefrom_np(&fa, 3);
  // SIGPIPE back to its default: the command's pipelines count on it (this one ignores it).
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSID);
  pid_t pid = -1;
  const int rc = ::posix_spawnp(&pid, argv[0], &fa, &attr, argv.data(), environ);
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    failed_rebuild(host, false);
    throw std::runtime_error(fmt::format("cannot start {}: {}", args.front(), std::strerror(rc)));
  }
  rebuild_pid_ = pid;
  rebuild_host_ = host;
  rebuild_seen_down_ = true;  // until it is seen answering, on its old data
  for (const auto& n : nodes_) {
    if (n.name == host && n.reachable) {
      rebuild_binlog_ = n.gtid_binlog_pos;
      rebuild_seen_down_ = false;
    }
  }
  rebuild_started_ = Clock::now();
  say("rebuild {}: started `{}` (pid {})", host, describe(args), pid);
}

void Manager::reap_rebuild() {
  if (rebuild_pid_ <= 0) return;
  int status = 0;
  const pid_t r = ::waitpid(rebuild_pid_, &status, WNOHANG);
  const int wait_errno = errno;
  if (r == 0) return;  // still running
  const double secs = std::chrono::duration<double>(Clock::now() - rebuild_started_).count();
  const bool ok = r == rebuild_pid_ && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  if (ok) {
    ++rebuilds_;
    diverged_at_.erase(rebuild_host_);
    rebuild_retry_.erase(rebuild_host_);
    say("rebuild {}: done ({:.1f} s)", rebuild_host_, secs);
  } else {
    const auto delay = failed_rebuild(rebuild_host_, r != rebuild_pid_ || WIFSIGNALED(status));
    say("rebuild {}: failed ({}, after {:.1f} s): tried again in {} s", rebuild_host_,
        r != rebuild_pid_     ? std::string("lost: ") + std::strerror(wait_errno)
        : WIFEXITED(status)   ? fmt::format("exit {}", WEXITSTATUS(status))
        : WIFSIGNALED(status) ? fmt::format("signal {}", WTERMSIG(status))
                              : std::string("ended"),
        secs, delay.count());
  }
  rebuild_pid_ = -1;
}

// A failed rebuild of `host`: tried again after 30 s, doubling up to 10 minutes while it
// keeps failing. `left_down`: it ended by a signal, and may have left the node stopped.
std::chrono::seconds Manager::failed_rebuild(const std::string& host, bool left_down) {
  ++rebuild_failures_;
  auto& r = rebuild_retry_[host];
  r.delay = r.delay.count() == 0 ? kRebuildRetry : std::min(r.delay * 2, kRebuildRetryMax);
  r.at = Clock::now() + r.delay;
  r.left_down = left_down;
  return r.delay;
}

// Nodes diverged: the rules' (reachable ones), the one being rebuilt, and those whose
// rebuild failed while they do not answer. The site has no replica in them either way.
std::vector<std::string> Manager::diverged_nodes() const {
  auto out = decider_.diverged();
  if (rebuild_pid_ > 0 && std::find(out.begin(), out.end(), rebuild_host_) == out.end()) {
    out.push_back(rebuild_host_);
  }
  for (const auto& [host, retry] : rebuild_retry_) {
    for (const auto& n : nodes_) {
      if (n.name == host && !n.reachable && retry.left_down &&
          std::find(out.begin(), out.end(), host) == out.end()) {
        out.push_back(host);
      }
    }
  }
  return out;
}

// How many files the rebuilds saved discarded transactions in (the operator reads them,
// then moves them away): the ErrantTransactionsSaved alert.
std::size_t Manager::errant_files() const {
  if (c_.errant_dir.empty()) return 0;
  std::error_code ec;
  std::size_t n = 0;
  for (std::filesystem::directory_iterator it(c_.errant_dir, ec), end; !ec && it != end;
       it.increment(ec)) {
    if (it->path().extension() == ".sql") ++n;
  }
  return n;
}

}  // namespace webstack::failover::manager_detail
