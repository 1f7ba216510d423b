// The fencing agent (webstack-failover agent): one per database host. It holds the
// primary's lease for its node, vouches for the manager's primary to the other agents,
// and keeps the nftables gate of the local database port (failover/lease.hpp).
#include <signal.h>

#include <fmt/format.h>
#include <boost/json.hpp>

#include <future>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>

#include <mysql.h>

#include "common/process.hpp"
#include "common/text.hpp"
#include "failover/config.hpp"
#include "failover/daemon.hpp"
#include "failover/lease.hpp"
#include "failover/manager.hpp"
#include "failover/semi_sync_sql.hpp"
#include "failover/sql_session.hpp"
#include "failover/wire.hpp"

namespace webstack::failover {

namespace {

using namespace std::chrono_literals;
namespace json = boost::json;
using Clock = LeaseClock;

const char* gate_name(Gate g) {
  switch (g) {
    case Gate::Closed:
      return "closed";
    case Gate::Open:
      return "open";
    case Gate::UntilLeaseEnds:
      return "open until the lease ends";
  }
  return "?";
}

// One nftables transaction: the table, its chains and the set declared (idempotent, so a
// ruleset flushed by someone else comes back), the set's single element replaced. Both
// ways are gated: a connection's replies (a commit's OK) must not leave a node whose lease
// lapsed either, nor reach a client on this host over lo. Resets leave (the input rule's
// own, and the kernel's for a killed server's connections): they carry no data, and tell
// clients at once.
std::string gate_script(int port, Gate g, std::chrono::milliseconds open_for) {
  std::string s = fmt::format(
      "add table inet webstack_fence; "
      "add set inet webstack_fence open {{ type inet_service; flags timeout; }}; "
      "add chain inet webstack_fence input {{ type filter hook input priority -10; policy "
      "accept; }}; "
      "add chain inet webstack_fence output {{ type filter hook output priority -10; policy "
      "accept; }}; "
      "flush chain inet webstack_fence input; "
      "flush chain inet webstack_fence output; "
      "add rule inet webstack_fence input tcp dport {0} tcp dport @open accept; "
      "add rule inet webstack_fence input tcp dport {0} reject with tcp reset; "
      "add rule inet webstack_fence output tcp sport {0} tcp sport @open accept; "
      "add rule inet webstack_fence output tcp sport {0} tcp flags & rst == rst accept; "
      "add rule inet webstack_fence output tcp sport {0} drop; "
      "flush set inet webstack_fence open",
      port);
  if (g != Gate::Closed) {
    s += fmt::format("; add element inet webstack_fence open {{ {} timeout {}ms }}", port,
                     std::max<long long>(1, open_for.count()));
  }
  return s;
}

// The local server's last answer, kept by a thread of its own: a stalled server holds up
// that thread, never the lease's renewals.
class LocalProbe {
 public:
  LocalProbe(const AgentConfig& c, std::chrono::milliseconds stall_after)
      : c_(c), stall_after_(stall_after) {}

  void run() {
    SqlSession local(Endpoint{"", 0, c_.socket, "root", "", "", 2s});
    while (g_stop == 0) {
      const auto start = Clock::now();
      unsigned long generation = 0;
      {
        std::lock_guard lock(m_);
        generation = generation_;
      }
      try {
        // A change of semi-sync the round asked for (unless it came too late: a freeze
        // between the round and here must not release commits after the lease), then the
        // view.
        run_asked(local);
        const auto rows = local.query(
            "SELECT @@GLOBAL.read_only AS ro, " + global_status("RPL_SEMI_SYNC_MASTER_STATUS") +
            " AS status, " + global_status("RPL_SEMI_SYNC_MASTER_WAIT_SESSIONS") + " AS waiting, " +
            global_status("RPL_SEMI_SYNC_MASTER_YES_TX") +
            " AS acknowledged, @@GLOBAL.rpl_semi_sync_master_timeout AS timeout");
        if (rows.empty()) throw std::runtime_error("no answer");
        const Row& r = rows.front();
        const bool writable = r.at("ro") == "0";
        std::lock_guard lock(m_);
        semi_ = {!r.at("status").empty(), r.at("status") == "ON",
                 std::atoll(r.at("waiting").c_str()), std::atoll(r.at("acknowledged").c_str()),
                 std::atoll(r.at("timeout").c_str())};
        if (generation == generation_) {  // not asked of a server killed since
          answered_at_ = Clock::now();
          asked_ = start;
          writable_ = writable;
          last_writable_ = writable;
          // Which server said so: a kill is for that one, never for the next one.
          answered_pid_ = std::atoi(text::trim(read_text_or_empty(c_.pid_file)).c_str());
        }
      } catch (const std::exception&) {
        // Down, restarting or stalled: the view ages out below.
      }
      while (g_stop == 0 && Clock::now() < start + c_.interval) std::this_thread::sleep_for(10ms);
    }
  }

