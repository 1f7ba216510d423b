// `webstack db rebuild`: a node's data replaced with a backup of the current primary,
// after its errant transactions are saved (see lab/database.hpp).
#include "lab/database.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <boost/json.hpp>

#include "common/process.hpp"
#include "common/steps.hpp"
#include "common/text.hpp"
#include "lab/control.hpp"
#include "lab/database_internal.hpp"
#include "lab/network.hpp"
#include "lab/paths.hpp"
#include "lab/rebuild_internal.hpp"
#include "lab/site.hpp"
#include "lab/status.hpp"
#include "lab/tls.hpp"
#include "render/render.hpp"

namespace webstack::lab {

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
using topo::Role;
namespace fs = std::filesystem;

using detail::binlog_files;
using detail::kill_rebuild_leftovers;
using detail::save_errant;
using detail::sql;
using detail::sql_checked;
using detail::sql_secret;

// The node `host` names, checked for a rebuild: a database host, not the primary, and
// the programs a rebuild runs installed.
const topo::Host* node_to_rebuild(const topo::Topology& t, std::string_view host) {
  const topo::Host* h = t.find(host);
  if (h == nullptr || !h->has(Role::Database)) {
    throw std::invalid_argument(fmt::format("\"{}\" is not a database host", host));
  }
  const topo::Host& p = t.primary();
  if (h->name == p.name) {
    throw std::invalid_argument(
        fmt::format("{} is the primary: a rebuild copies the primary onto another node", h->name));
  }
  for (const char* program :
       {"mariadb-backup", "mbstream", "mariadb-binlog", "socat", "mariadbd", "mariadb-admin"}) {
    if (!program_in_path(program)) {
      throw std::runtime_error(fmt::format(
          "{} not found in PATH: install the Debian packages mariadb-backup, mariadb-client, "
          "mariadb-server and socat (scripts/setup.sh does)",
          program));
    }
  }
  return h;
}

// The time a rebuild starts, in the name of its file of saved transactions.
std::string utc_stamp() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return std::string(buf);
}

// Runs `undo` when it is destroyed by an exception thrown after its construction.
struct OnFailure {
  std::function<void()> undo;
  int exceptions = std::uncaught_exceptions();
  ~OnFailure() {
    if (std::uncaught_exceptions() > exceptions) undo();
  }
};

// An open file descriptor, closed when the guard goes.
using FdGuard = std::unique_ptr<int, void (*)(int*)>;

// One rebuild of node `h` from the primary `p`: what its phases (the member functions, in
// the order rebuild() runs them) share.
struct Rebuild {
  Rebuild(const topo::Topology& given, const std::string& state, std::string_view host,
          std::FILE* to);
  Rebuild(const Rebuild&) = delete;
  Rebuild& operator=(const Rebuild&) = delete;

  FdGuard lock() const;
  void take_up_earlier_attempt() const;
  void check_certificates() const;
  void primary_answers();
  void undo_before_swap();
  void save_transactions();
  void stream_backup();
  void prepare_backup();
  void check_roles();
  void replace_data();
  void replicate();

  void step(const std::string& what, const std::function<std::string()>& f);
  void service(ServiceAction a) const;
  void kill_leftovers() const;
  void put_back();
  void swap_data();
  void record_position();
  void start_mariadb();

  const topo::Topology& topology;  // as given: the roles are read again before the swap
  const std::string& state_dir;
  std::FILE* out;
  const topo::Topology t;  // with the current primary
  const topo::Host* h;
  const topo::Host& p;
  const std::optional<render::Profile> profile;
  const bool tls;
  const StatePaths paths;
  const std::string data, datadir, staging, old, errant, port, saved_marker;
  StepPrinter printer;
  std::string saved, gtid;
  bool was_replicating = false, wrote_errant = false, stopped = false, swapped = false;
};

