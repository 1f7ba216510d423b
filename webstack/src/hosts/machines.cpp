#include "hosts/machines.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <thread>

#include "common/process.hpp"
#include "common/steps.hpp"
#include "common/text.hpp"
#include "lab/network.hpp"

namespace webstack::hosts {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

constexpr const char* kMarker = ".webstack-machines";

std::string key_path(const MachinesOptions& o) {
  return o.state_dir + "/ssh/id_ed25519";
}

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

const topo::Host& client_of(const topo::Topology& t) {
  const auto clients = t.with_role(topo::Role::Client);
  if (clients.empty()) throw std::runtime_error("machines: the topology has no client host");
  return *clients.front();
}

// The packaged services of each role. Every machine's root file system holds every
// role's packages (one shared tree); a real server has only its own roles'.
struct RoleUnits {
  topo::Role role;
  std::vector<std::string> units;
};
const std::vector<RoleUnits>& role_units() {
  static const std::vector<RoleUnits> units = {
      {topo::Role::LoadBalancer, {"haproxy.service", "keepalived.service"}},
      {topo::Role::Web, {"nginx.service", "prometheus-nginx-exporter.service"}},
      {topo::Role::Database, {"mariadb.service", "prometheus-mysqld-exporter.service"}},
      {topo::Role::Monitor,
       {"prometheus.service", "prometheus-alertmanager.service",
        "prometheus-blackbox-exporter.service"}}};
  return units;
}

// Stops every machine of the topology that has state; collects what failed.
std::string stop_all(const topo::Topology& t, const MachinesOptions& o) {
  std::string failed;
  for (const auto& host : machine_hosts(t)) {
    const auto r = run({o.script, "stop", host, o.state_dir + "/machines"}, 120s);
    if (r.exit_code != 0) failed += fmt::format("{}: {}{} ", host, r.err, r.out);
  }
  return failed;
}

}  // namespace

std::vector<std::string> machine_hosts(const topo::Topology& t) {
  std::vector<std::string> out;
  for (const auto& h : t.hosts) {
    if (!h.has(topo::Role::Client)) out.push_back(h.name);
  }
  return out;
}

std::vector<std::string> ssh_command(const topo::Topology& t, const MachinesOptions& o,
                                     const std::string& host,
                                     const std::vector<std::string>& argv) {
  const auto* h = t.find(host);
  if (h == nullptr) throw std::invalid_argument("machines: no host " + host);
  std::vector<std::string> cmd = {"ssh",
                                  "-i",
                                  key_path(o),
                                  "-o",
                                  "BatchMode=yes",
                                  "-o",
                                  "StrictHostKeyChecking=no",
                                  "-o",
                                  "UserKnownHostsFile=/dev/null",
                                  "-o",
                                  "LogLevel=ERROR",
                                  "-o",
                                  "ConnectTimeout=3",
                                  "root@" + h->address,
                                  "--"};
  // ssh hands the remote shell one string: each argument quoted, so that it arrives as
  // one argument whatever it holds.
  std::string remote;
  for (const auto& a : argv) {
    remote += remote.empty() ? "'" : " '";
    for (char c : a) remote += c == '\'' ? std::string("'\\''") : std::string(1, c);
    remote += '\'';
  }
  cmd.push_back(remote);
  return lab::in_host(t, client_of(t).name, cmd);
}

