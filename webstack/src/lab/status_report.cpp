// The lab's status shown: as JSON (`webstack status --json`, the dashboard) and as text
// (`webstack status`, and the services `webstack up` lists).
#include <fmt/format.h>
#include <boost/json.hpp>

#include <cstdio>
#include <sstream>
#include <string>

#include "common/text.hpp"
#include "lab/network.hpp"
#include "lab/status.hpp"

namespace webstack::lab {

namespace {

using topo::Topology;

boost::json::object service_json(const ServiceState& s) {
  boost::json::object o;
  o["name"] = s.name;
  o["up"] = s.up;
  o["pid"] = s.pid > 0 ? boost::json::value(s.pid) : boost::json::value(nullptr);
  o["uptime_s"] = s.up && s.seconds >= 0 ? boost::json::value(s.seconds) : boost::json::value(0);
  o["user"] = s.user;
  o["paused"] = s.paused;
  if (!s.known) o["error"] = s.text;
  return o;
}

}  // namespace

void print_services(const Topology& t, const std::vector<ServiceRef>& services, std::FILE* out) {
  auto show = [out](const ServiceRef& s) {
    std::fprintf(out, "    %-17s %s\n", s.name.c_str(),
                 tools::service_state(s.name, s.dir).text.c_str());
  };
  for (const auto& h : t.hosts) {
    std::fprintf(out, "  %-12s %-15s ns %s\n", h.name.c_str(), h.address.c_str(),
                 host_namespace(t, h.name).c_str());
    for (const auto& s : services)
      if (s.host == h.name) show(s);
  }
  std::fprintf(out, "  %-12s %-15s root namespace\n", "(edge)", "127.0.0.1");
  for (const auto& s : services)
    if (s.host.empty()) show(s);
  std::fflush(out);
}

namespace {

boost::json::array hosts_json(const LabStatus& s, bool rulesets) {
  boost::json::array hosts;
  for (const auto& h : s.hosts) {
    boost::json::object o;
    o["name"] = h.name;
    o["address"] = h.address;
    o["namespace_ok"] = h.namespace_ok;
    o["link_up"] = h.link_up;
    boost::json::array svcs;
    for (const auto& sv : h.services) svcs.push_back(service_json(sv));
    o["services"] = std::move(svcs);
    if (rulesets) o["firewall"] = h.firewall;
    if (!h.firewall_error.empty()) o["firewall_error"] = h.firewall_error;
    hosts.push_back(std::move(o));
  }
  return hosts;
}

boost::json::array load_balancers_json(const LabStatus& s) {
  boost::json::array lbs;
  for (const auto& lb : s.load_balancers) {
    boost::json::object o;
    o["host"] = lb.host;
    boost::json::array servers;
    for (const auto& sv : lb.servers) {
      servers.push_back(boost::json::object{{"name", sv.name},
                                            {"status", sv.status},
                                            {"check", sv.check},
                                            {"sessions", sv.sessions}});
    }
    o["servers"] = std::move(servers);
    if (!lb.error.empty()) o["error"] = lb.error;
    lbs.push_back(std::move(o));
  }
  return lbs;
}

boost::json::object primary_json(const PrimaryReport& p) {
  boost::json::object o;
  o["host"] = p.host;
  o["read_only"] = p.read_only;
  o["gtid_binlog_pos"] = p.gtid_binlog_pos;
  o["semi_sync"] = p.semi_sync;
  if (!p.error.empty()) o["error"] = p.error;
  return o;
}

boost::json::array replication_json(const LabStatus& s) {
  boost::json::array repl;
  for (const auto& r : s.replication) {
    boost::json::object o;
    o["host"] = r.host;
    o["io_running"] = r.io_running;
    o["sql_running"] = r.sql_running;
    o["lag_s"] = r.lag_s ? boost::json::value(*r.lag_s) : boost::json::value(nullptr);
    o["last_error"] = r.last_error;
    if (!r.error.empty()) o["error"] = r.error;
    repl.push_back(std::move(o));
  }
  return repl;
}

boost::json::array virtual_addresses_json(const LabStatus& s) {
  boost::json::array vips;
  for (const auto& [vip, holders] : s.virtual_addresses) {
    boost::json::object o;
    o["address"] = vip;
    boost::json::array h;
    for (const auto& name : holders) h.push_back(boost::json::value(name));
    o["held_by"] = std::move(h);
    vips.push_back(std::move(o));
  }
  return vips;
}

boost::json::object monitoring_json(const LabStatus& s) {
  boost::json::object mon;
  const auto num = [](double v) {
    return v < 0 ? boost::json::value(nullptr) : boost::json::value(v);
  };
  boost::json::object figures;
  for (const auto& [host, f] : s.figures) {
    boost::json::object o;
    o["requests_per_s"] = num(f.requests_per_s);
    o["errors_5xx_per_s"] = num(f.errors_5xx_per_s);
    o["p99_s"] = num(f.p99_s);
    o["p50_s"] = num(f.p50_s);
    o["replication_lag_s"] = num(f.replication_lag_s);
    o["alerts"] = f.alerts;
    figures[host] = std::move(o);
  }
  mon["hosts"] = std::move(figures);
  boost::json::array alerts;
  for (const auto& a : s.alerts) {
    boost::json::object o;
    o["alert"] = a.name;
    o["host"] = a.host;
    o["severity"] = a.severity;
    o["summary"] = a.summary;
    o["since"] = a.since;
    alerts.push_back(std::move(o));
  }
  mon["alerts"] = std::move(alerts);
  if (!s.monitoring_error.empty()) mon["error"] = s.monitoring_error;
  return mon;
}

boost::json::object failover_json(const LabStatus& s) {
  boost::json::object f;
  if (!s.failover_state.empty()) {
    try {
      f = boost::json::parse(s.failover_state).as_object();
    } catch (const std::exception& e) {
      f["error"] = std::string("not JSON: ") + e.what();
    }
  }
  if (!s.failover_error.empty()) f["error"] = s.failover_error;
  return f;
}

}  // namespace

std::string to_json(const LabStatus& s, bool rulesets) {
  boost::json::object root;
  root["lab"] = s.lab;
  root["up"] = s.up;
  root["state_dir"] = s.state_dir;
  if (!s.up) return boost::json::serialize(root);
  root["svscan_pid"] = s.svscan_pid;
  root["hosts"] = hosts_json(s, rulesets);
  boost::json::array edge;
  for (const auto& sv : s.edge) edge.push_back(service_json(sv));
  root["edge"] = boost::json::object{{"services", std::move(edge)}};
  root["load_balancers"] = load_balancers_json(s);
  if (s.primary) root["primary"] = primary_json(*s.primary);
  root["replication"] = replication_json(s);
  root["virtual_addresses"] = virtual_addresses_json(s);
  if (s.monitored) root["monitoring"] = monitoring_json(s);
  if (s.failover) root["failover"] = failover_json(s);
  boost::json::array errant;
  for (const auto& file : s.errant_files) errant.emplace_back(file);
  root["errant_transactions"] = std::move(errant);
  return boost::json::serialize(root);
}

std::string firewall_summary(const std::string& ruleset) {
  std::string out;
  bool gate = false;  // the failover agent's table (the database port's lease gate)
  std::istringstream in(ruleset);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("table ", 0) == 0) {
      gate = line.find(" webstack_fence ") != std::string::npos;
      if (gate) out += (out.empty() ? "" : ", ") + std::string("the database port's lease gate");
      continue;
    }
    if (gate) continue;
    const auto hook = line.find("hook ");
    const auto policy = line.find("policy ");
    if (hook == std::string::npos || policy == std::string::npos) continue;
    const auto name = line.substr(hook + 5, line.find(' ', hook + 5) - hook - 5);
    auto verdict = line.substr(policy + 7);
    verdict = verdict.substr(0, verdict.find(';'));
    out += fmt::format("{}{} {}", out.empty() ? "" : ", ", name, verdict);
  }
  return out.empty() ? (text::trim(ruleset).empty() ? "none" : "no base chain") : out;
}