Rebuild::Rebuild(const topo::Topology& given, const std::string& state, std::string_view host,
                 std::FILE* to)
    : topology(given),
      state_dir(state),
      out(to),
      t(with_current_primary(topology, state_dir)),
      h(node_to_rebuild(t, host)),
      p(t.primary()),
      profile(recorded_profile(state_dir)),
      tls(!(profile && *profile == render::Profile::Seed)),
      paths(state_dir),
      data(paths.data + "/"),
      datadir(paths.datadir(h->name)),
      staging(data + h->name + "/rebuild"),
      old(data + h->name + "/mysql.old"),
      errant(paths.errant() + "/" + h->name + "-" + utc_stamp() + ".sql"),
      port(std::to_string(render::kDbRebuildPort)),
      // Written once the node's extra transactions are saved, before its data is replaced:
      // a rebuild cut short after that point (mysql.old left) is taken up again.
      saved_marker(data + h->name + "/rebuild-saved"),
      printer(out) {}

FdGuard Rebuild::lock() const {
  // One rebuild of a node at a time (by hand, or the failover manager's): a lock held
  // while this runs, released by the kernel however it ends.
  const std::string lock_path = data + h->name + "/rebuild.lock";
  // An OFD lock: the failover manager tests it (F_OFD_GETLK) without taking it.
  const int lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd < 0)
    throw std::runtime_error("cannot open " + lock_path + ": " + std::strerror(errno));
  FdGuard lock_guard(new int(lock_fd), [](int* fd) {
    ::close(*fd);
    delete fd;
  });
  struct flock whole {};
  whole.l_type = F_WRLCK;
  whole.l_whence = SEEK_SET;
  if (::fcntl(lock_fd, F_OFD_SETLK, &whole) != 0) {
    throw std::runtime_error(
        fmt::format("a rebuild of {} is running ({} is locked)", h->name, lock_path));
  }
  return lock_guard;
}

void Rebuild::take_up_earlier_attempt() const {
  // What an earlier rebuild cut short left running goes first.
  kill_leftovers();
  if (fs::exists(old)) {
    if (!fs::exists(saved_marker)) {
      throw std::runtime_error(
          fmt::format("{} holds {}'s data from a rebuild that did not end, and no record that its "
                      "transactions were saved: look at it, move it away, then rebuild again",
                      old, h->name));
    }
    const std::string before = text::trim(read_text_or_empty(saved_marker));
    if (fs::exists(datadir)) {
      // Its data was replaced: the old copy's transactions are saved already.
      fs::remove_all(old);
      std::fprintf(out,
                   "an earlier rebuild of %s stopped after replacing its data: its old data "
                   "removed, rebuilding again; what it held that the primary lacked: %s\n",
                   h->name.c_str(), before.c_str());
    } else {
      // Stopped between moving the old data away and the new in: the old data back.
      fs::rename(old, datadir);
      std::fprintf(out, "an earlier rebuild of %s stopped part way; its data put back\n",
                   h->name.c_str());
    }
    fs::remove(saved_marker);
  }
}

void Rebuild::check_certificates() const {
  // Both ends present their database certificate to the other (made for clientAuth too
  // since `db rebuild` exists; an older lab's are issued again by `webstack up` after a
  // `webstack down`, which keeps the data).
  for (const auto* x : {h, &p}) {
    const std::string crt = data + x->name + "/tls/server.crt";
    if (tls && run({"openssl", "x509", "-in", crt, "-noout", "-ext", "extendedKeyUsage"})
                       .out.find("Client Authentication") == std::string::npos) {
      throw std::runtime_error(
          crt +
          " is not made for TLS clients (a lab made before `db rebuild`): `webstack down` "
          "(the data is kept), then `webstack up` issues it again; then rebuild");
    }
  }
}

void Rebuild::primary_answers() {
  step(p.name + " answers", [&] {
    sql_checked(state_dir, p.name, "SELECT 1", 10s);
    return std::string();
  });
}

