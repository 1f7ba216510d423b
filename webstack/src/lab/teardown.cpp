// `webstack down`: the lab's processes found (pid file, command line, working directory,
// namespaces) and stopped, its namespaces deleted, its run files or whole state removed.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "common/process.hpp"
#include "common/text.hpp"
#include "lab/network.hpp"
#include "lab/paths.hpp"
#include "lab/site.hpp"
#include "lab/site_internal.hpp"

namespace webstack::lab {

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using topo::Role;
using topo::Topology;

using detail::client_hosts_dir;
using detail::kStateMarker;
using detail::running_svscan;

int proc_ppid(int pid) {
  const auto stat = read_text_or_empty(fmt::format("/proc/{}/stat", pid));
  const auto close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(stat.substr(close + 2));
  char state = 0;
  int ppid = 0;
  rest >> state >> ppid;
  return ppid;
}

std::string cmdline(int pid) {
  auto s = read_text_or_empty(fmt::format("/proc/{}/cmdline", pid));
  std::replace(s.begin(), s.end(), '\0', ' ');
  return text::trim(s);
}

// Pids of this process and its ancestors (never killed as "the lab's").
std::set<int> self_and_ancestors() {
  std::set<int> s;
  for (int pid = ::getpid(); pid > 1 && s.insert(pid).second;) pid = proc_ppid(pid);
  return s;
}

bool under(const std::string& path, const std::string& dir) {
  return path == dir || path.starts_with(dir + "/");
}

}  // namespace

std::vector<int> site_processes(const Topology& t, const std::string& state_dir) {
  const auto mine = self_and_ancestors();
  std::set<int> found;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    const auto name = e.path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
    const int pid = std::stoi(name);
    if (mine.count(pid) != 0 || !alive(pid)) continue;
    std::error_code ec2;
    const auto cwd = fs::read_symlink(e.path() / "cwd", ec2).string();
    const auto cmd = cmdline(pid);
    if ((!ec2 && under(cwd, state_dir)) || cmd.find(state_dir + "/") != std::string::npos ||
        cmd.ends_with(state_dir)) {
      found.insert(pid);
    }
  }
  // Whatever runs inside the lab's namespaces.
  std::vector<std::string> nss = {bridge_namespace(t)};
  for (const auto& h : t.hosts) nss.push_back(host_namespace(t, h.name));
  for (const auto& ns : nss) {
    if (!fs::exists("/run/netns/" + ns)) continue;
    const auto r = run({"ip", "netns", "pids", ns}, 5s);
    std::istringstream in(r.out);
    for (int pid; in >> pid;)
      if (mine.count(pid) == 0 && alive(pid)) found.insert(pid);
  }
  return {found.begin(), found.end()};
}

void site_down(const Topology& t, const SiteOptions& o, bool purge) {
  const StatePaths p(o.state_dir);
  // Ask s6 first: every service down, then s6-svscan to end its supervisors and exit.
  bool asked_s6 = false;
  if (const int pid = running_svscan(p); pid > 0) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(p.service, ec)) {
      if (e.path().filename().string().starts_with(".")) continue;
      run({"s6-svc", "-d", e.path().string()}, 1s);
      // The whole lab goes: no load balancer to drain the apps from, so their lame duck
      // is cut short (SIGINT after the SIGTERM).
      if (e.path().filename().string().ends_with("-webstack-app")) {
        run({"s6-svc", "-i", e.path().string()}, 1s);
      }
    }
    run({"s6-svscanctl", "-t", p.service}, 1s);
    asked_s6 = true;
  }
  // Then SIGTERM whatever is left (at once when s6 was not there to ask: a crash), then
  // SIGKILL. Our own child (s6-svscan started by a failed up) is reaped on the way.
  const auto term_at = Clock::now() + (asked_s6 ? 1500ms : 0ms);
  const auto kill_at = Clock::now() + 3500ms;
  const auto give_up = kill_at + 1000ms;
  bool termed = false, killed = false;
  std::vector<int> left;
  for (;;) {
    while (::waitpid(-1, nullptr, WNOHANG) > 0) {
    }
    left = site_processes(t, o.state_dir);
    const auto now = Clock::now();
    if (left.empty() || now > give_up) break;
    if (!killed && now > kill_at) {
      for (int pid : left) ::kill(pid, SIGKILL);
      killed = true;
    } else if (!termed && now >= term_at) {
      for (int pid : left) ::kill(pid, SIGTERM);
      termed = true;
    }
    std::this_thread::sleep_for(50ms);
  }
  network_down(t);
  std::error_code ec;
  if (!t.with_role(Role::Client).empty()) fs::remove_all(client_hosts_dir(t), ec);
  if (purge) {
    // Only a directory `up` made is removed: a mistyped --state-dir must not erase data.
    if (fs::exists(o.state_dir, ec) && !fs::exists(fs::path(o.state_dir) / kStateMarker, ec)) {
      throw std::runtime_error(
          fmt::format("{} is not a webstack state directory (no {}): not removing it", o.state_dir,
                      kStateMarker));
    }
    fs::remove_all(o.state_dir, ec);
    if (ec)
      throw std::runtime_error(fmt::format("cannot remove {}: {}", o.state_dir, ec.message()));
  } else if (fs::exists(p.run, ec)) {
    for (auto it = fs::recursive_directory_iterator(p.run, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      const auto ext = it->path().extension().string();
      if (ext == ".pid" || ext == ".sock" || it->is_socket()) fs::remove(it->path(), ec);
    }
  }
  if (!left.empty()) {
    std::string pids;
    for (int pid : left) pids += fmt::format(" {} ({})", pid, cmdline(pid));
    throw std::runtime_error("processes of the lab still alive after SIGKILL:" + pids);
  }
}

}  // namespace webstack::lab
