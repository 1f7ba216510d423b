#include "lab/status.hpp"

#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <fmt/format.h>
#include <boost/json.hpp>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>

#include "common/process.hpp"
#include "common/text.hpp"
#include "failover/sql_session.hpp"
#include "lab/database.hpp"
#include "lab/network.hpp"

namespace webstack::lab {

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using topo::Role;
using topo::Topology;

std::string first_line(const std::string& s) {
  return text::trim(s.substr(0, s.find('\n')));
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == sep) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(cur);
  return out;
}

long long to_ll(const std::string& s, long long fallback) {
  try {
    std::size_t used = 0;
    const long long v = std::stoll(s, &used);
    return used == s.size() ? v : fallback;
  } catch (const std::exception&) {
    return fallback;
  }
}

// The servers of `backend` in a "show stat" CSV.
std::vector<LbServer> parse_show_stat(const std::string& csv, const std::string& backend) {
  std::istringstream in(csv);
  std::map<std::string, std::size_t> col;
  std::vector<LbServer> out;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.starts_with("# ")) {
      const auto names = split(line.substr(2), ',');
      for (std::size_t i = 0; i < names.size(); ++i) col[names[i]] = i;
      continue;
    }
    if (line.empty() || col.empty()) continue;
    const auto f = split(line, ',');
    auto field = [&](const char* name) -> std::string {
      const auto it = col.find(name);
      return it != col.end() && it->second < f.size() ? f[it->second] : std::string();
    };
    if (field("pxname") != backend) continue;
    const auto sv = field("svname");
    if (sv == "BACKEND" || sv == "FRONTEND") continue;
    out.push_back({sv, field("status"), field("check_status"), to_ll(field("scur"), 0),
                   to_ll(field("stot"), 0)});
  }
  if (col.empty()) throw std::runtime_error("no CSV header in the answer to show stat");
  return out;
}

std::vector<std::string> mariadb_root(const std::string& state_dir, const std::string& host) {
  return {"mariadb", "--no-defaults",     "--socket=" + state_dir + "/run/" + host + "/mysqld.sock",
          "-uroot",  "--protocol=SOCKET", "--connect-timeout=3",
          "--batch"};
}

// "key: value" lines of a vertical (\G) result.
std::map<std::string, std::string> parse_vertical(const std::string& out) {
  std::map<std::string, std::string> kv;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with("***")) continue;
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    kv[text::trim(line.substr(0, colon))] = text::trim(line.substr(colon + 1));
  }
  return kv;
}

}  // namespace

ReplicaReport replica_report(const std::string& state_dir, const std::string& host) {
  ReplicaReport r;
  r.host = host;
  auto args = mariadb_root(state_dir, host);
  args.insert(args.end(), {"-e", "SHOW SLAVE STATUS\\G"});
  const auto res = run(args, 10s);
  if (res.exit_code != 0) {
    r.error = fmt::format("mariadb failed ({}): {}", res.exit_code, first_line(res.err));
    return r;
  }
  const auto kv = parse_vertical(res.out);
  if (kv.empty()) {
    r.error = "not a replica (SHOW SLAVE STATUS is empty)";
    return r;
  }
  auto get = [&](const char* k) {
    const auto it = kv.find(k);
    return it == kv.end() ? std::string() : it->second;
  };
  r.io_running = get("Slave_IO_Running") == "Yes";
  r.sql_running = get("Slave_SQL_Running") == "Yes";
  const auto lag = get("Seconds_Behind_Master");
  if (!lag.empty() && lag != "NULL") r.lag_s = to_ll(lag, -1);
  r.last_error = get("Last_Error");
  if (r.last_error.empty()) r.last_error = get("Last_IO_Error");
  return r;
}

PrimaryReport primary_report(const std::string& state_dir, const std::string& host) {
  PrimaryReport p;
  p.host = host;
  auto args = mariadb_root(state_dir, host);
  args.insert(args.end(), {"--skip-column-names", "-e",
                           "SELECT @@GLOBAL.read_only, @@GLOBAL.gtid_binlog_pos, "
                           "@@GLOBAL.rpl_semi_sync_master_enabled, " +
                               failover::global_status("RPL_SEMI_SYNC_MASTER_STATUS")});
  const auto res = run(args, 10s);
  if (res.exit_code != 0) {
    p.error = fmt::format("mariadb failed ({}): {}", res.exit_code, first_line(res.err));
    return p;
  }
  const auto f = split(first_line(res.out), '\t');
  p.read_only = f.empty() || f[0] != "0";
  if (f.size() > 1) p.gtid_binlog_pos = f[1];
  if (f.size() > 3) p.semi_sync = f[2] != "1" ? "disabled" : f[3] == "ON" ? "on" : "off";
  return p;
}