void Rebuild::undo_before_swap() {
  if (swapped) return;  // from there on, the swap's own handling (put_back)
  std::error_code ec;
  if (wrote_errant) fs::remove(errant, ec);
  if (was_replicating) sql(state_dir, h->name, "START SLAVE", 30s);
}

void Rebuild::save_transactions() {
  step("transactions " + h->name + " holds that " + p.name + " lacks, saved", [&] {
    std::error_code ec;
    fs::create_directories(paths.errant(), ec);
    fs::permissions(paths.errant(), fs::perms::owner_all, ec);
    // Replication stopped first (a node that still replicates would take transactions
    // into its binlog that the primary's newest file holds); then the primary's binlog
    // rotated: its files but the new one are complete (read while it runs), and the new
    // one holds nothing this node has.
    const auto st = sql(state_dir, h->name, "SHOW SLAVE STATUS\\G", 10s, true);
    was_replicating = st.ok && st.out.find("Slave_IO_Running: Yes") != std::string::npos &&
                      st.out.find("Slave_SQL_Running: Yes") != std::string::npos;
    sql(state_dir, h->name, "STOP SLAVE", 30s);  // not answering: not replicating either
    const std::string primary_pos =
        text::trim(sql_checked(state_dir, p.name, "SELECT @@GLOBAL.gtid_current_pos", 30s));
    sql_checked(state_dir, p.name, "FLUSH BINARY LOGS", 30s);
    auto primary_files = binlog_files(data + p.name + "/mysql");
    if (!primary_files.empty()) primary_files.pop_back();
    saved = save_errant(h->name, datadir, primary_files, primary_pos, errant);
    wrote_errant = !saved.empty();
    return saved.empty() ? std::string("none") : saved + " in " + errant;
  });
}

void Rebuild::stream_backup() {
  step("backup of " + p.name + " streamed to " + h->name + (tls ? " over TLS" : ""), [&] {
    std::error_code ec;
    fs::remove_all(staging, ec);
    fs::create_directories(staging);
    const auto tls_opts = [&](const topo::Host& x) {
      const std::string d = data + x.name + "/tls";
      return fmt::format(",cert={0}/server.crt,key={0}/server.key,cafile={1},verify=1", d,
                         lab_ca_path(state_dir));
    };
    const std::string listen = tls ? "OPENSSL-LISTEN:" + port + ",reuseaddr" + tls_opts(*h)
                                   : "TCP-LISTEN:" + port + ",reuseaddr";
    // The receiver first (one connection, then it ends), then the sender.
    auto receiver = std::async(std::launch::async, [&] {
      return run(in_host(t, h->name,
                         {"bash", "-c",
                          // -T: ends after 5 minutes without data (a sender that hung).
                          "set -o pipefail; socat -T 300 -u \"$1\" STDOUT | mbstream -x -C \"$2\"",
                          "bash", listen, staging}),
                 30min);
    });
    const std::string connect =
        tls ? "OPENSSL:" + h->address + ":" + port + tls_opts(p) : "TCP:" + h->address + ":" + port;
    // The receiver waits for its one connection: an empty stream ends it.
    const auto end_receiver = [&] {
      run(in_host(t, p.name, {"socat", "-u", "/dev/null", connect}), 10s);
      receiver.wait_for(30s);
    };
    const auto deadline = Clock::now() + 10s;
    while (run(in_host(t, h->name, {"ss", "-Hltn", "sport = :" + port})).out.empty()) {
      if (receiver.wait_for(0s) == std::future_status::ready) {
        throw std::runtime_error("the receiver on " + h->name +
                                 " ended: " + text::trim(receiver.get().err));
      }
      if (Clock::now() > deadline) {
        end_receiver();
        throw std::runtime_error(
            fmt::format("{} does not listen on port {} within 10 s", h->name, port));
      }
      std::this_thread::sleep_for(20ms);  // poll interval
    }
    const auto sent =
        run(in_host(t, p.name,
                    {"bash", "-c",
                     "set -o pipefail; mkdir -p \"$2\" && mariadb-backup --defaults-file=\"$1\" "
                     "--backup --user=root --socket=\"$4\" --stream=xbstream --target-dir=\"$2\" "
                     "| socat -u STDIN \"$3\"; s=$?; rm -rf \"$2\"; exit $s",
                     "bash", StatePaths(state_dir).my_cnf(p.name), staging + ".tmp", connect,
                     StatePaths(state_dir).mysqld_socket(p.name)}),
            30min);
    if (sent.exit_code != 0) {
      end_receiver();
      throw std::runtime_error("mariadb-backup of " + p.name + " failed: " +
                               text::trim(sent.err).substr(text::trim(sent.err).size() > 600
                                                               ? text::trim(sent.err).size() - 600
                                                               : 0));
    }
    if (receiver.wait_for(60s) != std::future_status::ready) {
      throw std::runtime_error("the stream to " + h->name + " did not end within 60 s");
    }
    const auto got = receiver.get();
    if (got.exit_code != 0)
      throw std::runtime_error("receiving on " + h->name + ": " + text::trim(got.err));
    return std::string();
  });
}

