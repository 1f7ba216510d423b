#include "failover/manager.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>
#include <boost/json.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <thread>

#include <mysql.h>

#include "failover/decide.hpp"
#include "failover/sql_session.hpp"
#include "lab/process.hpp"

namespace webstack::failover {

namespace {

using namespace std::chrono_literals;
namespace json = boost::json;

// Set by SIGTERM/SIGINT, read by the manager's two threads (lock-free: safe in a handler).
std::atomic<int> g_stop{0};
static_assert(std::atomic<int>::is_always_lock_free);

void on_signal(int) {
  g_stop = 1;
}

void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;  // no SA_RESTART: poll() and sleeps return early
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
}

// One line on stdout (s6-log adds the timestamp).
template <typename... Args>
void say(fmt::format_string<Args...> f, Args&&... args) {
  std::fputs((fmt::format(f, std::forward<Args>(args)...) + "\n").c_str(), stdout);
  std::fflush(stdout);
}

std::string read_secret(const std::string& path) {
  std::string s = lab::trim(lab::read_text_or_empty(path));
  if (s.empty()) throw std::runtime_error("cannot read " + path + " (missing or empty)");
  return s;
}

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// Replaces `path` whole (a reader sees the old name or the new one).
void write_file_atomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::trunc);
    f << text;
    if (!f.flush()) throw std::runtime_error("cannot write " + tmp);
  }
  std::filesystem::rename(tmp, path);
}

// Digits removed: two reasons that differ only in their figures are the same news.
std::string shape_of(std::string s) {
  s.erase(std::remove_if(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }), s.end());
  return s;
}

// The SHOW SLAVE STATUS row's view of replication.
void read_replication(SqlSession& s, NodeView& v) {
  const auto rows = s.query("SHOW SLAVE STATUS");
  if (rows.empty()) return;
  const auto& r = rows.front();
  const auto get = [&](const char* k) {
    const auto it = r.find(k);
    return it == r.end() ? std::string() : it->second;
  };
  v.master_host = get("Master_Host");
  v.io_running = get("Slave_IO_Running") == "Yes";
  v.sql_running = get("Slave_SQL_Running") == "Yes";
  v.relay_applied = get("Relay_Master_Log_File") == get("Master_Log_File") &&
                    get("Exec_Master_Log_Pos") == get("Read_Master_Log_Pos");
}

NodeView probe_node(SqlSession& s, const DbNode& n) {
  NodeView v;
  v.name = n.name;
  v.address = n.address;
  try {
    const auto rows = s.query(
        "SELECT @@GLOBAL.read_only AS ro, @@GLOBAL.gtid_current_pos AS cur, "
        "@@GLOBAL.gtid_binlog_pos AS bin");
    if (rows.empty()) throw std::runtime_error("no answer to SELECT @@read_only");
    v.writable = rows.front().at("ro") == "0";
    v.gtid_current_pos = rows.front().at("cur");
    v.gtid_binlog_pos = rows.front().at("bin");
    read_replication(s, v);
    v.reachable = true;
  } catch (const std::exception& e) {
    v.error = e.what();
  }
  return v;
}

// The app's GET /api/info: {"db": {"nodes": [{"name": "10.77.0.11:3306", "reachable":
// true, "writable": true, ...}]}}. Node names there are address:port.
AppView probe_app(const AppEndpoint& a, const std::vector<DbNode>& db,
                  std::chrono::milliseconds timeout) {
  AppView v;
  v.name = a.name;
  const auto secs = fmt::format("{:.1f}", std::chrono::duration<double>(timeout).count());
  const auto r = lab::run({"curl", "-sS", "--fail", "--max-time", secs, a.url}, timeout + 2s);
  if (r.exit_code != 0) {
    v.error = lab::trim(r.err).substr(0, 120);
    return v;
  }
  try {
    const auto info = json::parse(r.out);
    for (const auto& node : info.at("db").at("nodes").as_array()) {
      const std::string name(node.at("name").as_string());
      for (const auto& d : db) {
        if (name == fmt::format("{}:{}", d.address, d.port) || name == d.name) {
          v.nodes.push_back(
              {d.name, node.at("reachable").as_bool(), node.at("writable").as_bool()});
        }
      }
    }
    v.answered = true;
  } catch (const std::exception& e) {
    v.error = std::string("not the app's /api/info: ") + e.what();
  }
  return v;
}

