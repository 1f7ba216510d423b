#include "lab/control.hpp"

#include <signal.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <thread>

#include "common/process.hpp"
#include "common/text.hpp"
#include "common/time.hpp"
#include "lab/network.hpp"
#include "lab/paths.hpp"
#include "lab/status.hpp"

namespace webstack::lab {

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

struct Named {
  ServiceAction action;
  const char* name;
};
constexpr Named kActions[] = {
    {ServiceAction::Stop, "stop"},       {ServiceAction::Start, "start"},
    {ServiceAction::Restart, "restart"}, {ServiceAction::Kill, "kill"},
    {ServiceAction::Pause, "pause"},     {ServiceAction::Resume, "resume"},
    {ServiceAction::Reload, "reload"},
};

std::string services_of_host(const std::vector<ServiceRef>& refs, const std::string& host) {
  std::string names;
  for (const auto& r : refs) {
    if (r.host != host) continue;
    if (!names.empty()) names += ", ";
    names += r.name;
  }
  return names.empty() ? "none" : names;
}

// The process group s6 started the service in (s6-supervise makes each service a session
// leader, so Nginx's workers share their master's group); just the pid otherwise.
pid_t group_of(int pid) {
  const pid_t pgid = ::getpgid(pid);
  return pgid == pid ? -pid : pid;
}

void signal_service(const ServiceTarget& s, int pid, int sig) {
  if (::kill(group_of(pid), sig) != 0 && errno != ESRCH) {
    throw std::runtime_error(
        fmt::format("cannot signal {} (pid {}): {}", s.label(), pid, std::strerror(errno)));
  }
}

void s6_svc(const ServiceTarget& s, const char* flag) {
  tools::s6_svc(s.dir, flag);
}

// Polls s6-svstat until `done` holds; throws after `timeout` with the last state.
template <class Pred>
ServiceState wait_state(const ServiceTarget& s, std::chrono::milliseconds timeout,
                        const char* wanted, Pred done) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    auto st = tools::service_state(s.service, s.dir);
    if (st.known && done(st)) return st;
    if (Clock::now() > deadline) {
      throw std::runtime_error(fmt::format("{} is not {} after {} ms (s6-svstat: {})", s.label(),
                                           wanted, timeout.count(), st.text));
    }
    std::this_thread::sleep_for(50ms);
  }
}

// The pid of the HAProxy worker answering on the stats socket `sock`; empty when none does.
std::string haproxy_worker(const std::string& sock) {
  try {
    const auto info = tools::haproxy_command(sock, "show info\n");
    const auto at = info.find("\nPid: ");
    return at == std::string::npos ? std::string()
                                   : info.substr(at + 6, info.find('\n', at + 1) - at - 6);
  } catch (const std::exception&) {
    return std::string();
  }
}

void restart_or_kill(const ServiceTarget& s, ServiceAction action, const ServiceState& before,
                     std::chrono::milliseconds timeout, Clock::time_point t0, ServiceChange& c) {
  if (!before.up || before.pid <= 0) {
    throw std::runtime_error(
        fmt::format("{} is not running ({}): use start", s.label(), before.text));
  }
  if (action == ServiceAction::Restart) {
    s6_svc(s, "-r");
    signal_service(s, before.pid, SIGCONT);
  } else {
    signal_service(s, before.pid, SIGKILL);
  }
  const auto st = wait_state(s, timeout, "running again", [&](const ServiceState& x) {
    return x.up && x.pid > 0 && x.pid != before.pid;
  });
  c.new_pid = st.pid;
  c.summary = fmt::format("{} {} pid {}; s6 started pid {}, {:.0f} ms later", s.label(),
                          action == ServiceAction::Kill ? "killed (SIGKILL to its process group)"
                                                        : "restarted (SIGTERM)",
                          before.pid, st.pid, ms_since(t0));
}