  // The view now: answered within stall_after, or not.
  LocalView view(bool& last_writable) const {
    std::lock_guard lock(m_);
    last_writable = last_writable_;
    return {answered_at_ && Clock::now() - *answered_at_ < stall_after_, writable_, asked_};
  }
  SemiSyncView semi_sync() const {
    std::lock_guard lock(m_);
    return semi_;
  }
  // Done by this thread at its next question (it owns the session; the round never waits
  // on the server), if that comes before `until`.
  void ask(SemiSyncAction a, Clock::time_point until) {
    std::lock_guard lock(m_);
    asked_action_ = a;
    asked_action_until_ = until;
  }

  // The pid of the server that gave the last answer (0: none yet).
  int answered_pid() const {
    std::lock_guard lock(m_);
    return answered_pid_;
  }
  // After a kill: the restarting server was not seen writable, and an answer already on
  // its way from the killed one is dropped.
  void forget() {
    std::lock_guard lock(m_);
    ++generation_;
    answered_at_.reset();
    writable_ = last_writable_ = false;
  }

 private:
  const AgentConfig& c_;
  std::chrono::milliseconds stall_after_;
  mutable std::mutex m_;
  unsigned long generation_ = 0;
  std::optional<Clock::time_point> answered_at_;
  Clock::time_point asked_{};
  bool writable_ = false, last_writable_ = false;
  int answered_pid_ = 0;
  SemiSyncView semi_;
  SemiSyncAction asked_action_ = SemiSyncAction::None;
  Clock::time_point asked_action_until_{};

  void run_asked(SqlSession& local) {
    SemiSyncAction a = SemiSyncAction::None;
    {
      std::lock_guard lock(m_);
      if (Clock::now() < asked_action_until_) a = asked_action_;
      asked_action_ = SemiSyncAction::None;
    }
    switch (a) {
      case SemiSyncAction::None:
        break;
      case SemiSyncAction::Release:
        // Semi-sync off and on releases the waiting commits (asynchronous now), after the
        // silent replica's dump thread is ended (failover/semi_sync_sql.hpp); on again
        // with a short timeout, the next commit's wait turns it off MariaDB's way (counted
        // in Rpl_semi_sync_master_no_tx) until a replica has caught up.
        local.query(release_semi_sync_sql(kShortSemiSyncTimeoutMs, false));
        break;
      case SemiSyncAction::HoldCommits:
        local.query(
            fmt::format("SET GLOBAL rpl_semi_sync_master_timeout = {}", kHolderSemiSyncTimeoutMs));
        break;
      case SemiSyncAction::Demoted:
        // Read-only still (checked by the server itself): its own waiting commits go.
        local.query(release_semi_sync_sql(kShortSemiSyncTimeoutMs, true));
        break;
    }
  }
};

class Agent {
 public:
  explicit Agent(const AgentConfig& c)
      : c_(c), server_(c.listen, c.port), probe_(c, c.interval * 4) {}

  int run() {
    const std::size_t voters = c_.peers.size() + 2;
    say("fencing agent of {}: lease {} ms from {} of {} voters (this agent, {} other agent{}, "
        "the manager on {}); database port {} gated: {}",
        c_.host, c_.lease.count(), majority(voters), voters, c_.peers.size(),
        c_.peers.size() == 1 ? "" : "s", c_.manager.address, c_.db_port, c_.gate ? "yes" : "no");
    std::thread probe([this] { probe_.run(); });
    std::atomic<bool> serving{true};
    std::thread server([&] {
      server_.run([this](const std::string& r, const std::string&) { return answer(r); }, g_stop,
                  serving);
    });
    struct Join {
      std::thread& a;
      std::thread& b;
      std::atomic<bool>& serving;
      ~Join() {
        serving = false;
        g_stop = 1;
        a.join();
        b.join();
      }
    } join{probe, server, serving};

    while (g_stop == 0) {
      const auto start = Clock::now();
      round(start, voters);
      while (g_stop == 0 && Clock::now() < start + c_.interval) std::this_thread::sleep_for(10ms);
    }
    say("fencing agent of {}: stopping (the gate stays as it is; a lease ends by itself)", c_.host);
    return 0;
  }

 private:
  struct Vote {
    bool answered = false, vouch = false;
    ManagerWord word;
    std::string error;
  };