class Manager {
 public:
  explicit Manager(const ManagerConfig& c) : c_(c), decider_(initial_primary(c), c.failover_after) {
    const std::string password = read_secret(c.password_file);
    repl_password_ = read_secret(c.repl_password_file);
    // Questions get c.timeout; actions (STOP SLAVE waits for a replication thread that
    // may be stuck connecting to a dead primary) get ten times as long, on sessions of
    // their own.
    for (const auto& n : c.db) {
      sessions_.push_back(std::make_unique<SqlSession>(
          Endpoint{n.address, n.port, "", c.user, password, c.ssl_ca, c.timeout}));
      action_sessions_.push_back(std::make_unique<SqlSession>(
          Endpoint{n.address, n.port, "", c.user, password, c.ssl_ca, c.timeout * 10}));
    }
  }

  int run() {
    listen_socket();
    publish();
    say("failover manager: watching {} database nodes and {} apps every {} ms; promotes after "
        "{} ms without a writable primary; primary: {}",
        c_.db.size(), c_.apps.size(), c_.interval.count(), c_.failover_after.count(),
        decider_.primary());
    // The state port is the fencing agents' witness: it must answer while a round waits
    // out a cut-off node's timeouts (a round can outlast the agents' fence_after), so it
    // has a thread of its own and never waits on a round.
    std::thread server([this] { serve(); });
    // However the loop ends (a signal, or an error that reaches main), the server stops,
    // and only then its socket is closed.
    struct StopServer {
      Manager& m;
      std::thread& t;
      ~StopServer() {
        m.serving_ = false;
        t.join();
        if (m.listen_fd_ >= 0) ::close(m.listen_fd_);
        m.listen_fd_ = -1;
      }
    } stop_server{*this, server};
    while (g_stop == 0) {
      const auto start = Clock::now();
      round(start);
      publish();
      while (g_stop == 0 && Clock::now() < start + c_.interval) std::this_thread::sleep_for(10ms);
    }
    say("failover manager: stopping");
    return 0;
  }

 private:
  static std::string initial_primary(const ManagerConfig& c) {
    if (!c.primary_file.empty()) {
      const std::string recorded = lab::trim(lab::read_text_or_empty(c.primary_file));
      for (const auto& n : c.db)
        if (n.name == recorded) return recorded;
    }
    return c.primary;
  }

  void round(Clock::time_point now) {
    std::vector<std::future<NodeView>> node_jobs;
    for (std::size_t i = 0; i < c_.db.size(); ++i) {
      node_jobs.push_back(std::async(std::launch::async,
                                     [this, i] { return probe_node(*sessions_[i], c_.db[i]); }));
    }
    std::vector<std::future<AppView>> app_jobs;
    for (const auto& a : c_.apps) {
      app_jobs.push_back(
          std::async(std::launch::async, [this, &a] { return probe_app(a, c_.db, c_.timeout); }));
    }
    nodes_.clear();
    for (auto& j : node_jobs) nodes_.push_back(j.get());
    std::vector<AppView> apps;
    for (auto& j : app_jobs) apps.push_back(j.get());

    paused_ = !c_.pause_file.empty() && std::filesystem::exists(c_.pause_file);
    Decision d = decider_.decide(now, nodes_, apps, paused_);
    if (d.action != Action::None && d.action != Action::Fence && now < quiet_until_) {
      d.action = Action::None;  // a failed attempt a moment ago: wait before the next
    }
    if (d.action != Action::None || shape_of(d.reason) != shape_of(last_reason_)) {
      if (!d.reason.empty()) say("{}: {}", action_name(d.action), d.reason);
    }
    last_reason_ = d.reason;
    if (d.action != Action::None) {
      last_action_ = fmt::format("{} {}", action_name(d.action), fmt::join(d.targets, ","));
    }
    try {
      switch (d.action) {
        case Action::None:
          break;
        case Action::Fence:
          for (const auto& t : d.targets) fence(t);
          ++fences_;
          break;
        case Action::Promote:
          promote(d.targets.front(), d.old_primary);
          ++promotions_;
          break;
        case Action::Restore:
          restore(d.targets.front());
          ++restores_;
          break;
        case Action::Rejoin:
          rejoin(d.targets.front());
          ++rejoins_;
          break;
      }
    } catch (const std::exception& e) {
      ++failures_;
      say("{} {} failed: {}", action_name(d.action), fmt::join(d.targets, ","), e.what());
      quiet_until_ = Clock::now() + 1s;  // not a retry storm: the next try in a second
    }
    record_primary();
  }