namespace {

// The effective user of `pid` per /proc/<pid>/status ("Uid: real effective ..."), by name.
std::string process_user(int pid) {
  std::istringstream in(read_text_or_empty(fmt::format("/proc/{}/status", pid)));
  for (std::string line; std::getline(in, line);) {
    if (!line.starts_with("Uid:")) continue;
    std::istringstream ids(line.substr(4));
    long long real = -1, effective = -1;
    ids >> real >> effective;
    if (effective < 0) return "";
    const passwd* pw = ::getpwuid(static_cast<uid_t>(effective));
    return pw != nullptr ? pw->pw_name : std::to_string(effective);
  }
  return "";
}

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

void parse_svstat(const std::string& line, ServiceState& st) {
  st.up = line.starts_with("up ");
  st.pid = -1;
  st.seconds = -1;
  if (const auto p = line.find("(pid "); p != std::string::npos) {
    st.pid = static_cast<int>(to_ll(line.substr(p + 5, line.find(')', p) - p - 5), -1));
  }
  // The first "<N> seconds".
  if (const auto s = line.find(" seconds"); s != std::string::npos) {
    auto b = s;
    while (b > 0 && std::isdigit(static_cast<unsigned char>(line[b - 1]))) --b;
    if (b < s) st.seconds = to_ll(line.substr(b, s - b), -1);
  }
}

ServiceState service_state(const std::string& name, const std::string& dir) {
  ServiceState st;
  st.name = name;
  const auto r = run({"s6-svstat", dir}, 5s);
  if (r.exit_code != 0) {
    st.text = "unknown: " + text::trim(r.err);
    return st;
  }
  st.known = true;
  st.text = text::trim(r.out);
  parse_svstat(st.text, st);
  if (st.up && st.pid > 0) {
    st.user = process_user(st.pid);
    st.paused = proc_state(st.pid) == 'T';
  }
  return st;
}

std::vector<ServiceRef> scan_services(const std::string& state_dir) {
  const std::string hosts = state_dir + "/hosts/";
  std::vector<ServiceRef> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(state_dir + "/service", ec)) {
    if (e.path().filename().string().starts_with(".")) continue;
    std::error_code ec2;
    const auto target = fs::read_symlink(e.path(), ec2).string();
    if (ec2 || !target.starts_with(hosts)) continue;
    // <host>/s6/<name> or s6/<name> (the edge)
    const auto rel = target.substr(hosts.size());
    const auto s6 = rel.find("s6/");
    if (s6 == std::string::npos) continue;
    ServiceRef s;
    s.host = s6 == 0 ? "" : rel.substr(0, s6 - 1);
    s.name = rel.substr(s6 + 3);
    s.dir = e.path().string();
    out.push_back(std::move(s));
  }
  std::sort(out.begin(), out.end(),
            [](const ServiceRef& a, const ServiceRef& b) { return a.dir < b.dir; });
  return out;
}

void print_services(const Topology& t, const std::vector<ServiceRef>& services, std::FILE* out) {
  auto show = [out](const ServiceRef& s) {
    std::fprintf(out, "    %-17s %s\n", s.name.c_str(), service_state(s.name, s.dir).text.c_str());
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

std::vector<LbServer> lb_servers(const std::string& state_dir, const std::string& lb_host) {
  return haproxy_servers(state_dir + "/run/" + lb_host + "/haproxy.sock", "web");
}

// Sends `command` to an HAProxy stats socket and returns everything it answers (HAProxy
// closes the connection after a non-interactive command).
std::string haproxy_command(const std::string& socket_path, const std::string& command) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof a.sun_path)
    throw std::runtime_error("socket path too long: " + socket_path);
  std::memcpy(a.sun_path, socket_path.c_str(), socket_path.size() + 1);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error(fmt::format("socket: {}", std::strerror(errno)));
  timeval tv{};
  tv.tv_sec = 3;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    const int e = errno;
    ::close(fd);
    throw std::runtime_error(
        fmt::format("cannot connect to {}: {}", socket_path, std::strerror(e)));
  }
  std::size_t sent = 0;
  while (sent < command.size()) {
    const auto n = ::send(fd, command.data() + sent, command.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) {
      const int e = errno;
      ::close(fd);
      throw std::runtime_error(
          fmt::format("cannot write to {}: {}", socket_path, std::strerror(e)));
    }
    sent += static_cast<std::size_t>(n);
  }
  std::string out;
  char buf[8192];
  for (;;) {
    const auto n = ::recv(fd, buf, sizeof buf, 0);
    if (n > 0) {
      out.append(buf, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int e = errno;
      ::close(fd);
      throw std::runtime_error(fmt::format("reading {}: {}", socket_path, std::strerror(e)));
    }
    break;
  }
  ::close(fd);
  return out;
}