  Vote ask(const DbNode& voter, bool manager) const {
    Vote v;
    const auto body =
        http_get(voter.address, voter.port, "/vouch?for=" + c_.host, c_.timeout, v.error);
    if (!body) return v;
    try {
      const auto j = json::parse(*body).as_object();
      v.vouch = j.at("vouch").as_bool();
      if (manager) {
        v.word = {true, std::string(j.at("primary").as_string()),
                  std::string(j.at("deposed").as_string())};
      }
      v.answered = true;
    } catch (const std::exception& e) {
      v.error = std::string("not a vouch: ") + e.what();
    }
    return v;
  }

  void round(Clock::time_point start, std::size_t voters) {
    auto from_manager = std::async(std::launch::async, [this] { return ask(c_.manager, true); });
    std::vector<std::future<Vote>> from_peers;
    for (const auto& p : c_.peers) {
      from_peers.push_back(std::async(std::launch::async, [this, &p] { return ask(p, false); }));
    }
    const Vote m = from_manager.get();
    std::size_t votes = 0;
    std::string evidence;
    if (m.answered) {
      std::lock_guard lock(m_);
      word_ = m.word;
    }
    const ManagerWord word = this->word();
    if (vouches_for(word, c_.host)) ++votes;  // this agent's own vote
    votes += m.vouch ? 1 : 0;
    evidence = fmt::format("manager {}", m.answered ? (m.vouch ? "vouched" : "refused") : m.error);
    for (std::size_t i = 0; i < from_peers.size(); ++i) {
      const Vote p = from_peers[i].get();
      votes += p.vouch ? 1 : 0;
      evidence += fmt::format(", {} {}", c_.peers[i].name,
                              p.answered ? (p.vouch ? "vouched" : "refused") : p.error);
    }
    const bool held = holding(start);
    {
      std::lock_guard lock(m_);
      lease_until_ = renewed_lease(lease_until_, start, votes, voters, c_.lease);
    }
    // What to do comes first, logging after: a node to kill dies before anything else.
    // Done again at once when applying the gate took longer than a round (the agent or
    // nft was stopped meanwhile, and the timeout just set may outlast the lease).
    for (int pass = 0; pass < 2; ++pass) {
      bool last_writable = false;
      const LocalView local = probe_.view(last_writable);
      std::optional<Clock::time_point> until;
      {
        std::lock_guard lock(m_);
        until = lease_until_;
        local_ = local;
      }
      const AgentStep s = agent_step(Clock::now(), until, local, last_writable, word, c_.host);
      std::string killed;
      if (s.kill) {
        kill_mariadbd(killed);
        // The lapsed lease is done with: the next server starts read-only.
        std::lock_guard lock(m_);
        lease_until_.reset();
      }
      const bool in_time = apply_gate(s);
      if (s.kill) say("fence {}: {}\n  {}", c_.host, s.reason, killed);
      if (in_time) break;
    }
    semi_sync_round();
    const bool holds = holding(Clock::now());
    if (held != holds) {
      say("{} {} the lease ({} of {} votes: {})", c_.host, holds ? "holds" : "lost", votes, voters,
          evidence);
    }
  }

  // The lease-aware semi-sync fallback (failover/lease.hpp: semi_sync_step). An action
  // for the lease holder is good until the lease ends; the demotion's, for a round.
  void semi_sync_round() {
    bool last_writable = false;
    const LocalView local = probe_.view(last_writable);
    const SemiSyncView s = probe_.semi_sync();
    const auto now = Clock::now();
    const auto action =
        semi_sync_step(now, holding(now), local, s, c_.semi_sync_fallback, semi_sync_memory_);
    if (action == SemiSyncAction::None) return;
    Clock::time_point until = now + c_.interval;
    if (action != SemiSyncAction::Demoted) {
      std::lock_guard lock(m_);
      until = lease_until_.value_or(now);
    }
    probe_.ask(action, until);
    if (action == SemiSyncAction::Release) {
      say("semi-sync fallback on {}: commits waited {} ms with no replica acknowledging; "
          "released, asynchronous until a replica has caught up (the failover manager "
          "refuses a replica that lacks these writes)",
          c_.host, c_.semi_sync_fallback.count());
    } else if (action == SemiSyncAction::Demoted) {
      say("semi-sync timeout of {} back to {} ms: it is read-only now", c_.host,
          kShortSemiSyncTimeoutMs);
    }
  }