  std::size_t index_of(const std::string& name) const {
    for (std::size_t i = 0; i < c_.db.size(); ++i)
      if (c_.db[i].name == name) return i;
    throw std::logic_error("unknown node " + name);
  }
  SqlSession& session(const std::string& name) { return *action_sessions_[index_of(name)]; }
  const NodeView& view(const std::string& name) const { return nodes_[index_of(name)]; }

  void fence(const std::string& name) {
    session(name).query("SET GLOBAL read_only = ON");
    say("fence {}: read_only set", name);
  }

  void restore(const std::string& name) {
    session(name).query("SET GLOBAL read_only = OFF");
    decider_.promoted(name);
    say("restore {}: writable again, still the primary", name);
  }

  // The promotion, step by step; any failure before the candidate is writable leaves
  // every node read-only (the next rounds try again).
  void promote(const std::string& next, const std::string& old) {
    const auto t0 = Clock::now();
    say("promote {} (primary was {}): begin", next, old);
    std::string old_pos;
    if (!old.empty() && view(old).reachable) {
      try {
        old_pos = session(old).scalar("SET GLOBAL read_only = ON; SELECT @@GLOBAL.gtid_binlog_pos");
        say("  fence {}: read_only; its last GTID {}", old, old_pos.empty() ? "(none)" : old_pos);
      } catch (const std::exception& e) {
        say("  fence {}: no answer ({}); its agent fences it if it is cut off", old, e.what());
      }
    } else {
      say("  fence {}: unreachable; its agent fenced it if it is alive but cut off", old);
    }
    SqlSession& s = session(next);
    const auto deadline = Clock::now() + 5s;
    for (;;) {
      NodeView v = probe_node(s, c_.db[index_of(next)]);
      if (!v.reachable) throw std::runtime_error(next + " stopped answering: " + v.error);
      const bool caught_up = old_pos.empty() ? (v.relay_applied || v.master_host.empty())
                                             : gtid_covers(v.gtid_current_pos, old_pos);
      if (caught_up) {
        say("  {} applied what it received: GTID {} ({:.0f} ms)", next, v.gtid_current_pos,
            ms_between(t0, Clock::now()));
        break;
      }
      if (Clock::now() > deadline) {
        throw std::runtime_error(fmt::format("{} did not catch up within 5 s (has {}, wants {})",
                                             next, v.gtid_current_pos,
                                             old_pos.empty() ? "its relay log" : old_pos));
      }
      std::this_thread::sleep_for(20ms);  // poll interval
    }
    // The last look before two nodes could be writable: none may be now.
    for (std::size_t i = 0; i < c_.db.size(); ++i) {
      if (c_.db[i].name == next) continue;
      const NodeView v = probe_node(*sessions_[i], c_.db[i]);
      if (v.reachable && v.writable) {
        throw std::runtime_error(c_.db[i].name + " is writable: not promoting " + next);
      }
    }
    s.query("STOP SLAVE");
    try {
      s.query("RESET SLAVE ALL; SET GLOBAL read_only = OFF");
    } catch (const std::exception&) {
      // Back to a replica as it was; the next rounds decide again.
      try {
        s.query("START SLAVE");
      } catch (const std::exception& e) {
        say("  {}: START SLAVE after the failure failed too: {}", next, e.what());
      }
      throw;
    }
    decider_.promoted(next);
    say("promote {}: done, it is writable ({:.0f} ms); the apps find it by themselves", next,
        ms_between(t0, Clock::now()));
  }