void Rebuild::prepare_backup() {
  step("backup prepared", [&] {
    const auto r = run({"mariadb-backup", "--prepare", "--target-dir=" + staging}, 30min);
    if (r.exit_code != 0)
      throw std::runtime_error("mariadb-backup --prepare: " + text::trim(r.err).substr(0, 600));
    // The primary's binlog position the backup matches (MariaDB 11 renames the file).
    std::string text = read_text_or_empty(staging + "/xtrabackup_binlog_info");
    if (text.empty()) text = read_text_or_empty(staging + "/mariadb_backup_binlog_info");
    std::istringstream info(text);
    std::string file, pos;
    info >> file >> pos >> gtid;
    if (gtid.empty()) throw std::runtime_error("the backup names no GTID (xtrabackup_binlog_info)");
    return "at GTID " + gtid;
  });
}

// A promotion since the start (the manager's, or by hand) could have made the node the
// primary: its data is replaced only while the roles are what they were.
void Rebuild::check_roles() {
  step("the roles unchanged (" + p.name + " the primary, " + h->name + " read-only)", [&] {
    const std::string now = with_current_primary(topology, state_dir).primary().name;
    if (now != p.name) {
      throw std::runtime_error(
          fmt::format("the primary is {} now, not {}: nothing replaced", now, p.name));
    }
    const auto ro = sql(state_dir, h->name, "SELECT @@GLOBAL.read_only", 10s);
    if (ro.ok && ro.out != "1") {
      throw std::runtime_error(h->name + " is writable: nothing replaced");
    }
    return std::string();
  });
}

// A failure from here on puts the old data back and starts it (the node as it was, for
// the next rebuild), but for the last step's: the node then has its new data and place.
void Rebuild::replace_data() {
  try {
    swap_data();
    record_position();
    start_mariadb();
  } catch (const std::exception&) {
    if (swapped) {
      put_back();
    } else if (stopped) {
      try {
        service(ServiceAction::Start);
      } catch (const std::exception& e) {
        std::fprintf(out, "starting %s's MariaDB again failed: %s\n", h->name.c_str(), e.what());
      }
    }
    throw;
  }
}

void Rebuild::put_back() {
  try {
    service(ServiceAction::Stop);
    kill_leftovers();
    // Moved aside first: cut short here, the next rebuild finds the old data alone.
    const std::string failed = data + h->name + "/mysql.failed";
    fs::remove_all(failed);
    if (fs::exists(datadir)) fs::rename(datadir, failed);
    fs::rename(old, datadir);
    fs::remove(saved_marker);
    fs::remove_all(failed);
    if (wrote_errant) fs::remove(errant);  // the node holds them again
    service(ServiceAction::Start);
    std::fprintf(out,
                 "the rebuild failed after replacing %s's data: its old data is back, "
                 "its MariaDB started\n",
                 h->name.c_str());
  } catch (const std::exception& e) {
    std::fprintf(out,
                 "putting %s's old data back failed too (%s); the next rebuild takes "
                 "it up\n",
                 h->name.c_str(), e.what());
  }
}