  // The gate as `s` says; an open-until-the-lease-ends gate gets the lease's remaining
  // time as of now, and a read-only node's open gate a few rounds (never more than a
  // lease), renewed every round. Returns false when it took longer than a round (the
  // agent or nft was stopped meanwhile): the timeout it set may outlast what it should.
  bool apply_gate(const AgentStep& s) {
    const auto computed = Clock::now();
    std::chrono::milliseconds open_for = std::min(c_.interval * 4, c_.lease);
    if (s.gate == Gate::UntilLeaseEnds) {
      std::lock_guard lock(m_);
      const auto left = lease_until_ ? *lease_until_ - computed : Clock::duration::zero();
      open_for = std::chrono::duration_cast<std::chrono::milliseconds>(left);
    }
    const Gate g = s.gate == Gate::UntilLeaseEnds && open_for.count() <= 0 ? Gate::Closed : s.gate;
    bool ok = true;
    if (c_.gate) {
      const auto r = webstack::run({"nft", gate_script(c_.db_port, g, open_for)}, 2s);
      ok = r.exit_code == 0;
      if (!ok && gate_ok_) {
        say("gate of {}: nft failed ({}): {}", c_.host, r.exit_code, text::trim(r.err));
      }
      gate_ok_ = ok;
    }
    // What the kernel holds now (the manager's `holder` reads it: a lease counts once its
    // gate is installed).
    if (ok && g != gate_) {
      gate_ = g;
      say("gate of {}:{}: {}", c_.host, c_.db_port, gate_name(g));
    }
    return Clock::now() - computed < c_.interval;
  }

  // SIGKILL of the local mariadbd (by its pid file). Either way no server that was seen
  // writable runs any more (a stopped one is gone already): the next one starts read-only,
  // and is never killed for what the last one answered. `what` is for the log, written
  // after the gate is set.
  void kill_mariadbd(std::string& what) {
    const std::string pid_text = text::trim(read_text_or_empty(c_.pid_file));
    const int pid = pid_text.empty() ? 0 : std::atoi(pid_text.c_str());
    const int seen = probe_.answered_pid();
    if (pid > 1 && seen > 0 && pid != seen) {
      // Restarted by someone else since it last answered (s6 after a crash): this one
      // starts read-only and was never seen writable.
      what = fmt::format("mariadbd restarted since it answered (pid {}, now {}): not killed", seen,
                         pid);
    } else if (pid > 1 && alive(pid) && ::kill(pid, SIGKILL) == 0) {
      what = fmt::format("mariadbd (pid {}) killed", pid);
    } else {
      what = fmt::format("no mariadbd running (pid file {}: \"{}\")", c_.pid_file, pid_text);
    }
    probe_.forget();
  }

  bool holding(Clock::time_point now) const {
    std::lock_guard lock(m_);
    return lease_until_ && now < *lease_until_;
  }
  ManagerWord word() const {
    std::lock_guard lock(m_);
    return word_;
  }

  // GET /vouch?for=NODE: this agent's vote. GET /: its state (the manager reads whether
  // it still vouches for a deposed primary, and whether it holds the lease).
  Reply answer(const std::string& request) const {
    std::lock_guard lock(m_);
    if (request.starts_with("GET /vouch")) {
      const std::string node = query_value(request, "for");
      return {"application/json", json::serialize(json::object{{"vouch", vouches_for(word_, node)},
                                                               {"primary", word_.primary},
                                                               {"deposed", word_.deposed}}) +
                                      "\n"};
    }
    const auto now = Clock::now();
    // The holder as the manager must see it: the lease, and its gate installed.
    const bool holds = lease_until_ && now < *lease_until_ && gate_ == Gate::UntilLeaseEnds;
    return {"application/json",
            json::serialize(json::object{
                {"host", c_.host},
                {"holder", holds},
                {"lease_ms",
                 holds ? std::chrono::duration_cast<std::chrono::milliseconds>(*lease_until_ - now)
                             .count()
                       : 0},
                {"knows_manager", word_.known},
                {"primary", word_.primary},
                {"deposed", word_.deposed},
                {"answered", local_.answered},
                {"writable", local_.writable},
                {"gate", gate_name(gate_)},
                {"gate_ok", !c_.gate || gate_ok_.load()}}) +
                "\n"};
  }

  const AgentConfig& c_;
  StateServer server_;
  LocalProbe probe_;
  mutable std::mutex m_;  // guards word_, lease_until_, local_ (the server thread reads them)
  ManagerWord word_;
  std::optional<Clock::time_point> lease_until_;
  LocalView local_;
  std::atomic<Gate> gate_{Gate::Closed};
  std::atomic<bool> gate_ok_{false};  // the last nft run worked (the manager reads it)
  SemiSyncMemory semi_sync_memory_;   // commits stuck waiting for a replica since
};

}  // namespace

int run_agent(const AgentConfig& c) {
  install_signal_handlers();
  if (mysql_library_init(0, nullptr, nullptr) != 0) throw std::runtime_error("mysql_library_init");
  int rc = 0;
  {
    Agent a(c);
    rc = a.run();
  }
  mysql_library_end();
  return rc;
}

}  // namespace webstack::failover