  void rejoin(const std::string& name) {
    const auto& p = c_.db[index_of(decider_.primary())];
    const std::string tls =
        c_.ssl_ca.empty()
            ? std::string()
            : fmt::format(", MASTER_SSL=1, MASTER_SSL_CA='{}', MASTER_SSL_VERIFY_SERVER_CERT=1",
                          c_.ssl_ca);
    session(name).query(fmt::format(
        "SET GLOBAL read_only = ON; STOP SLAVE; CHANGE MASTER TO MASTER_HOST='{}', "
        "MASTER_PORT={}, MASTER_USER='repl', MASTER_PASSWORD='{}', MASTER_USE_GTID=current_pos, "
        "MASTER_CONNECT_RETRY=1{}; START SLAVE",
        p.address, p.port, repl_password_, tls));
    // A node holding a transaction the primary never had (its binlog diverged) is refused
    // by the primary (error 1236): it stays fenced, for an operator.
    const auto check_until = Clock::now() + 2s;
    for (;;) {
      const auto rows = session(name).query("SHOW SLAVE STATUS");
      const Row& r = rows.empty() ? Row{} : rows.front();
      const auto get = [&](const char* k) {
        const auto it = r.find(k);
        return it == r.end() ? std::string() : it->second;
      };
      if (get("Last_IO_Errno") == "1236") {
        session(name).query("STOP SLAVE");
        throw std::runtime_error(fmt::format(
            "{} diverged from {}: {}; it stays read-only and not replicating: `webstack db "
            "rejoin {}` once its extra transactions are dealt with",
            name, p.name, get("Last_IO_Error"), name));
      }
      if (get("Slave_IO_Running") == "Yes" || Clock::now() > check_until) break;
      std::this_thread::sleep_for(50ms);  // poll interval
    }
    say("rejoin {}: replicates from {} with GTID", name, p.name);
    // A node that was a replica reports its master side of semi-sync OFF until a first
    // transaction waits; once the new replica is connected, re-enabling it reports the
    // truth at once.
    SqlSession& primary = session(p.name);
    const auto deadline = Clock::now() + 3s;
    while (Clock::now() < deadline) {
      if (primary.scalar("SELECT @@GLOBAL.rpl_semi_sync_master_enabled") != "1") return;
      if (primary.scalar("SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE "
                         "VARIABLE_NAME = 'RPL_SEMI_SYNC_MASTER_CLIENTS'") != "0") {
        primary.query(
            "SET GLOBAL rpl_semi_sync_master_enabled = OFF; "
            "SET GLOBAL rpl_semi_sync_master_enabled = ON");
        say("rejoin {}: semi-sync on {} with it", name, p.name);
        return;
      }
      std::this_thread::sleep_for(50ms);  // poll interval
    }
    say("rejoin {}: no semi-sync replica on {} within 3 s (asynchronous until one acknowledges)",
        name, p.name);
  }

  void record_primary() {
    if (c_.primary_file.empty() || decider_.primary().empty()) return;
    if (lab::trim(lab::read_text_or_empty(c_.primary_file)) == decider_.primary()) return;
    try {
      write_file_atomically(c_.primary_file, decider_.primary() + "\n");
    } catch (const std::exception& e) {
      say("cannot record the primary: {}", e.what());
    }
  }

