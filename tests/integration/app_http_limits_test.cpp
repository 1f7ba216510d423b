// Bad HTTP input gets the right status and a closed connection, never a crash or a hang,
// while other connections keep being served. Also keep-alive and pipelining.
#include <gtest/gtest.h>

#include <string>

#include "app_process.hpp"
#include "http_client.hpp"
#include "mariadb_pair.hpp"

namespace webstack::it {
namespace {

class HttpLimits : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto opts = app_options_for(MariaDbPair::shared());
    for (const char* s :
         {"server.header_timeout_ms=500", "server.idle_timeout_ms=1500", "server.header_limit=2048",
          "server.body_limit=1024", "server.threads=2"}) {
      opts.settings.emplace_back(s);
    }
    app_ = new AppProcess(std::move(opts));
  }
  static void TearDownTestSuite() {
    delete app_;
    app_ = nullptr;
  }
  // A bystander connection must be answered while the bad one is handled.
  void expect_bystander_served() {
    auto r = bystander_.get("/plaintext");
    EXPECT_EQ(r.status, 200);
  }
  static AppProcess* app_;
  HttpClient bad_{app_->port(), 5s};
  HttpClient bystander_{app_->port(), 5s};
};
AppProcess* HttpLimits::app_ = nullptr;

TEST_F(HttpLimits, SlowHeadersGet408) {
  expect_bystander_served();
  bad_.send_raw("GET /plaintext HTTP/1.1\r\nHost: x\r\nX-Slow: ");
  auto start = std::chrono::steady_clock::now();
  // While the slow client dribbles, the bystander keeps working.
  expect_bystander_served();
  auto r = bad_.read_response();
  EXPECT_EQ(r.status, 408);
  EXPECT_EQ(r.header("Connection"), "close");
  // The server's header timeout (500 ms) answered, not the client's (5 s): a bound with
  // room for a slow (sanitizer) build on a busy machine.
  EXPECT_LT(std::chrono::steady_clock::now() - start, 4s);
  EXPECT_TRUE(bad_.wait_closed(2s));
  expect_bystander_served();
}

TEST_F(HttpLimits, OversizedHeadersGet431) {
  bad_.send_raw("GET /plaintext HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(4096, 'a') +
                "\r\n\r\n");
  auto r = bad_.read_response();
  EXPECT_EQ(r.status, 431);
  EXPECT_TRUE(bad_.wait_closed(2s));
  expect_bystander_served();
}

TEST_F(HttpLimits, OversizedBodyGets413) {
  bad_.send_raw(
      "POST /api/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "
      "5000\r\n\r\n" +
      std::string(5000, 'a'));
  EXPECT_EQ(bad_.read_response().status, 413);
  expect_bystander_served();
}

TEST_F(HttpLimits, OversizedChunkedBodyGets413) {
  std::string chunk(800, 'a');
  bad_.send_raw(
      "POST /api/messages HTTP/1.1\r\nHost: x\r\nContent-Type: "
      "application/json\r\nTransfer-Encoding: chunked\r\n\r\n320\r\n" +
      chunk + "\r\n320\r\n" + chunk + "\r\n0\r\n\r\n");
  EXPECT_EQ(bad_.read_response().status, 413);
  expect_bystander_served();
}

TEST_F(HttpLimits, MalformedRequestsGet400ThenClose) {
  for (const std::string& raw :
       {std::string("GARBAGE\r\n\r\n"), std::string("GET /plaintext HTTP/2.0\r\n\r\n"),
        std::string("GET /plaintext HTTP/1.1\r\nBad Header\r\n\r\n"),
        std::string("GET /plaintext HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
        std::string("GET plaintext HTTP/1.1\r\nHost: x\r\n\r\n"),
        std::string("\x01\x02\x03\r\n\r\n", 7)}) {
    HttpClient c(app_->port(), 5s);
    c.send_raw(raw);
    auto r = c.read_response();
    EXPECT_EQ(r.status, 400) << raw;
    EXPECT_TRUE(c.wait_closed(2s)) << raw;
  }
  expect_bystander_served();
}

TEST_F(HttpLimits, IdleKeepAliveConnectionsAreClosedSilently) {
  EXPECT_EQ(bad_.get("/plaintext").status, 200);
  EXPECT_TRUE(bad_.wait_closed(5s));  // idle_timeout 1.5 s, no bytes sent back
}

TEST_F(HttpLimits, ExpectContinueGetsTheGoAhead) {
  const std::string body = R"({"author":"curl","text":"asked first"})";
  bad_.send_raw(
      "POST /api/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
      "Expect: 100-continue\r\nContent-Length: " +
      std::to_string(body.size()) + "\r\n\r\n");
  EXPECT_EQ(bad_.read_response().status, 100);
  bad_.send_raw(body);
  EXPECT_EQ(bad_.read_response().status, 201);
  // Too large: refused from the declared length, without a go-ahead.
  bad_.send_raw(
      "POST /api/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
      "Expect: 100-continue\r\nContent-Length: 5000\r\n\r\n");
  EXPECT_EQ(bad_.read_response().status, 413);
}

TEST_F(HttpLimits, PipelinedRequestsAreAnsweredInOrder) {
  std::string batch;
  const char* paths[] = {"/plaintext", "/json", "/healthz", "/nope", "/plaintext"};
  for (const char* p : paths) batch += std::string("GET ") + p + " HTTP/1.1\r\nHost: x\r\n\r\n";
  bad_.send_raw(batch);
  EXPECT_EQ(bad_.read_response().body, "Hello, World!");
  EXPECT_EQ(bad_.read_response().body, R"({"message":"Hello, World!"})");
  EXPECT_EQ(bad_.read_response().body, "ok\n");
  EXPECT_EQ(bad_.read_response().status, 404);
  EXPECT_EQ(bad_.read_response().body, "Hello, World!");
}

TEST_F(HttpLimits, Http10ClosesUnlessKeepAliveIsAsked) {
  bad_.send_raw("GET /plaintext HTTP/1.0\r\n\r\n");
  auto r = bad_.read_response();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.version, "HTTP/1.0");
  EXPECT_TRUE(bad_.wait_closed(2s));
}

TEST_F(HttpLimits, BadConfigurationExitsBeforeBinding) {
  AppOptions opts = app_options_for(MariaDbPair::shared());
  opts.settings = {"server.port=70000"};
  opts.wait_healthy = false;
  AppProcess bad(std::move(opts));
  auto status = bad.wait_exit(10s);
  ASSERT_TRUE(status);
  EXPECT_EQ(WEXITSTATUS(*status), 2);
  EXPECT_NE(bad.log().find("server.port"), std::string::npos) << bad.log();
}

}  // namespace
}  // namespace webstack::it
