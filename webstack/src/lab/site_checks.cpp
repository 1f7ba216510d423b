// The last steps of `webstack up`: the site checked from the client host (through every
// load balancer and virtual address), keepalived settled, the edge and Prometheus seeing
// every target up.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "common/process.hpp"
#include "common/text.hpp"
#include "lab/monitoring.hpp"
#include "lab/network.hpp"
#include "lab/paths.hpp"
#include "lab/site_internal.hpp"
#include "lab/status.hpp"
#include "lab/tls.hpp"
#include "tools/haproxy.hpp"

namespace webstack::lab {

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using topo::Role;
using topo::Topology;

// Every scrape target of the monitor host's Prometheus reports up (asked from inside
// that host: its API is not published beyond the edge).
void wait_scrape_targets(const Topology& t, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  std::string last;
  for (;;) {
    try {
      const auto targets = monitoring::scrape_targets(t);
      last.clear();
      for (const auto& target : targets) {
        if (target.health != "up") {
          last += fmt::format("\n  {} {} ({}): {} {}", target.job, target.host, target.url,
                              target.health, target.error);
        }
      }
      // The blackbox probe's scrape is up even when the probe fails: the site itself must
      // answer it too (through the load balancers, over HTTPS, as a client).
      for (const auto& [host, ok] : monitoring::query_by_host(t, "probe_success")) {
        if (ok != 1) last += fmt::format("\n  the probe of the site via {} fails", host);
      }
      if (!targets.empty() && last.empty()) return;
      if (targets.empty()) last = " no targets yet";
    } catch (const std::exception& e) {
      last = e.what();
    }
    if (Clock::now() > deadline) {
      throw std::runtime_error(fmt::format("Prometheus does not see every target up after {} ms:{}",
                                           timeout.count(), last));
    }
    std::this_thread::sleep_for(250ms);
  }
}

// The site answers /readyz through every load balancer, from the client host, and every
// web host has been seen serving through the load balancers.
// (hardened: over HTTPS by the site's name, the chain verified against the lab CA; the
// site's own certificate when the topology gives one, which the system trust store must
// then know.)
// `host_header`: ask for another server name than the site's (a benchmark peer,
// "php.bench"): every web host must answer for it too.
void wait_site(const Topology& t, const SiteOptions& o, std::chrono::milliseconds timeout,
               const std::string& host_header = "") {
  const bool tls = o.profile == render::Profile::Hardened;
  const auto client = t.with_role(Role::Client).front();
  const auto client_ns = host_namespace(t, client->name);
  std::set<std::string> want;
  for (const auto* w : t.with_role(Role::Web)) want.insert(w->name);
  const auto deadline = Clock::now() + timeout;
  // Every balancer by its own address, then the virtual addresses (some balancer holds
  // each: keepalived has elected).
  std::vector<std::string> addresses;
  for (const auto* lb : t.with_role(Role::LoadBalancer)) addresses.push_back(lb->address);
  for (const auto& vip : t.virtual_addresses) addresses.push_back(vip);
  for (const auto& address : addresses) {
    const std::string url = tls ? fmt::format("https://{}:{}/readyz", t.site_name, t.https_port)
                                : fmt::format("http://{}:{}/readyz", address, t.http_port);
    std::vector<std::string> curl = {
        "ip",         "netns", "exec",      client_ns, "curl",
        "-s",         "-o",    "/dev/null", "-w",      "%{http_code} %header{x-served-by}",
        "--max-time", "2"};
    if (tls) {
      curl.insert(curl.end(),
                  {"--resolve", fmt::format("{}:{}:{}", t.site_name, t.https_port, address)});
      if (t.tls_certificate.empty())
        curl.insert(curl.end(), {"--cacert", lab_ca_path(o.state_dir)});
    }
    if (!host_header.empty()) curl.insert(curl.end(), {"-H", "Host: " + host_header});
    curl.push_back(url);
    std::set<std::string> seen;
    std::string last;
    for (;;) {
      const auto r = run(curl, 5s);
      last = text::trim(r.out + " " + r.err);
      if (r.exit_code == 0 && r.out.starts_with("200 ")) {
        seen.insert(text::trim(r.out.substr(4)));
        if (std::includes(seen.begin(), seen.end(), want.begin(), want.end())) break;
        continue;
      }
      if (Clock::now() > deadline) {
        throw std::runtime_error(
            fmt::format("{}{} via {} does not answer 200 from {} after {} ms (last: {})", url,
                        host_header.empty() ? "" : " (Host: " + host_header + ")", address,
                        client->name, timeout.count(), last));
      }
      std::this_thread::sleep_for(250ms);
    }
  }
}

// keepalived has settled: each virtual address is held by exactly its preferred balancer
// (the i-th address by the i-th balancer, as render.cpp gives them priorities). A
// balancer that started late takes its address back only after preempt_delay; until then
// the address could move under the first requests, and with it the round-robin state.
void wait_preferred_holders(const Topology& t, std::chrono::milliseconds timeout) {
  const auto lbs = t.with_role(Role::LoadBalancer);
  const auto deadline = Clock::now() + timeout;
  for (std::size_t i = 0; i < t.virtual_addresses.size(); ++i) {
    const std::string& vip = t.virtual_addresses[i];
    const std::string& want = lbs[i % lbs.size()]->name;
    for (;;) {
      const auto holders = address_holders(t, vip);
      if (holders == std::vector<std::string>{want}) break;
      if (Clock::now() > deadline) {
        std::string who;
        for (const auto& h : holders) who += (who.empty() ? "" : ", ") + h;
        throw std::runtime_error(fmt::format("{} is held by {} after {} ms, not by {} alone", vip,
                                             who.empty() ? "no balancer" : who, timeout.count(),
                                             want));
      }
      std::this_thread::sleep_for(200ms);  // keepalived's advert interval in the lab
    }
  }
}

// The edge's health checks (TCP, every second, up after two) find every load balancer,
// so that 127.0.0.1:<edge_port> answers as soon as `up` returns.
void wait_edge(const StatePaths& p, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  std::string last;
  for (;;) {
    try {
      const auto servers = tools::haproxy_servers(p.run + "/edge/haproxy.sock", "lb");
      last.clear();
      for (const auto& s : servers)
        if (s.status != "UP") last += (last.empty() ? "" : ", ") + s.name + " " + s.status;
      if (last.empty() && !servers.empty()) return;
    } catch (const std::exception& e) {
      last = e.what();
    }
    if (Clock::now() > deadline) {
      throw std::runtime_error(fmt::format(
          "the edge does not see every load balancer up after {} ms: {}", timeout.count(), last));
    }
    std::this_thread::sleep_for(100ms);
  }
}

}  // namespace

// The site, seen from the client host, from the edge and by Prometheus.
void detail::check_site(const Topology& t, const SiteOptions& o, const StatePaths& p,
                        StepPrinter& step) {
  step("site answers through the load balancer (from client)",
       [&] { wait_site(t, o, o.site_timeout); });
  if (!t.virtual_addresses.empty()) {
    step("each virtual address held by its preferred load balancer",
         [&] { wait_preferred_holders(t, o.site_timeout); });
  }
  for (const auto& peer : o.peers) {
    step("benchmark peer " + peer + ".bench answers on every web host",
         [&] { wait_site(t, o, o.site_timeout, peer + ".bench"); });
  }
  step("edge sees every load balancer up", [&] { wait_edge(p, o.site_timeout); });
  if (t.monitor() != nullptr) {
    step("monitoring: Prometheus scrapes every target, the probe reaches the site",
         [&] { wait_scrape_targets(t, o.site_timeout); });
  }
}

}  // namespace webstack::lab
