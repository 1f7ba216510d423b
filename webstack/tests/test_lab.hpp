// TestLab: a lab of its own for one system test (or one suite), driven through the
// `webstack` binary built beside the test. Its name is a prefix letter pair + a
// pid-derived suffix (<= 8 characters), its subnet a random 10.198.N.0/24, its edge port
// a free one, its state under /tmp/<name>-site. Requests to the site come from the client
// host's namespace, never from the root namespace (client_curl, in_namespace). The
// destructor runs `down --purge` and removes the directory, whatever happened.
#pragma once

#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/process.hpp"

namespace webstack::it {
class HttpClient;
}

namespace webstack::test {

class TestLab {
 public:
  // Writes the default topology (lb-01 and lb-02 sharing a virtual address, web-01
  // primary, web-02 replica, mon-01, client),
  // with free edge ports for the site, Prometheus and Alertmanager; starts
  // nothing. `prefix`: 3 letters that keep labs of one test binary apart.
  // `web01_extra`: more keys for web-01's [[host]] table (e.g. "app = \"php\"\n").
  // `active_active`: [lb] mode "active-active", addresses .5 (lb-01's) and .6 (lb-02's).
  explicit TestLab(const std::string& prefix, const std::string& web01_extra = "",
                   bool active_active = false);
  ~TestLab();
  TestLab(const TestLab&) = delete;
  TestLab& operator=(const TestLab&) = delete;

  // Runs `webstack <args[0]> -f <topology> [--state-dir <state>] <args[1..]>`.
  ::webstack::ProcessResult cli(std::vector<std::string> args,
                                std::chrono::milliseconds timeout) const;
  // curl -s --max-time 5 <curl_args> from the client host, the site's name resolved to
  // lb-01 and the lab CA trusted; returns stdout (expects exit 0).
  std::string client_curl(const std::vector<std::string>& curl_args) const;

  // The site's address: the load balancers' shared virtual address (lb-01 or lb-02 holds it).
  std::string lb_address() const { return net_ + "5"; }
  // The lab address ending in `last` (5 the virtual address, 10 lb-01, 11 web-01,
  // 12 web-02, 14 lb-02, 20 mon-01, 100 client).
  std::string address(int last) const { return net_ + std::to_string(last); }
  // https://www.foobar.test<path>: the site through lb-01, verified against the lab CA.
  std::string site_url(const std::string& path) const { return "https://www.foobar.test" + path; }
  std::string ca_file() const { return state_ + "/tls/ca.crt"; }
  std::string client_namespace() const { return name_ + "-client"; }
  // SQL as root on a database host, through its unix socket (no network); returns stdout.
  std::string sql(const std::string& host, const std::string& statement) const;
  // sql() for a node that may be down or restarting: "" when it does not answer.
  std::string try_sql(const std::string& host, const std::string& statement) const;

  const std::string& name() const { return name_; }
  const std::string& dir() const { return dir_; }
  const std::string& state() const { return state_; }
  const std::string& topology() const { return topology_; }
  std::uint16_t edge_port() const { return edge_port_; }
  std::uint16_t prometheus_port() const { return prometheus_port_; }
  std::uint16_t alertmanager_port() const { return alertmanager_port_; }

 private:
  std::string name_, net_, dir_, state_, topology_;
  std::uint16_t edge_port_ = 0;
  std::uint16_t prometheus_port_ = 0;
  std::uint16_t alertmanager_port_ = 0;
};

// One lab (default, hardened profile) shared by the suites that look at a running site:
// brought up on first use, `down --purge` when the test program ends (a gtest global
// environment). `up_ok` false: every user fails with `up_output`.
struct SharedLab {
  TestLab* lab = nullptr;
  bool up_ok = false;
  std::string up_output;  // stdout + stderr of `webstack up`
};
SharedLab& shared_lab();

// A fixture for suites on the shared lab: every test needs root and a lab that came up;
// `lab_` is the lab. A suite's own SetUp calls this one first.
class SharedLabTest : public ::testing::Test {
 public:
  static TestLab* lab() { return lab_; }