namespace {

std::string figure(double v, const char* format) {
  return v < 0 ? std::string("-") : fmt::format(fmt::runtime(format), v);
}

// Per host, the headline figures Prometheus has, and the firing alerts.
void print_failover(const LabStatus& s, std::FILE* out) {
  std::fprintf(out, "\ndatabase failover: automatic\n");
  if (!s.failover_error.empty()) {
    std::fprintf(out, "  error: %s\n", s.failover_error.c_str());
    return;
  }
  try {
    const auto v = boost::json::parse(s.failover_state).as_object();
    const auto text = [&](const char* k) {
      const auto* p = v.if_contains(k);
      return p != nullptr && p->is_string() ? std::string(p->as_string()) : std::string();
    };
    const auto flag = [&](const char* k) {
      const auto* p = v.if_contains(k);
      return p != nullptr && p->is_bool() && p->as_bool();
    };
    std::fprintf(out, "  primary %s, %s%s\n", text("primary").c_str(),
                 flag("writable_primary") ? "writable" : "NOT writable (the manager is deciding)",
                 flag("paused") ? "; PAUSED (`webstack failover resume`)" : "");
    if (!text("last_action").empty()) {
      std::fprintf(out, "  last action: %s\n", text("last_action").c_str());
    }
  } catch (const std::exception& e) {
    std::fprintf(out, "  error: the manager's state is not JSON: %s\n", e.what());
  }
}

void print_monitoring(const LabStatus& s, std::FILE* out) {
  std::fprintf(out, "\nmonitoring (Prometheus, last 10 s):\n");
  if (!s.monitoring_error.empty()) {
    std::fprintf(out, "  error: %s\n", s.monitoring_error.c_str());
    return;
  }
  std::fprintf(out, "  %-12s %9s %8s %9s %8s %7s\n", "HOST", "REQ/S", "5XX/S", "P99_MS", "LAG_S",
               "ALERTS");
  for (const auto& h : s.hosts) {
    const auto it = s.figures.find(h.name);
    const monitoring::HostFigures f =
        it == s.figures.end() ? monitoring::HostFigures{} : it->second;
    std::fprintf(out, "  %-12s %9s %8s %9s %8s %7d\n", h.name.c_str(),
                 figure(f.requests_per_s, "{:.1f}").c_str(),
                 figure(f.errors_5xx_per_s, "{:.2f}").c_str(),
                 figure(f.p99_s < 0 ? -1 : f.p99_s * 1000, "{:.1f}").c_str(),
                 figure(f.replication_lag_s, "{:.0f}").c_str(), f.alerts);
  }
  std::fprintf(out, "  firing alerts: %zu%s\n", s.alerts.size(),
               s.alerts.empty() ? "" : " (`webstack alerts` lists them)");
  for (const auto& a : s.alerts) {
    std::fprintf(out, "    %s %s (%s)\n", a.name.c_str(), a.host.empty() ? "-" : a.host.c_str(),
                 a.severity.c_str());
  }
}

void print_service_row(std::FILE* out, const char* host, const char* addr, const char* ns,
                       const ServiceState& sv) {
  std::fprintf(out, "%-12s %-18s %-4s %-18s %-6s %8s %10s  %s\n", host, addr, ns, sv.name.c_str(),
               !sv.known   ? "?"
               : sv.paused ? "paused"
               : sv.up     ? "up"
                           : "down",
               sv.pid > 0 ? std::to_string(sv.pid).c_str() : "-",
               sv.up && sv.seconds >= 0 ? std::to_string(sv.seconds).c_str() : "-",
               sv.user.empty() ? "-" : sv.user.c_str());
}

// The table of every host's services, then the edge's.
void print_services_table(const LabStatus& s, std::FILE* out) {
  std::fprintf(out, "%-12s %-18s %-4s %-18s %-6s %8s %10s  %s\n", "HOST", "ADDRESS", "NS",
               "SERVICE", "STATE", "PID", "UPTIME_S", "USER");
  for (const auto& h : s.hosts) {
    const char* ns = !h.namespace_ok ? "BAD" : h.link_up ? "ok" : "down";
    if (h.services.empty()) {
      std::fprintf(out, "%-12s %-18s %-4s -\n", h.name.c_str(), h.address.c_str(), ns);
    }
    bool first = true;
    for (const auto& sv : h.services) {
      print_service_row(out, first ? h.name.c_str() : "", first ? h.address.c_str() : "",
                        first ? ns : "", sv);
      first = false;
    }
  }
  bool first = true;
  for (const auto& sv : s.edge) {
    print_service_row(out, first ? "(edge)" : "", first ? "127.0.0.1" : "", first ? "root" : "",
                      sv);
    first = false;
  }
}

void print_firewalls(const LabStatus& s, std::FILE* out, bool rulesets) {
  std::fprintf(out, "\nfirewalls (nftables, per host; policies of the base chains):\n");
  for (const auto& h : s.hosts) {
    std::fprintf(out, "  %-12s %s\n", h.name.c_str(),
                 !h.firewall_error.empty() ? ("error: " + h.firewall_error).c_str()
                 : h.namespace_ok          ? firewall_summary(h.firewall).c_str()
                                           : "-");
    if (rulesets && !h.firewall.empty()) {
      std::istringstream in(h.firewall);
      for (std::string line; std::getline(in, line);) std::fprintf(out, "      %s\n", line.c_str());
    }
  }
}

void print_virtual_addresses(const LabStatus& s, std::FILE* out) {
  for (const auto& [vip, holders] : s.virtual_addresses) {
    std::string who;
    for (const auto& h : holders) who += (who.empty() ? "" : ", ") + h;
    std::fprintf(out, "\nvirtual address %s: %s\n", vip.c_str(),
                 holders.empty()       ? "held by no load balancer (the site is unreachable)"
                 : holders.size() == 1 ? ("held by " + who).c_str()
                                       : ("held by several: " + who + " (split brain)").c_str());
  }
}

void print_load_balancers(const LabStatus& s, std::FILE* out) {
  for (const auto& lb : s.load_balancers) {
    std::fprintf(out, "\nload balancer %s, backend web:\n", lb.host.c_str());
    if (!lb.error.empty()) {
      std::fprintf(out, "  error: %s\n", lb.error.c_str());
      continue;
    }
    std::fprintf(out, "  %-14s %-10s %-10s %8s\n", "SERVER", "STATUS", "CHECK", "SESSIONS");
    for (const auto& sv : lb.servers) {
      std::fprintf(out, "  %-14s %-10s %-10s %8lld\n", sv.name.c_str(), sv.status.c_str(),
                   sv.check.c_str(), sv.sessions);
    }
  }
}

void print_replication(const LabStatus& s, std::FILE* out) {
  if (s.primary || !s.replication.empty()) std::fprintf(out, "\nreplication:\n");
  if (s.primary) {
    if (!s.primary->error.empty()) {
      std::fprintf(out, "  %-12s primary  error: %s\n", s.primary->host.c_str(),
                   s.primary->error.c_str());
    } else {
      std::fprintf(out, "  %-12s primary  read_only=%d gtid_binlog_pos=%s semi-sync=%s\n",
                   s.primary->host.c_str(), s.primary->read_only ? 1 : 0,
                   s.primary->gtid_binlog_pos.c_str(),
                   s.primary->semi_sync == "off" ? "OFF (fallen back to asynchronous)"
                                                 : s.primary->semi_sync.c_str());
    }
  }
  for (const auto& r : s.replication) {
    if (!r.error.empty()) {
      std::fprintf(out, "  %-12s replica  error: %s\n", r.host.c_str(), r.error.c_str());
      continue;
    }
    std::fprintf(out, "  %-12s replica  io=%s sql=%s lag=%s%s%s\n", r.host.c_str(),
                 r.io_running ? "Yes" : "No", r.sql_running ? "Yes" : "No",
                 r.lag_s ? fmt::format("{}s", *r.lag_s).c_str() : "NULL",
                 r.last_error.empty() ? "" : " last_error=", r.last_error.c_str());
  }
}

void print_errant(const LabStatus& s, std::FILE* out) {
  if (!s.errant_files.empty()) {
    std::fprintf(out,
                 "\ntransactions of diverged nodes, saved by `webstack db rebuild` (the primary "
                 "never had them; look, then delete):\n");
    for (const auto& file : s.errant_files) std::fprintf(out, "  %s\n", file.c_str());
  }
}

}  // namespace

void print_status(const LabStatus& s, std::FILE* out, bool rulesets) {
  if (!s.up) {
    std::fprintf(out, "lab %s is down (no s6-svscan running for %s)\n", s.lab.c_str(),
                 s.state_dir.c_str());
    return;
  }
  std::fprintf(out, "lab %s up (s6-svscan pid %d, state %s)\n\n", s.lab.c_str(), s.svscan_pid,
               s.state_dir.c_str());
  print_services_table(s, out);
  print_firewalls(s, out, rulesets);
  print_virtual_addresses(s, out);
  if (s.failover) print_failover(s, out);
  if (s.monitored) print_monitoring(s, out);
  print_load_balancers(s, out);
  print_replication(s, out);
  print_errant(s, out);
  std::fflush(out);
}

}  // namespace webstack::lab