std::vector<LbServer> haproxy_servers(const std::string& socket_path, const std::string& backend) {
  return parse_show_stat(haproxy_command(socket_path, "show stat\n"), backend);
}

int lab_svscan_pid(const std::string& state_dir) {
  const auto text = text::trim(read_text_or_empty(state_dir + "/run/s6-svscan.pid"));
  const int pid = static_cast<int>(to_ll(text, -1));
  if (!alive(pid)) return -1;
  auto cmd = read_text_or_empty(fmt::format("/proc/{}/cmdline", pid));
  std::replace(cmd.begin(), cmd.end(), '\0', ' ');
  if (cmd.find("s6-svscan") == std::string::npos ||
      cmd.find(state_dir + "/service") == std::string::npos) {
    return -1;
  }
  return pid;
}

std::vector<std::string> address_holders(const Topology& t, const std::string& address) {
  std::vector<std::string> out;
  for (const auto* lb : t.with_role(Role::LoadBalancer)) {
    const auto r = run(in_host(t, lb->name, {"ip", "-o", "-4", "addr", "show", "dev", "eth0"}), 5s);
    if (r.exit_code == 0 && r.out.find(" " + address + "/") != std::string::npos) {
      out.push_back(lb->name);
    }
  }
  return out;
}

LabStatus lab_status(const Topology& topology, const std::string& state_dir) {
  const Topology t = with_current_primary(topology, state_dir);
  LabStatus s;
  s.lab = t.name;
  s.state_dir = state_dir;
  s.svscan_pid = lab_svscan_pid(state_dir);
  s.up = s.svscan_pid > 0;
  if (!s.up) return s;

  const auto services = scan_services(state_dir);
  const auto net = status(t);
  for (const auto& h : t.hosts) {
    HostReport hr;
    hr.name = h.name;
    hr.address = h.address;
    for (const auto& n : net) {
      if (n.host != h.name) continue;
      hr.namespace_ok = n.ns_exists && n.address_ok;
      hr.link_up = n.link_up;
    }
    for (const auto& sv : services)
      if (sv.host == h.name) hr.services.push_back(service_state(sv.name, sv.dir));
    if (hr.namespace_ok) {
      const auto r = run(in_host(t, h.name, {"nft", "list", "ruleset"}), 5s);
      if (r.exit_code == 0) {
        hr.firewall = r.out;
      } else {
        hr.firewall_error = fmt::format("nft failed ({}): {}", r.exit_code, first_line(r.err));
      }
    }
    s.hosts.push_back(std::move(hr));
  }
  for (const auto& sv : services)
    if (sv.host.empty()) s.edge.push_back(service_state(sv.name, sv.dir));

  for (const auto* lb : t.with_role(Role::LoadBalancer)) {
    LbReport r;
    r.host = lb->name;
    try {
      r.servers = lb_servers(state_dir, lb->name);
    } catch (const std::exception& e) {
      r.error = e.what();
    }
    s.load_balancers.push_back(std::move(r));
  }
  for (const auto* db : t.with_role(Role::Database)) {
    if (db->db == topo::DbRole::Primary) {
      s.primary = primary_report(state_dir, db->name);
    } else {
      s.replication.push_back(replica_report(state_dir, db->name));
    }
  }
  for (const auto& vip : t.virtual_addresses) {
    s.virtual_addresses.emplace_back(vip, address_holders(t, vip));
  }
  {
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(state_dir + "/errant", ec)) {
      if (e.path().extension() == ".sql") s.errant_files.push_back(e.path().string());
    }
    std::sort(s.errant_files.begin(), s.errant_files.end());  // HOST-<UTC time>.sql
  }
  if (t.automatic_failover() &&
      std::any_of(services.begin(), services.end(),
                  [](const ServiceRef& r) { return r.name == "failover-manager"; })) {
    s.failover = true;
    try {
      s.failover_state = failover_state(t);
    } catch (const std::exception& e) {
      s.failover_error = e.what();
    }
  }
  if (t.monitor() != nullptr) {
    s.monitored = true;
    try {
      s.figures = monitoring::host_figures(t);
      s.alerts = monitoring::firing_alerts(t);
    } catch (const std::exception& e) {
      s.monitoring_error = e.what();
    }
  }
  return s;
}