 protected:
  static void SetUpTestSuite() { lab_ = shared_lab().lab; }
  void SetUp() override {
    if (::geteuid() != 0) GTEST_FAIL() << "needs root";
    const auto& shared = shared_lab();
    ASSERT_TRUE(shared.up_ok) << "webstack up failed:\n" << shared.up_output;
  }
  static inline TestLab* lab_ = nullptr;
};

// The whole file ("" when it cannot be read).
std::string read_file(const std::string& path);

// The `webstack` binary beside this test binary.
std::string cli_path();

// A free TCP port on 127.0.0.1 (bound and released).
std::uint16_t free_port();

// Processes whose command line names `text` (other than this test).
std::vector<std::string> processes_naming(const std::string& text);

// Runs `f` on a new thread that has joined network namespace `ns` (setns acts on the
// calling thread only: the rest of the test stays in the root namespace). If the thread
// cannot join, it reports a test failure and does not run `f`.
std::thread in_namespace(const std::string& ns, std::function<void()> f);

// Steady traffic through the site as its visitors send it, from a client namespace: two
// workers GET /db and one POSTs to the guestbook, back to back over HTTPS (verified with
// `ca_file`) to `address`:443, until stop() or, whatever happens, `bound` has passed;
// each worker starts a request at most every `pace` (0: back to back); with `max_requests`
// (0: no limit) the workers stop after that many requests in all. A request fails on an
// error or a status other than 200 (GET) / 201 (POST).
class SiteLoad {
 public:
  SiteLoad(const std::string& ns, const std::string& address, const std::string& ca_file,
           std::chrono::seconds bound = std::chrono::seconds(180),
           std::chrono::milliseconds pace = std::chrono::milliseconds(0), int max_requests = 0);
  ~SiteLoad() { stop(); }
  SiteLoad(const SiteLoad&) = delete;
  SiteLoad& operator=(const SiteLoad&) = delete;
  void stop();  // joins the workers (idempotent)
  // When the last worker stopped by itself (`max_requests` or `bound` reached); unset
  // while one still runs, or when stop() ended them.
  std::optional<std::chrono::steady_clock::time_point> finished() const;
  int gets() const { return gets_; }
  int posts() const { return posts_; }
  int failed() const { return failed_; }
  std::string first_failure() const;

 private:
  std::atomic<bool> stop_{false};
  std::atomic<int> gets_{0}, posts_{0}, failed_{0}, started_{0}, running_{0};
  std::optional<std::chrono::steady_clock::time_point> finished_;  // guarded by m_
  mutable std::mutex m_;
  std::string first_failure_;
  std::vector<std::thread> workers_;
};

// One guestbook write under an Idempotency-Key, sent the way an application's own client
// would: again with the same key after no answer or a status other than 201, until it is
// acknowledged or `give_up` has passed (a browser would not resend a form by itself, so
// `first_status` is kept: what one try got). The key is "<author>/<text>/<a nonce of this
// process>".
struct KeyedPost {
  int first_status = 0;  // 0: no HTTP answer
  int status = 0;        // the last try's
  int attempts = 0;
  std::int64_t id = 0;
  std::string gtid, node;  // X-GTID and X-DB-Node of the acknowledgement
  bool replayed = false;   // acknowledged from the stored key (Idempotent-Replayed)
};
KeyedPost keyed_post(it::HttpClient& c, const std::string& author, const std::string& text,
                     std::chrono::milliseconds give_up);

// "text xN, ..." for every text of `author` stored more than once on `host` ("": none).
std::string stored_twice(const TestLab& lab, const std::string& host, const std::string& author);

// Requests the site's balancers (lb-01 and lb-02) have sent to the web hosts so far.
// Round robin is exact at the balancer; a test that counts its own requests' split sees
// it shifted by at most one per request somebody else (the monitor's probes) sent
// meanwhile, so the difference between the hosts' counts is at most 1 + those.
long long balanced_requests(const TestLab& lab);

// Checks `pred` every `interval` until it holds or `timeout` passes (one last check after
// the deadline). For conditions whose check is cheap (a stats socket read), where a busy
// loop would take the CPU from the processes being waited on.
bool wait_for(const std::function<bool()>& pred, std::chrono::milliseconds timeout,
              std::chrono::milliseconds interval = std::chrono::milliseconds(20));

}  // namespace webstack::test