  void listen_socket() {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (listen_fd_ < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
    const int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(c_.port));
    if (::inet_pton(AF_INET, c_.listen.c_str(), &a.sin_addr) != 1) {
      throw std::runtime_error("manager.listen: not an IPv4 address: " + c_.listen);
    }
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::listen(listen_fd_, 128) != 0) {
      throw std::runtime_error(
          fmt::format("cannot listen on {}:{}: {}", c_.listen, c_.port, std::strerror(errno)));
    }
  }

  // Until the manager stops: answer whoever connects with the state as JSON (HTTP/1.0),
  // or the metrics for `GET /metrics`. An agent only connects (that is its test of the way
  // here) and closes. Never blocks on one client: each gets 200 ms to send its request
  // head, and every connection waiting in the backlog is accepted at once.
  void serve() {
    std::vector<Client> clients;
    while (g_stop == 0 && serving_) {
      try {
        serve_step(clients);
      } catch (const std::exception& e) {
        // (Memory.) One answer lost, not the witness: the loop goes on.
        say("state port: {}", e.what());
      }
    }
    for (auto& cl : clients) ::close(cl.fd);
  }

  struct Client {
    int fd;
    Clock::time_point deadline;
    std::string request;
  };

  // Waits up to 100 ms (g_stop is looked at this often) for a new connection or a
  // client's bytes, and answers every client whose request is complete or whose time is up.
  void serve_step(std::vector<Client>& clients) {
    std::vector<pollfd> fds{{listen_fd_, POLLIN, 0}};
    auto wait = std::chrono::milliseconds(100);
    const auto now = Clock::now();
    for (const auto& cl : clients) {
      fds.push_back({cl.fd, POLLIN, 0});
      wait = std::min(
          wait, std::chrono::duration_cast<std::chrono::milliseconds>(cl.deadline - now + 1ms));
    }
    if (::poll(fds.data(), fds.size(), static_cast<int>(std::max<long>(0, wait.count()))) < 0) {
      return;  // EINTR: the caller looks at g_stop
    }
    for (std::size_t i = clients.size(); i-- > 0;) {  // backwards: erasing keeps fds[i + 1]
      auto& cl = clients[i];
      bool complete = Clock::now() >= cl.deadline;
      if (fds[i + 1].revents != 0) {
        char buf[512];
        const ssize_t n = ::recv(cl.fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) cl.request.append(buf, static_cast<std::size_t>(n));
        // End of stream (an agent), an error, or the request's head is here.
        complete = complete || n <= 0 || cl.request.find("\r\n\r\n") != std::string::npos ||
                   cl.request.find("\n\n") != std::string::npos || cl.request.size() >= 8192;
      }
      if (complete) {
        answer(cl);
        clients.erase(clients.begin() + static_cast<std::ptrdiff_t>(i));
      }
    }
    if ((fds[0].revents & POLLIN) != 0) {
      for (;;) {
        const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) break;
        if (clients.size() >= 256) {  // a flood: the oldest is answered now
          answer(clients.front());
          clients.erase(clients.begin());
        }
        clients.push_back({fd, Clock::now() + 200ms, {}});
      }
    }
  }

  // The state as JSON, or the metrics for `GET /metrics`; then the connection is closed.
  void answer(const Client& cl) const {
    const bool metrics = cl.request.starts_with("GET /metrics");
    const Published p = published();
    const std::string body = metrics ? metrics_text(p) : state_json(p);
    const std::string reply = fmt::format(
        "HTTP/1.0 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\n"
        "Connection: close\r\n\r\n{}",
        metrics ? "text/plain; version=0.0.4" : "application/json", body.size(), body);
    // Best effort, never blocking: a client that does not read gets cut. Whatever it sent
    // unread is drained first: closing with unread bytes resets the connection, and the
    // reset can discard the reply.
    ::send(cl.fd, reply.data(), reply.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    ::shutdown(cl.fd, SHUT_WR);
    char sink[1024];
    for (int i = 0; i < 64 && ::recv(cl.fd, sink, sizeof sink, MSG_DONTWAIT) > 0; ++i) {
    }
    ::close(cl.fd);
  }

  // What the state port shows, as of the last round.
  struct Published {
    std::string primary;
    std::optional<Clock::time_point> down_since;
    bool paused = false;
    std::string last_action, last_reason;
    unsigned long promotions = 0, fences = 0, rejoins = 0, restores = 0, failures = 0;
  };
  void publish() {
    Published p{decider_.primary(),
                decider_.down_since(),
                paused_,
                last_action_,
                last_reason_,
                promotions_,
                fences_,
                rejoins_,
                restores_,
                failures_};
    std::lock_guard lock(published_mutex_);
    published_ = std::move(p);
  }
  Published published() const {
    std::lock_guard lock(published_mutex_);
    return published_;
  }

  std::string state_json(const Published& p) const {
    const auto since = p.down_since;
    return json::serialize(json::object{
               {"primary", p.primary},
               {"writable_primary", !since.has_value()},
               {"without_primary_ms",
                since ? static_cast<std::int64_t>(ms_between(*since, Clock::now())) : 0},
               {"failover_after_ms", c_.failover_after.count()},
               {"paused", p.paused},
               {"last_action", p.last_action},
               {"last_reason", p.last_reason}}) +
           "\n";
  }

  // Prometheus text format: what the alerts need (docs/monitoring.md).
  std::string metrics_text(const Published& p) const {
    const auto since = p.down_since;
    std::string out;
    const auto metric = [&](const char* name, const char* type, const char* help,
                            const std::string& value) {
      out += fmt::format("# HELP {0} {1}\n# TYPE {0} {2}\n{0} {3}\n", name, help, type, value);
    };
    metric("webstack_failover_writable_primary", "gauge",
           "1 when exactly one database node is writable, as the manager sees it",
           since ? "0" : "1");
    metric("webstack_failover_seconds_without_primary", "gauge",
           "How long no database node has been writable",
           fmt::format("{:.3f}", since ? ms_between(*since, Clock::now()) / 1000.0 : 0.0));
    metric("webstack_failover_paused", "gauge", "1 while promotions are paused",
           p.paused ? "1" : "0");
    metric("webstack_failover_promotions_total", "counter", "Replicas promoted",
           std::to_string(p.promotions));
    metric("webstack_failover_fences_total", "counter", "Rounds that fenced a second writable node",
           std::to_string(p.fences));
    metric("webstack_failover_rejoins_total", "counter",
           "Former primaries made replicas of the primary", std::to_string(p.rejoins));
    metric("webstack_failover_restores_total", "counter",
           "Old primaries made writable again (no other node to promote)",
           std::to_string(p.restores));
    metric("webstack_failover_action_failures_total", "counter",
           "Actions that failed (retried a second later)", std::to_string(p.failures));
    out +=
        "# HELP webstack_failover_primary_info The primary the manager follows\n"
        "# TYPE webstack_failover_primary_info gauge\n";
    out += fmt::format("webstack_failover_primary_info{{primary=\"{}\"}} 1\n", p.primary);
    return out;
  }

  const ManagerConfig& c_;
  Decider decider_;
  std::string repl_password_;
  std::vector<std::unique_ptr<SqlSession>> sessions_, action_sessions_;
  std::vector<NodeView> nodes_;
  std::string last_reason_, last_action_;
  bool paused_ = false;
  unsigned long promotions_ = 0, fences_ = 0, rejoins_ = 0, restores_ = 0, failures_ = 0;
  Clock::time_point quiet_until_{};
  int listen_fd_ = -1;
  std::atomic<bool> serving_{true};  // false: serve() returns
  mutable std::mutex published_mutex_;
  Published published_;  // guarded by published_mutex_: the server thread reads it
};

