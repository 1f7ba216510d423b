#include "test_lab.hpp"

#include "http_client.hpp"

#include <fmt/format.h>
#include <boost/json.hpp>
#include "lab/status.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <sstream>

namespace webstack::test {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string cli_path() {
  return (fs::read_symlink("/proc/self/exe").parent_path() / "webstack").string();
}

std::uint16_t free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ADD_FAILURE() << "cannot bind a loopback port: " << std::strerror(errno);
  }
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

std::vector<std::string> processes_naming(const std::string& text) {
  std::vector<std::string> found;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    const auto name = e.path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit) ||
        std::stoi(name) == ::getpid()) {
      continue;
    }
    std::ifstream in(e.path() / "cmdline", std::ios::binary);
    std::string cmd((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::replace(cmd.begin(), cmd.end(), '\0', ' ');
    if (cmd.find(text) != std::string::npos) found.push_back(fmt::format("{}: {}", name, cmd));
  }
  return found;
}

std::thread in_namespace(const std::string& ns, std::function<void()> f) {
  return std::thread([ns, f = std::move(f)] {
    const int fd = ::open(("/run/netns/" + ns).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) {
      ADD_FAILURE() << "cannot join network namespace " << ns << ": " << std::strerror(errno);
      if (fd >= 0) ::close(fd);
      return;
    }
    ::close(fd);
    f();
  });
}

SiteLoad::SiteLoad(const std::string& ns, const std::string& address, const std::string& ca_file,
                   std::chrono::seconds bound, std::chrono::milliseconds pace, int max_requests) {
  running_ = 3;
  const auto worker = [&, this](bool post) {
    return in_namespace(ns, [this, post, address, ca_file, bound, pace, max_requests] {
      it::HttpClient c(443, std::chrono::seconds(10), address);
      c.use_tls({ca_file, "www.foobar.test"});
      const auto deadline = std::chrono::steady_clock::now() + bound;
      auto next = std::chrono::steady_clock::now();
      const auto run = std::random_device{}();
      int sent = 0;
      while (!stop_ && std::chrono::steady_clock::now() < deadline &&
             (max_requests == 0 || started_++ < max_requests)) {
        next += pace;
        std::this_thread::sleep_until(next);  // the traffic's rate, not a synchronisation
        try {
          // Each post with a key of its own: the site may retry it on the way.
          const auto r =
              post ? c.post("/api/messages", R"({"author":"load","text":"steady traffic"})",
                            "application/json",
                            {{"Idempotency-Key", fmt::format("\"load-{}-{}\"", run, ++sent)}})
                   : c.get("/db");
          if (r.status != (post ? 201 : 200)) {
            throw std::runtime_error("status " + std::to_string(r.status));
          }
          ++(post ? posts_ : gets_);
        } catch (const std::exception& e) {
          std::lock_guard lock(m_);
          if (failed_++ == 0) first_failure_ = e.what();
          c.close();
        }
      }
      if (--running_ == 0 && !stop_) {
        std::lock_guard lock(m_);
        finished_ = std::chrono::steady_clock::now();
      }
    });
  };
  workers_.push_back(worker(false));
  workers_.push_back(worker(false));
  workers_.push_back(worker(true));
}

KeyedPost keyed_post(it::HttpClient& c, const std::string& author, const std::string& text,
                     std::chrono::milliseconds give_up) {
  KeyedPost p;
  const auto until = std::chrono::steady_clock::now() + give_up;
  const std::string body = R"({"author":")" + author + R"(","text":")" + text + R"("})";
  // A nonce of this process too: a key used by an earlier run on a lab kept up (keys
  // live 24 h) would be answered from its stored write instead of writing.
  static const std::string nonce = fmt::format("{:08x}", std::random_device{}());
  const std::string key = "\"" + author + "/" + text + "/" + nonce + "\"";
  for (;;) {
    ++p.attempts;
    p.status = 0;
    try {
      const auto r = c.post("/api/messages", body, "application/json", {{"Idempotency-Key", key}});
      p.status = r.status;
      if (r.status == 201) {
        p.id = boost::json::parse(r.body).at("id").to_number<std::int64_t>();
        p.gtid = r.header("X-GTID");
        p.node = r.header("X-DB-Node");
        p.replayed = r.header("Idempotent-Replayed") == "true";
      }
    } catch (const std::exception&) {
      c.close();
    }
    if (p.attempts == 1) p.first_status = p.status;
    if (p.status == 201 || std::chrono::steady_clock::now() >= until) return p;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // pacing of the client's retries
  }
}

std::string stored_twice(const TestLab& lab, const std::string& host, const std::string& author) {
  std::string out;
  std::istringstream rows(
      lab.sql(host, "SELECT body, COUNT(*) FROM webstack.messages WHERE author = '" + author +
                        "' GROUP BY body HAVING COUNT(*) > 1"));
  for (std::string row; std::getline(rows, row);) {
    const auto tab = row.find('\t');
    out += fmt::format("{}{} x{}", out.empty() ? "" : ", ", row.substr(0, tab),
                       tab == std::string::npos ? "?" : row.substr(tab + 1));
  }
  return out;
}

std::optional<std::chrono::steady_clock::time_point> SiteLoad::finished() const {
  std::lock_guard lock(m_);
  return finished_;
}

void SiteLoad::stop() {
  stop_ = true;
  for (auto& w : workers_) {
    if (w.joinable()) w.join();
  }
}

std::string SiteLoad::first_failure() const {
  std::lock_guard lock(m_);
  return first_failure_;
}

long long balanced_requests(const TestLab& lab) {
  long long n = 0;
  for (const char* lb : {"lb-01", "lb-02"})
    for (const auto& s : lab::lb_servers(lab.state(), lb)) n += s.sessions_total;
  return n;
}

