// What a rebuild of a node cut short left running, found in /proc and killed (see
// lab/rebuild_internal.hpp).
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "common/process.hpp"
#include "lab/rebuild_internal.hpp"

namespace webstack::lab {

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

}  // namespace

// Kills what a rebuild of a node cut short left running (while holding its lock, so none
// is a live rebuild's): every process whose command line names the node's rebuild files
// (the temporary server on rebuild.sock, the receiver unpacking into rebuild/, the sender
// writing rebuild.tmp/), and the stream's listener in the node's namespace (`ns_file`,
// /run/netns/...); waits until they are gone (10 s at most).
void detail::kill_rebuild_leftovers(const std::string& host_data, const std::string& ns_file,
                                    const std::string& listen) {
  struct stat ns {};
  const bool have_ns = ::stat(ns_file.c_str(), &ns) == 0;
  const auto leftovers = [&] {
    std::vector<int> pids;
    std::error_code ec;
    for (fs::directory_iterator it("/proc", ec), end; !ec && it != end; it.increment(ec)) {
      const std::string name = it->path().filename().string();
      if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
      const int pid = std::stoi(name);
      if (pid == ::getpid()) continue;
      const std::string cmdline = read_text_or_empty("/proc/" + name + "/cmdline");
      bool ours = cmdline.find(host_data + "/rebuild") != std::string::npos;
      struct stat net {};
      if (!ours && have_ns && cmdline.find(listen) != std::string::npos &&
          ::stat(("/proc/" + name + "/ns/net").c_str(), &net) == 0) {
        ours = net.st_ino == ns.st_ino && net.st_dev == ns.st_dev;
      }
      if (ours) pids.push_back(pid);
    }
    return pids;
  };
  const auto deadline = Clock::now() + 10s;
  for (auto pids = leftovers(); !pids.empty() && Clock::now() < deadline; pids = leftovers()) {
    for (const int pid : pids) ::kill(pid, SIGKILL);
    std::this_thread::sleep_for(50ms);  // poll interval
  }
}

}  // namespace webstack::lab