// A TCP connection to each witness at once; how many completed within `timeout`.
std::size_t reachable_witnesses(const std::vector<DbNode>& witnesses,
                                std::chrono::milliseconds timeout, std::string& evidence) {
  std::vector<pollfd> fds;
  for (const auto& w : witnesses) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(w.port));
    ::inet_pton(AF_INET, w.address.c_str(), &a.sin_addr);
    const int rc = fd < 0 ? -1 : ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    fds.push_back({fd, static_cast<short>(rc == 0 || errno == EINPROGRESS ? POLLOUT : 0), 0});
  }
  const auto deadline = Clock::now() + timeout;
  std::vector<bool> done(fds.size(), false);
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    bool waiting = false;
    for (std::size_t i = 0; i < fds.size(); ++i) waiting = waiting || (!done[i] && fds[i].events);
    if (!waiting || left <= 0) break;
    if (::poll(fds.data(), fds.size(), static_cast<int>(left)) < 0 && errno != EINTR) break;
    for (std::size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].revents != 0) {
        done[i] = true;
        fds[i].events = 0;
      }
    }
  }
  std::size_t ok = 0;
  evidence.clear();
  for (std::size_t i = 0; i < fds.size(); ++i) {
    int err = -1;
    socklen_t len = sizeof err;
    if (done[i]) ::getsockopt(fds[i].fd, SOL_SOCKET, SO_ERROR, &err, &len);
    const bool reached = done[i] && err == 0;
    ok += reached ? 1 : 0;
    evidence += fmt::format("{}{} {}:{} {}", evidence.empty() ? "" : ", ", witnesses[i].name,
                            witnesses[i].address, witnesses[i].port,
                            reached   ? "reached"
                            : done[i] ? std::string("refused: ") + std::strerror(err)
                                      : "no answer");
    if (fds[i].fd >= 0) ::close(fds[i].fd);
  }
  return ok;
}

}  // namespace