bool wait_for(const std::function<bool()>& pred, std::chrono::milliseconds timeout,
              std::chrono::milliseconds interval) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(interval);  // poll interval, not a synchronisation
  }
  return pred();
}

namespace {

SharedLab g_shared;

class SharedLabEnvironment : public ::testing::Environment {
 public:
  void TearDown() override {
    delete g_shared.lab;
    g_shared.lab = nullptr;
  }
};

[[maybe_unused]] const auto* const g_environment =
    ::testing::AddGlobalTestEnvironment(new SharedLabEnvironment);

}  // namespace

SharedLab& shared_lab() {
  if (g_shared.lab == nullptr && ::geteuid() == 0) {
    g_shared.lab = new TestLab("wsr");
    const auto up = g_shared.lab->cli({"up"}, 180s);
    g_shared.up_ok = up.exit_code == 0;
    g_shared.up_output = up.out + up.err;
  }
  return g_shared;
}

TestLab::TestLab(const std::string& prefix, const std::string& web01_extra, bool active_active) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%.3s%05x", prefix.c_str(),
                static_cast<unsigned>(::getpid()) & 0xfffffu);
  name_ = buf;
  std::random_device rd;
  net_ = "10.198." + std::to_string(16 + static_cast<int>(rd() % 224)) + ".";
  edge_port_ = free_port();
  dir_ = "/tmp/" + name_ + "-site";
  fs::remove_all(dir_);
  fs::create_directories(dir_);
  // Readable by everyone: the not-root test runs the CLI as nobody on this topology.
  fs::permissions(dir_, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                            fs::perms::others_read | fs::perms::others_exec);
  state_ = dir_ + "/state";
  topology_ = dir_ + "/site.toml";
  std::ofstream out(topology_);
  // Three distinct ports (each bound and released: the kernel may hand one out twice).
  do prometheus_port_ = free_port();
  while (prometheus_port_ == edge_port_);
  do alertmanager_port_ = free_port();
  while (alertmanager_port_ == edge_port_ || alertmanager_port_ == prometheus_port_);
  out << "[lab]\nname = \"" << name_ << "\"\nsubnet = \"" << net_
      << "0/24\"\nedge_port = " << edge_port_ << "\nprometheus_port = " << prometheus_port_
      << "\nalertmanager_port = " << alertmanager_port_ << "\n"
      << (active_active
              ? "[lb]\nmode = \"active-active\"\nvirtual_addresses = [\"" + net_ + "5\", \"" +
                    net_ + "6\"]\n"
              : "[lb]\nmode = \"active-passive\"\nvirtual_addresses = [\"" + net_ + "5\"]\n")
      << "[[host]]\nname = \"lb-01\"\naddress = \"" << net_ << "10\"\nroles = [\"lb\"]\n"
      << "[[host]]\nname = \"lb-02\"\naddress = \"" << net_ << "14\"\nroles = [\"lb\"]\n"
      << "[[host]]\nname = \"web-01\"\naddress = \"" << net_ << "11\"\n"
      << "roles = [\"web\", \"db\"]\ndb = \"primary\"\n"
      << web01_extra << "[[host]]\nname = \"web-02\"\naddress = \"" << net_ << "12\"\n"
      << "roles = [\"web\", \"db\"]\ndb = \"replica\"\n"
      << "[[host]]\nname = \"mon-01\"\naddress = \"" << net_ << "20\"\nroles = [\"monitor\"]\n"
      << "[[host]]\nname = \"client\"\naddress = \"" << net_ << "100\"\nroles = [\"client\"]\n";
}

TestLab::~TestLab() {
  const auto r = cli({"down", "--purge"}, 30s);
  if (r.exit_code != 0) {
    ADD_FAILURE() << "down --purge of lab " << name_ << " failed: " << r.out << r.err;
  }
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

::webstack::ProcessResult TestLab::cli(std::vector<std::string> args,
                                       std::chrono::milliseconds timeout) const {
  std::vector<std::string> argv = {cli_path(), args.front(), "-f", topology_};
  if (args.front() != "exec") argv.insert(argv.end(), {"--state-dir", state_});
  argv.insert(argv.end(), args.begin() + 1, args.end());
  return ::webstack::run(argv, timeout);
}

std::string TestLab::client_curl(const std::vector<std::string>& curl_args) const {
  std::vector<std::string> args = {"exec",
                                   "client",
                                   "--",
                                   "curl",
                                   "-s",
                                   "--max-time",
                                   "5",
                                   "--cacert",
                                   ca_file(),
                                   "--resolve",
                                   "www.foobar.test:443:" + lb_address()};
  args.insert(args.end(), curl_args.begin(), curl_args.end());
  const auto r = cli(args, 15s);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return r.out;
}

namespace {
::webstack::ProcessResult root_sql(const std::string& state, const std::string& host,
                                   const std::string& statement) {
  return ::webstack::run(
      {"mariadb", "--defaults-file=" + state + "/hosts/" + host + "/mariadb/my.cnf", "--user=root",
       "--protocol=SOCKET", "--batch", "--skip-column-names", "-e", statement},
      30s);
}
}  // namespace

std::string TestLab::sql(const std::string& host, const std::string& statement) const {
  const auto r = root_sql(state_, host, statement);
  EXPECT_EQ(r.exit_code, 0) << statement << ": " << r.err;
  return r.out;
}

std::string TestLab::try_sql(const std::string& host, const std::string& statement) const {
  const auto r = root_sql(state_, host, statement);
  return r.exit_code == 0 ? r.out : std::string();
}

}  // namespace webstack::test