void Rebuild::swap_data() {
  step(h->name + "'s MariaDB stopped, its data replaced", [&] {
    std::ofstream(saved_marker) << (saved.empty() ? std::string("none") : saved + " in " + errant)
                                << "\n";
    stopped = true;
    service(ServiceAction::Stop);
    fs::rename(datadir, old);
    swapped = true;
    fs::rename(staging, datadir);
    run_checked({"chown", "-R", "mysql:mysql", datadir});
    fs::permissions(datadir, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec);
    return "the old data in " + old + " until the end";
  });
}

void Rebuild::record_position() {
  step(h->name + ": replication position " + gtid + " recorded (no network)", [&] {
    // Before the node is seen by anyone (the failover manager rejoins a node from its own
    // position): a server of its own on the new data, without networking or replication.
    const std::string sock = data + h->name + "/rebuild.sock",
                      pid = data + h->name + "/rebuild.pid";
    fs::remove(pid);  // a stale one would name some other process
    auto server = std::async(std::launch::async, [&] {
      return run(
          {"mariadbd", "--defaults-file=" + StatePaths(state_dir).my_cnf(h->name),
           "--skip-networking", "--skip-slave-start", "--socket=" + sock, "--pid-file=" + pid},
          10min);
    });
    const auto client = [&](const std::string& statement) {
      return run({"mariadb", "--no-defaults", "--socket=" + sock, "-uroot", "--batch",
                  "--skip-column-names", "-e", statement},
                 30s);
    };
    // The server started here, by its pid, when it will not answer or stop.
    const auto kill_server = [&] {
      kill_leftovers();
      server.wait_for(30s);
    };
    const auto deadline = Clock::now() + 60s;
    while (client("SELECT 1").exit_code != 0) {
      if (server.wait_for(0s) == std::future_status::ready) {
        const auto r = server.get();
        throw std::runtime_error("mariadbd on the new data of " + h->name +
                                 " ended: " + text::trim(r.out + r.err).substr(0, 600));
      }
      if (Clock::now() > deadline) {
        kill_server();
        throw std::runtime_error("mariadbd on the new data did not answer within 60 s");
      }
      std::this_thread::sleep_for(100ms);  // poll interval
    }
    // The server on that socket must be the one on the new data (a server left by a
    // rebuild cut short, on the same socket path, once took this for itself).
    const auto dir = client("SELECT @@GLOBAL.datadir");
    std::error_code same_ec;
    if (!fs::equivalent(text::trim(dir.out), datadir, same_ec)) {
      kill_server();
      throw std::runtime_error(fmt::format("the server on {} serves {}, not {}: nothing set", sock,
                                           text::trim(dir.out + dir.err), datadir));
    }
    const auto set = client(fmt::format("RESET SLAVE ALL; SET GLOBAL gtid_slave_pos = '{}'", gtid));
    run({"mariadb-admin", "--no-defaults", "--socket=" + sock, "-uroot", "shutdown"}, 60s);
    if (server.wait_for(60s) != std::future_status::ready) {
      kill_server();
      throw std::runtime_error("mariadbd on the new data did not stop within 60 s");
    }
    if (set.exit_code != 0)
      throw std::runtime_error("SET GLOBAL gtid_slave_pos: " + text::trim(set.err));
    return std::string();
  });
}