// `host` answers SSH from the client host (systemd running, or degraded: the note says
// which units failed), with the other roles' services disabled.
std::string ready_over_ssh(const topo::Topology& t, const MachinesOptions& o,
                           const std::string& host) {
  const auto deadline = Clock::now() + 60s;
  ProcessResult r;
  while (true) {
    r = run(ssh_command(t, o, host, {"systemctl", "is-system-running"}), 20s);
    const std::string state = text::trim(r.out);
    if (state == "running" || state == "degraded") break;
    if (Clock::now() > deadline) {
      throw std::runtime_error(
          fmt::format("machines up: {} does not answer SSH from the "
                      "client host: exit {} {}{}",
                      host, r.exit_code, r.out, r.err));
    }
    std::this_thread::sleep_for(200ms);  // poll interval of the deadline loop
  }
  std::string note;
  if (text::trim(r.out) == "degraded") {
    const auto failed = run(ssh_command(t, o, host, {"systemctl", "--failed", "--no-legend"}));
    note = "degraded: " + text::trim(failed.out);
  }
  // As a server with its own roles' packages only: the other roles' services are
  // disabled (an Nginx on a load balancer would hold its port 80).
  std::vector<std::string> disable = {"systemctl", "disable", "--now", "--quiet"};
  for (const auto& [role, units] : role_units()) {
    if (!t.find(host)->has(role)) disable.insert(disable.end(), units.begin(), units.end());
  }
  run_checked(ssh_command(t, o, host, disable), 60s);
  return note;
}

void machines_up(const topo::Topology& t, const MachinesOptions& o) {
  if (::geteuid() != 0) throw std::runtime_error("machines up: needs root (namespaces, nspawn)");
  if (!fs::exists(o.script)) throw std::runtime_error("machines up: no " + o.script);
  client_of(t);  // SSH comes from there
  const auto started = Clock::now();
  std::error_code ec;
  const bool fresh = !fs::exists(o.state_dir);
  if (!fresh && !fs::exists(o.state_dir + "/" + kMarker) && !fs::is_empty(o.state_dir, ec)) {
    throw std::runtime_error("machines up: " + o.state_dir +
                             " exists and holds something else (no " + kMarker + ")");
  }
  fs::create_directories(o.state_dir + "/ssh");
  fs::permissions(o.state_dir + "/ssh", fs::perms::owner_all, fs::perm_options::replace);
  std::ofstream(o.state_dir + "/" + kMarker) << "made by webstack machines up\n";

  StepPrinter step(stdout);
  step("root file system ready in " + o.cache_dir, [&] {
    run_checked({o.script, "rootfs", o.cache_dir}, 15min);
  });
  if (!fs::exists(key_path(o))) {
    run_checked({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "webstack-machines", "-f",
                 key_path(o)});
  }
  try {
    step("network namespaces", [&] { lab::network_up(t); });
    for (const auto& host : machine_hosts(t)) {
      step(host + " booted", [&] {
        run_checked({o.script, "boot", host, lab::host_namespace(t, host), o.cache_dir,
                     o.state_dir + "/machines", key_path(o) + ".pub"},
                    3min);
      });
    }
    // The administrators' view: each answers SSH from the client host.
    for (const auto& host : machine_hosts(t)) {
      step.note(host + " answers SSH from the client host",
                [&] { return ready_over_ssh(t, o, host); });
    }
  } catch (...) {
    stop_all(t, o);
    try {
      lab::network_down(t);
    } catch (const std::exception&) {
      // the original error says more
    }
    throw;
  }
  std::printf("machines: %zu machines up in %.1f s; ssh from the client host: %s\n",
              machine_hosts(t).size(), seconds_since(started),
              describe(ssh_command(t, o, machine_hosts(t).front(), {"hostname"})).c_str());
}

void machines_down(const topo::Topology& t, const MachinesOptions& o, bool purge) {
  std::string failed;
  if (fs::exists(o.state_dir + "/machines")) failed = stop_all(t, o);
  lab::network_down(t);
  if (!failed.empty()) throw std::runtime_error("machines down: " + failed);
  if (purge && fs::exists(o.state_dir)) {
    if (!fs::exists(o.state_dir + "/" + kMarker)) {
      throw std::runtime_error("machines down --purge: " + o.state_dir + " has no " + kMarker +
                               "; not removing what machines up did not make");
    }
    fs::remove_all(o.state_dir);
  }
}

}  // namespace webstack::hosts
