#include "lab/rolling_restart.hpp"

#include <fmt/format.h>

#include <cstdlib>
#include <functional>
#include <stdexcept>
#include <thread>

#include "common/process.hpp"
#include "common/steps.hpp"
#include "common/text.hpp"
#include "common/time.hpp"
#include "lab/control.hpp"
#include "lab/network.hpp"
#include "lab/paths.hpp"
#include "lab/status.hpp"

namespace webstack::lab {

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
using topo::Role;

std::string stats_socket(const RollingRestartOptions& o, const std::string& lb) {
  return StatePaths(o.state_dir).haproxy_socket(lb);
}

// `set server web/<host> state <state>` on every load balancer; HAProxy answers nothing
// when it accepts the command.
void set_state(const topo::Topology& t, const RollingRestartOptions& o, const std::string& host,
               const char* state) {
  for (const auto* lb : t.with_role(Role::LoadBalancer)) {
    try {
      tools::set_server_state(stats_socket(o, lb->name), "web/" + host, state);
    } catch (const std::runtime_error& e) {
      throw std::runtime_error(lb->name + ": " + e.what());
    }
  }
}

// Polls `done` until it holds or `timeout` passes; `what` names it in the error.
void wait_until(const std::function<bool(std::string&)>& done, std::chrono::milliseconds timeout,
                const std::string& what) {
  const auto deadline = Clock::now() + timeout;
  std::string last;
  while (!done(last)) {
    if (Clock::now() > deadline) {
      throw std::runtime_error(
          fmt::format("{}: not after {} ms ({})", what, timeout.count(), last));
    }
    std::this_thread::sleep_for(100ms);  // poll interval
  }
}

// The server `host` of backend web on every balancer passes `pred` (a status row).
bool on_every_lb(const topo::Topology& t, const RollingRestartOptions& o, const std::string& host,
                 const std::function<bool(const LbServer&)>& pred, std::string& last) {
  for (const auto* lb : t.with_role(Role::LoadBalancer)) {
    bool found = false;
    for (const auto& s : tools::haproxy_servers(stats_socket(o, lb->name), "web")) {
      if (s.name != host) continue;
      found = true;
      last = fmt::format("{}: {} {} sessions {}", lb->name, host, s.status, s.sessions);
      if (!pred(s)) return false;
    }
    if (!found) {
      last = fmt::format("{} has no server {}", lb->name, host);
      return false;
    }
  }
  return true;
}

}  // namespace

void rolling_restart(const topo::Topology& t, const RollingRestartOptions& o, std::FILE* out) {
  require_up(t, o.state_dir);
  const auto t0 = Clock::now();
  StepPrinter step(out);
  const auto webs = t.with_role(Role::Web);
  for (const auto* web : webs) {
    const std::string& h = web->name;
    step.heading(h + ":");
    step("drain on every load balancer", [&] {
      set_state(t, o, h, "drain");
      wait_until(
          [&](std::string& last) {
            return on_every_lb(
                t, o, h, [](const LbServer& s) { return s.sessions == 0; }, last);
          },
          o.drain_timeout, h + " drained (no session left)");
    });
    step("restart webstack-app",
         [&] { control_service(t, o.state_dir, h + "/webstack-app", ServiceAction::Restart); });
    step("reload nginx (SIGHUP)", [&] {
      run_checked({"s6-svc", "-h", StatePaths(o.state_dir).service_link(h, "nginx")});
    });
    step("webstack-app ready (/readyz)", [&] {
      wait_until(
          [&](std::string& last) {
            const auto r =
                run(in_host(t, h,
                            {"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time",
                             "2", fmt::format("http://127.0.0.1:{}/readyz", t.app_port)}),
                    5s);
            last = text::trim(r.out + r.err);
            return r.out == "200";
          },
          o.ready_timeout, h + " webstack-app ready");
    });
    step("back in rotation, UP on every load balancer", [&] {
      set_state(t, o, h, "ready");
      wait_until(
          [&](std::string& last) {
            return on_every_lb(
                t, o, h, [](const LbServer& s) { return s.status == "UP"; }, last);
          },
          o.ready_timeout, h + " UP again");
    });
  }
  // The balancers last, one at a time: HAProxy takes its config as it is on disk now (a
  // new backend list, new timeouts) without closing a connection.
  for (const auto* lb : t.with_role(Role::LoadBalancer)) {
    step.note(lb->name + ": reload HAProxy", [&] {
      const auto c = control_service(t, o.state_dir, lb->name + "/haproxy", ServiceAction::Reload);
      return fmt::format("worker {} replaced {}", c.new_worker, c.old_worker);
    });
  }
  std::fprintf(out, "deployed %zu web host%s in %.1f s\n", webs.size(), webs.size() == 1 ? "" : "s",
               ms_since(t0) / 1000.0);
}

}  // namespace webstack::lab