void Rebuild::start_mariadb() {
  step(h->name + "'s MariaDB started", [&] {
    service(ServiceAction::Start);
    const auto deadline = Clock::now() + 60s;
    while (!sql(state_dir, h->name, "SELECT 1", 5s).ok) {
      if (Clock::now() > deadline)
        throw std::runtime_error(h->name + "'s MariaDB did not answer within 60 s");
      std::this_thread::sleep_for(100ms);  // poll interval
    }
    return std::string();
  });
}

void Rebuild::replicate() {
  step(h->name + " replicates from " + p.name, [&] {
    // With automatic failover the manager rejoins it (it sees a read-only node replicating
    // from nobody, holding nothing the primary lacks), switching semi-sync on with it;
    // otherwise, or while the manager is paused, this command points it.
    bool manager = t.automatic_failover() && profile && *profile == render::Profile::Hardened;
    if (manager) {
      try {
        manager = !boost::json::parse(failover_state(t)).as_object().at("paused").as_bool();
      } catch (const std::exception&) {
        manager = false;  // not answering: nobody else will
      }
    }
    if (!manager) {
      const std::string password =
          text::trim(read_text_or_empty(StatePaths(state_dir).repl_password()));
      sql_secret(
          state_dir, h->name,
          "SET GLOBAL read_only = ON; " +
              tools::change_master_sql(p.address, t.db_port, password,
                                       tls ? lab_ca_path(state_dir) : std::string(), "slave_pos") +
              "; START SLAVE;\n");
    }
    const auto deadline = Clock::now() + 60s;
    for (;;) {
      const auto st = sql(state_dir, h->name, "SHOW SLAVE STATUS\\G", 5s, true);
      if (st.ok && st.out.find("Master_Host: " + p.address + "\n") != std::string::npos &&
          st.out.find("Slave_IO_Running: Yes") != std::string::npos &&
          st.out.find("Slave_SQL_Running: Yes") != std::string::npos) {
        break;
      }
      if (Clock::now() > deadline) {
        throw std::runtime_error(h->name + " does not replicate from " + p.name +
                                 " within 60 s: " + st.out.substr(0, 400) + st.err);
      }
      std::this_thread::sleep_for(100ms);  // poll interval
    }
    std::error_code ec;
    fs::remove_all(old, ec);
    fs::remove(saved_marker, ec);
    return std::string();
  });
}

void Rebuild::step(const std::string& what, const std::function<std::string()>& f) {
  printer.note(what, f);
}

void Rebuild::service(ServiceAction a) const {
  control_service(t, state_dir, h->name + "/mariadb", a, 60s);
}

void Rebuild::kill_leftovers() const {
  kill_rebuild_leftovers(data + h->name, "/run/netns/" + in_host(t, h->name, {})[3],
                         "-LISTEN:" + port + ",");
}

}  // namespace

void rebuild(const topo::Topology& topology, const std::string& state_dir, std::string_view host,
             std::FILE* out) {
  require_up(topology, state_dir);
  Rebuild r(topology, state_dir, host, out);
  const FdGuard lock_guard = r.lock();
  r.take_up_earlier_attempt();
  r.check_certificates();
  const auto t0 = Clock::now();
  std::fprintf(out, "rebuilding %s from %s (its data replaced by a backup of the primary)\n",
               r.h->name.c_str(), r.p.name.c_str());
  r.primary_answers();
  // Until its data is replaced, a failure leaves the node as it was: its replication
  // started again if it ran, and this attempt's file removed (the node still holds those
  // transactions; the next attempt saves them again).
  const OnFailure before_swap{[&r] { r.undo_before_swap(); }};
  r.save_transactions();
  r.stream_backup();
  r.prepare_backup();
  r.check_roles();
  r.replace_data();
  r.replicate();
  std::fprintf(
      out, "%s rebuilt from %s (%.1f s)%s\n", r.h->name.c_str(), r.p.name.c_str(),
      std::chrono::duration<double>(Clock::now() - t0).count(),
      r.saved.empty() ? "" : ("; its transactions the primary lacked: " + r.errant).c_str());
}

}  // namespace webstack::lab
