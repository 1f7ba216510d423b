// `webstack dashboard` against the shared lab: its API's guards (the token, the Origin, the
// Host), its load generator from the client host, and the page in headless Chromium
// (dashboard/test/dashboard.mjs, Playwright): every host shown, round robin visible,
// web-01 down within 5 s of a stop from the page and back after a start. The dashboard
// runs on 127.0.0.1 (root namespace), as for a user; the site's traffic comes from the
// client host.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "common/process.hpp"
#include "http_client.hpp"
#include "test_lab.hpp"

extern char** environ;  // NOLINT: POSIX declares it nowhere

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using webstack::it::HttpClient;
using webstack::it::HttpResponse;
using webstack::test::wait_for;

constexpr const char* kToken = "0123456789abcdef0123456789abcdef";

// The dashboard as a child process for the suite; SIGTERM and reaped at the end.
class DashboardTest : public webstack::test::SharedLabTest {
 protected:
  static void SetUpTestSuite() {
    SharedLabTest::SetUpTestSuite();
    port_ = webstack::test::free_port();
    log_ = lab_->dir() + "/dashboard.log";
    std::vector<std::string> argv = {"env",
                                     fmt::format("WEBSTACK_DASHBOARD_TOKEN={}", kToken),
                                     webstack::test::cli_path(),
                                     "dashboard",
                                     "-f",
                                     lab_->topology(),
                                     "--state-dir",
                                     lab_->state(),
                                     "--port",
                                     std::to_string(port_)};
    std::vector<char*> args;
    args.reserve(argv.size() + 1);
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    posix_spawn_file_actions_t files;
    posix_spawn_file_actions_init(&files);
    posix_spawn_file_actions_addopen(&files, 1, log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_adddup2(&files, 1, 2);
    if (posix_spawnp(&pid_, "env", &files, nullptr, args.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&files);
    ASSERT_GT(pid_, 0);
    ASSERT_TRUE(wait_for(
        [] {
          try {
            return HttpClient(port_, 2s).get("/api/state").status == 200;
          } catch (const std::exception&) {
            return false;
          }
        },
        30s, 100ms))
        << webstack::test::read_file(log_);
  }
  static void TearDownTestSuite() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int status = 0;
      ::waitpid(pid_, &status, 0);
      pid_ = -1;
    }
  }

  static HttpResponse action(const std::string& body, const webstack::it::HeaderList& headers) {
    HttpClient c(port_, 10s);
    return c.request("POST", "/api/action", headers, body);
  }
  static webstack::it::HeaderList good_headers() {
    return {{"X-Dashboard-Token", kToken},
            {"Content-Type", "application/json"},
            {"Origin", fmt::format("http://127.0.0.1:{}", port_)}};
  }

  static inline pid_t pid_ = -1;
  static inline std::uint16_t port_ = 0;
  static inline std::string log_;
};