int run_manager(const ManagerConfig& c) {
  install_signal_handlers();
  if (mysql_library_init(0, nullptr, nullptr) != 0) throw std::runtime_error("mysql_library_init");
  Manager m(c);
  const int rc = m.run();
  mysql_library_end();
  return rc;
}

int run_agent(const AgentConfig& c) {
  install_signal_handlers();
  if (mysql_library_init(0, nullptr, nullptr) != 0) throw std::runtime_error("mysql_library_init");
  SqlSession local(Endpoint{"", 0, c.socket, "root", "", "", 2s});
  // A strict majority of the voters (the witnesses and this node) must be reachable.
  const std::size_t voters = c.witnesses.size() + 1;
  say("fencing agent of {}: {} witnesses; fences this node when it is writable and reaches "
      "fewer than {} of them for {} ms",
      c.host, c.witnesses.size(), voters / 2, c.fence_after.count());
  // Since when this writable node has been cut off (false: it is not).
  bool cut_off = false;
  Clock::time_point cut_off_since{};
  while (g_stop == 0) {
    const auto start = Clock::now();
    bool writable = false;
    try {
      writable = local.scalar("SELECT @@GLOBAL.read_only") == "0";
    } catch (const std::exception&) {
      writable = false;  // down or starting: nothing to fence
    }
    if (writable) {
      std::string evidence;
      const std::size_t reached = reachable_witnesses(c.witnesses, c.timeout, evidence);
      if ((reached + 1) * 2 > voters) {
        if (cut_off) say("{} reaches its witnesses again: {}", c.host, evidence);
        cut_off = false;
      } else {
        if (!cut_off) {
          cut_off = true;
          cut_off_since = start;
          say("{} is writable and reaches {} of {} witnesses: {}", c.host, reached,
              c.witnesses.size(), evidence);
        }
        if (start - cut_off_since >= c.fence_after) {
          // SIGKILL, not read_only first: SET GLOBAL read_only waits for the commits in
          // flight, and those wait for a replica's acknowledgement until the semi-sync
          // timeout, then commit unacknowledged. Killed, they stay prepared, and crash
          // recovery (init_rpl_role = SLAVE) drops them from the binlog.
          say("fence {}: cut off for {:.0f} ms ({}): SIGKILL of mariadbd (s6 restarts it "
              "read-only; crash recovery drops what no replica acknowledged)",
              c.host, ms_between(cut_off_since, start), evidence);
          const std::string pid_text = lab::trim(lab::read_text_or_empty(c.pid_file));
          const int pid = pid_text.empty() ? 0 : std::atoi(pid_text.c_str());
          if (pid > 1 && lab::alive(pid) && ::kill(pid, SIGKILL) == 0) {
            say("  mariadbd (pid {}) killed", pid);
          } else {
            say("  no mariadbd to kill (pid file {}: \"{}\"): read_only instead", c.pid_file,
                pid_text);
            try {
              local.query("SET GLOBAL read_only = ON");
            } catch (const std::exception& e) {
              say("  read_only failed: {}", e.what());
            }
          }
          cut_off = false;
        }
      }
    } else {
      cut_off = false;
    }
    const auto next = start + c.interval;
    while (g_stop == 0 && Clock::now() < next) std::this_thread::sleep_for(10ms);  // tick
  }
  say("fencing agent of {}: stopping", c.host);
  mysql_library_end();
  return 0;
}

}  // namespace webstack::failover