std::string to_json(const LabStatus& s, bool rulesets) {
  boost::json::object root;
  root["lab"] = s.lab;
  root["up"] = s.up;
  root["state_dir"] = s.state_dir;
  if (!s.up) return boost::json::serialize(root);
  root["svscan_pid"] = s.svscan_pid;
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
  root["hosts"] = std::move(hosts);
  boost::json::array edge;
  for (const auto& sv : s.edge) edge.push_back(service_json(sv));
  root["edge"] = boost::json::object{{"services", std::move(edge)}};
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
  root["load_balancers"] = std::move(lbs);
  if (s.primary) {
    boost::json::object o;
    o["host"] = s.primary->host;
    o["read_only"] = s.primary->read_only;
    o["gtid_binlog_pos"] = s.primary->gtid_binlog_pos;
    o["semi_sync"] = s.primary->semi_sync;
    if (!s.primary->error.empty()) o["error"] = s.primary->error;
    root["primary"] = std::move(o);
  }
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
  root["replication"] = std::move(repl);
  boost::json::array vips;
  for (const auto& [vip, holders] : s.virtual_addresses) {
    boost::json::object o;
    o["address"] = vip;
    boost::json::array h;
    for (const auto& name : holders) h.push_back(boost::json::value(name));
    o["held_by"] = std::move(h);
    vips.push_back(std::move(o));
  }
  root["virtual_addresses"] = std::move(vips);
  if (s.monitored) {
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
    root["monitoring"] = std::move(mon);
  }
  if (s.failover) {
    boost::json::object f;
    if (!s.failover_state.empty()) {
      try {
        f = boost::json::parse(s.failover_state).as_object();
      } catch (const std::exception& e) {
        f["error"] = std::string("not JSON: ") + e.what();
      }
    }
    if (!s.failover_error.empty()) f["error"] = s.failover_error;
    root["failover"] = std::move(f);
  }
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
    out += (out.empty() ? "" : ", ") + name + " " + verdict;
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

}  // namespace

void print_status(const LabStatus& s, std::FILE* out, bool rulesets) {
  if (!s.up) {
    std::fprintf(out, "lab %s is down (no s6-svscan running for %s)\n", s.lab.c_str(),
                 s.state_dir.c_str());
    return;
  }
  std::fprintf(out, "lab %s up (s6-svscan pid %d, state %s)\n\n", s.lab.c_str(), s.svscan_pid,
               s.state_dir.c_str());
  std::fprintf(out, "%-12s %-18s %-4s %-18s %-6s %8s %10s  %s\n", "HOST", "ADDRESS", "NS",
               "SERVICE", "STATE", "PID", "UPTIME_S", "USER");
  auto svc_row = [out](const char* host, const char* addr, const char* ns, const ServiceState& sv) {
    std::fprintf(out, "%-12s %-18s %-4s %-18s %-6s %8s %10s  %s\n", host, addr, ns, sv.name.c_str(),
                 !sv.known   ? "?"
                 : sv.paused ? "paused"
                 : sv.up     ? "up"
                             : "down",
                 sv.pid > 0 ? std::to_string(sv.pid).c_str() : "-",
                 sv.up && sv.seconds >= 0 ? std::to_string(sv.seconds).c_str() : "-",
                 sv.user.empty() ? "-" : sv.user.c_str());
  };
  for (const auto& h : s.hosts) {
    const char* ns = !h.namespace_ok ? "BAD" : h.link_up ? "ok" : "down";
    if (h.services.empty()) {
      std::fprintf(out, "%-12s %-18s %-4s -\n", h.name.c_str(), h.address.c_str(), ns);
    }
    bool first = true;
    for (const auto& sv : h.services) {
      svc_row(first ? h.name.c_str() : "", first ? h.address.c_str() : "", first ? ns : "", sv);
      first = false;
    }
  }
  bool first = true;
  for (const auto& sv : s.edge) {
    svc_row(first ? "(edge)" : "", first ? "127.0.0.1" : "", first ? "root" : "", sv);
    first = false;
  }
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
  for (const auto& [vip, holders] : s.virtual_addresses) {
    std::string who;
    for (const auto& h : holders) who += (who.empty() ? "" : ", ") + h;
    std::fprintf(out, "\nvirtual address %s: %s\n", vip.c_str(),
                 holders.empty()       ? "held by no load balancer (the site is unreachable)"
                 : holders.size() == 1 ? ("held by " + who).c_str()
                                       : ("held by several: " + who + " (split brain)").c_str());
  }
  if (s.failover) print_failover(s, out);
  if (s.monitored) print_monitoring(s, out);
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
  if (!s.errant_files.empty()) {
    std::fprintf(out,
                 "\ntransactions of diverged nodes, saved by `webstack db rebuild` (the primary "
                 "never had them; look, then delete):\n");
    for (const auto& file : s.errant_files) std::fprintf(out, "  %s\n", file.c_str());
  }
  std::fflush(out);
}

}  // namespace webstack::lab