TEST_F(DashboardTest, StateChangesNeedTheTokenTheOwnOriginAndTheLoopbackHost) {
  const std::string stop = R"({"action":"stop","target":"web-01/webstack-app"})";
  // No token, a wrong one: refused, and nothing happens to web-01.
  auto r = action(stop, {{"Content-Type", "application/json"}});
  EXPECT_EQ(r.status, 403) << r.body;
  r = action(stop, {{"X-Dashboard-Token", "f123456789abcdef0123456789abcdef"},
                    {"Content-Type", "application/json"}});
  EXPECT_EQ(r.status, 403) << r.body;
  // The right token from a foreign page (its Origin), or through a name that resolves to
  // loopback (DNS rebinding: its Host): refused.
  r = action(stop, {{"X-Dashboard-Token", kToken},
                    {"Content-Type", "application/json"},
                    {"Origin", "http://evil.example"}});
  EXPECT_EQ(r.status, 403) << r.body;
  EXPECT_NE(r.body.find("foreign Origin"), std::string::npos) << r.body;
  r = action(stop, {{"X-Dashboard-Token", kToken},
                    {"Content-Type", "application/json"},
                    {"Host", fmt::format("evil.example:{}", port_)}});
  EXPECT_EQ(r.status, 403) << r.body;
  {
    HttpClient c(port_, 10s);
    EXPECT_EQ(c.get("/api/state", {{"Host", "evil.example"}}).status, 403);
  }
  // A form post (no JSON) and unknown actions or targets: refused, each named.
  r = action(stop, {{"X-Dashboard-Token", kToken}, {"Content-Type", "text/plain"}});
  EXPECT_EQ(r.status, 415) << r.body;
  r = action(R"({"action":"explode"})", good_headers());
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("unknown action \\\"explode\\\""), std::string::npos) << r.body;
  r = action(R"({"action":"stop","target":"web-01/--purge"})", good_headers());
  EXPECT_EQ(r.status, 400) << r.body;
  r = action(R"({"action":"stop","target":"web-09/nginx"})", good_headers());
  EXPECT_EQ(r.status, 400) << r.body;
  r = action("{not json", good_headers());
  EXPECT_EQ(r.status, 400) << r.body;
  // No action was started (none in the events, none running), and web-01's app runs:
  // {"name":"webstack-app","up":true,...}.
  const auto state = HttpClient(port_, 10s).get("/api/state").body;
  EXPECT_EQ(state.find("stop web-01"), std::string::npos) << state.substr(0, 2000);
  EXPECT_NE(state.find("\"action\":{\"running\":false"), std::string::npos);
  const auto st = lab_->cli({"status", "--json"}, 30s);
  const auto app = st.out.find("\"name\":\"webstack-app\"", st.out.find("\"name\":\"web-01\""));
  ASSERT_NE(app, std::string::npos) << st.out;
  EXPECT_EQ(st.out.compare(app, 31, "\"name\":\"webstack-app\",\"up\":true"), 0)
      << st.out.substr(app, 80);
  // A malformed request line: 400, the server goes on.
  {
    HttpClient c(port_, 10s);
    c.send_raw("GARBAGE\r\n\r\n");
    EXPECT_EQ(c.read_response().status, 400);
  }
  EXPECT_EQ(HttpClient(port_, 10s).get("/api/state").status, 200);
}

TEST_F(DashboardTest, TheLoadGeneratorShowsRoundRobinFromTheClientHost) {
  auto r = action(R"({"action":"load","state":"start","rate":40})", good_headers());
  ASSERT_EQ(r.status, 202) << r.body;
  std::string seen;
  const bool both = wait_for(
      [&] {
        seen = HttpClient(port_, 10s).get("/api/requests?after=0").body;
        return seen.find("\"served_by\":\"web-01\"") != std::string::npos &&
               seen.find("\"served_by\":\"web-02\"") != std::string::npos &&
               seen.find("\"db_node\":\"web-0") != std::string::npos;
      },
      20s, 200ms);
  r = action(R"({"action":"load","state":"stop"})", good_headers());
  EXPECT_EQ(r.status, 202) << r.body;
  EXPECT_TRUE(both) << seen;
  const auto state = HttpClient(port_, 10s).get("/api/state").body;
  const auto load = state.substr(state.find("\"load\":{"));
  EXPECT_EQ(load.rfind("\"load\":{\"running\":false,", 0), 0u) << load.substr(0, 200);
  EXPECT_NE(load.find("\"failed\":0,"), std::string::npos) << load.substr(0, 200);
  EXPECT_EQ(action(R"({"action":"load","state":"start","rate":5000})", good_headers()).status, 400);
}

// The page in a browser: dashboard/test/dashboard.mjs (Playwright driving Debian's
// chromium) clicks the page's own buttons; its screenshot is kept as an artifact.
TEST_F(DashboardTest, TheBrowserShowsTheSiteAndItsFaults) {
  const std::string dir = WEBSTACK_SOURCE_DIR "/dashboard/test";
  ASSERT_TRUE(fs::exists(fmt::format("{}/node_modules/playwright-core", dir)))
      << "npm ci in " << dir << " (scripts/setup.sh does it)";
  const std::string shot = fs::absolute("artifacts/dashboard.png").string();
  fs::create_directories(fs::path(shot).parent_path());
  const auto r = ::webstack::run(
      {"env", fmt::format("DASHBOARD_URL=http://127.0.0.1:{}/#token={}", port_, kToken),
       fmt::format("SCREENSHOT={}", shot), "HOSTS=lb-01,lb-02,web-01,web-02,mon-01,client", "node",
       fmt::format("{}/dashboard.mjs", dir)},
      3min);
  std::printf("%s", r.out.c_str());
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_TRUE(fs::exists(shot));
  std::printf("screenshot: %s\n", shot.c_str());
  // Whatever happened: web-01's app runs again for the suites after this one.
  lab_->cli({"start", "web-01/webstack-app"}, 60s);
}

}  // namespace