void pause_or_resume(const ServiceTarget& s, ServiceAction action, const ServiceState& before,
                     std::chrono::milliseconds timeout, ServiceChange& c) {
  if (!before.up || before.pid <= 0) {
    throw std::runtime_error(fmt::format("{} is not running ({})", s.label(), before.text));
  }
  const bool pause = action == ServiceAction::Pause;
  signal_service(s, before.pid, pause ? SIGSTOP : SIGCONT);
  wait_state(s, timeout, pause ? "paused" : "resumed",
             [&](const ServiceState& x) { return x.paused == pause; });
  c.summary = fmt::format("{} pid {} {}", s.label(), before.pid,
                          pause ? "paused (SIGSTOP to its process group)" : "resumed (SIGCONT)");
}

void reload_haproxy(const ServiceTarget& s, const std::string& state_dir,
                    const ServiceState& before, std::chrono::milliseconds timeout,
                    Clock::time_point t0, ServiceChange& c) {
  // The worker answering on the stats socket changes once the new config is live.
  const std::string sock = StatePaths(state_dir).haproxy_socket(s.host);
  const std::string old_worker = haproxy_worker(sock);
  s6_svc(s, "-2");  // SIGUSR2 to the master
  const auto deadline = Clock::now() + timeout;
  std::string now = haproxy_worker(sock);
  while (now.empty() || now == old_worker) {
    if (Clock::now() > deadline) {
      throw std::runtime_error(fmt::format(
          "{}: no new worker within {} ms of SIGUSR2 (a config error? `webstack logs {}`)",
          s.label(), timeout.count(), s.label()));
    }
    std::this_thread::sleep_for(50ms);  // poll interval
    now = haproxy_worker(sock);
  }
  c.old_worker = old_worker;
  c.new_worker = now;
  c.summary = fmt::format(
      "{} reloaded (SIGUSR2 to the master, pid {}): worker {} replaced {} in {:.0f} ms; "
      "the old one finishes its connections",
      s.label(), before.pid, now, old_worker, ms_since(t0));
}

void reload_service(const ServiceTarget& s, const std::string& state_dir,
                    const ServiceState& before, std::chrono::milliseconds timeout,
                    Clock::time_point t0, ServiceChange& c) {
  if (!before.up || before.pid <= 0) {
    throw std::runtime_error(fmt::format("{} is not running ({})", s.label(), before.text));
  }
  if (s.service == "haproxy") {
    reload_haproxy(s, state_dir, before, timeout, t0, c);
  } else if (s.service == "nginx" || s.service == "keepalived" || s.service == "prometheus" ||
             s.service == "alertmanager") {
    s6_svc(s, "-h");
    c.summary = fmt::format("{} reloaded (SIGHUP to pid {})", s.label(), before.pid);
  } else {
    throw std::invalid_argument(fmt::format(
        "{} has no reload (haproxy, nginx, keepalived, prometheus and alertmanager do): "
        "`webstack restart {}`",
        s.label(), s.label()));
  }
}

}  // namespace

ServiceAction parse_action(std::string_view name) {
  for (const auto& a : kActions)
    if (name == a.name) return a.action;
  throw std::invalid_argument(fmt::format("unknown service action \"{}\"", name));
}

ServiceTarget resolve_service(const topo::Topology& t, const std::string& state_dir,
                              std::string_view spec) {
  std::string host(spec), service;
  if (const auto slash = spec.find('/'); slash != std::string_view::npos) {
    host = spec.substr(0, slash);
    service = spec.substr(slash + 1);
  } else if (spec != "edge") {
    throw std::invalid_argument(
        fmt::format("\"{}\": expected HOST/SERVICE (e.g. web-01/nginx) or edge", spec));
  }
  if (host == "edge" && service.empty()) service = "edge";
  if (service == "app") service = "webstack-app";
  if (host != "edge" && t.find(host) == nullptr) {
    std::string hosts;
    for (const auto& h : t.hosts) hosts += (hosts.empty() ? "" : ", ") + h.name;
    throw std::invalid_argument(
        fmt::format("\"{}\": no host {} in lab {} (hosts: {}, edge)", spec, host, t.name, hosts));
  }
  const auto refs = scan_services(state_dir);
  const std::string ref_host = host == "edge" ? "" : host;
  for (const auto& r : refs) {
    if (r.host != ref_host || r.name != service) continue;
    return ServiceTarget{host, service, r.dir, StatePaths(state_dir).log_dir(host, service)};
  }
  throw std::invalid_argument(fmt::format("\"{}\": {} runs no service {} (it runs: {})", spec, host,
                                          service, services_of_host(refs, ref_host)));
}

ServiceChange control_service(const topo::Topology& t, const std::string& state_dir,
                              std::string_view spec, ServiceAction action,
                              std::chrono::milliseconds timeout) {
  if (::geteuid() != 0) throw std::runtime_error("controlling a lab's services needs root");
  require_up(t, state_dir);
  const auto s = resolve_service(t, state_dir, spec);
  const auto before = tools::service_state(s.service, s.dir);
  if (!before.known) throw std::runtime_error(fmt::format("{}: {}", s.label(), before.text));
  const auto t0 = Clock::now();
  const auto is_up = [](const ServiceState& st) { return st.up; };
  ServiceChange c;
  c.old_pid = before.up ? before.pid : -1;
  switch (action) {
    case ServiceAction::Stop: {
      s6_svc(s, "-d");
      // A paused service's other processes (Nginx's workers) must see the SIGTERM too.
      if (before.up && before.pid > 0) signal_service(s, before.pid, SIGCONT);
      wait_state(s, timeout, "down", [](const ServiceState& st) { return !st.up; });
      c.summary =
          fmt::format("{} stopped (was pid {}) in {:.0f} ms", s.label(), before.pid, ms_since(t0));
      break;
    }
    case ServiceAction::Start: {
      s6_svc(s, "-u");
      const auto st = wait_state(s, timeout, "up", is_up);
      c.new_pid = st.pid;
      c.summary = fmt::format("{} {} as pid {} in {:.0f} ms", s.label(),
                              before.up ? "already up" : "started", st.pid, ms_since(t0));
      break;
    }
    case ServiceAction::Restart:
    case ServiceAction::Kill:
      restart_or_kill(s, action, before, timeout, t0, c);
      break;
    case ServiceAction::Pause:
    case ServiceAction::Resume:
      pause_or_resume(s, action, before, timeout, c);
      break;
    case ServiceAction::Reload:
      reload_service(s, state_dir, before, timeout, t0, c);
      break;
  }
  c.ms = ms_since(t0);
  return c;
}

std::string service_log_file(const topo::Topology& t, const std::string& state_dir,
                             std::string_view spec) {
  const auto s = resolve_service(t, state_dir, spec);
  std::string file = s.log_dir + "/current";
  std::error_code ec;
  if (!fs::exists(file, ec)) {
    throw std::runtime_error(fmt::format("{} has no log yet ({} does not exist)", s.label(), file));
  }
  return file;
}

void set_link(const topo::Topology& t, std::string_view host, std::string_view state,
              std::FILE* out) {
  if (t.find(host) == nullptr) {
    std::string known;
    for (const auto& h : t.hosts) known += (known.empty() ? "" : ", ") + h.name;
    throw std::invalid_argument(
        fmt::format("no host \"{}\" in the topology (hosts: {})", host, known));
  }
  if (state != "down" && state != "up") {
    throw std::invalid_argument(fmt::format("link state must be down or up, got \"{}\"", state));
  }
  run_checked(in_host(t, host, {"ip", "link", "set", "eth0", std::string(state)}));
  std::fprintf(out, "%.*s: link eth0 %.*s\n", static_cast<int>(host.size()), host.data(),
               static_cast<int>(state.size()), state.data());
}

}  // namespace webstack::lab
