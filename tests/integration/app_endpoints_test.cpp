// Every endpoint of webstack-app against the rules of its issue, on a real MariaDB
// primary + replica.
#include <gtest/gtest.h>

#include <algorithm>
#include <regex>
#include <set>
#include <string>

#include "app_process.hpp"
#include "eventually.hpp"
#include "http_client.hpp"
#include "mariadb_pair.hpp"

namespace webstack::it {
namespace {

class Endpoints : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto opts = app_options_for(MariaDbPair::shared());
    opts.settings.push_back("server.served_by=web-test");
    opts.settings.push_back("server.threads=2");
    app_ = new AppProcess(std::move(opts));
    // Reads go to the replica once the app has seen it healthy.
    wait_replica_seen();
  }
  static void TearDownTestSuite() {
    delete app_;
    app_ = nullptr;
  }
  static void wait_replica_seen() {
    const auto replica = MariaDbPair::shared().address(MariaDbPair::kReplica);
    HttpClient c(app_->port());
    ASSERT_TRUE(eventually([&] { return c.get("/db").header("X-DB-Node") == replica; }, 10s))
        << "reads never reached the replica " << replica;
  }
  static AppProcess* app_;
  HttpClient client_{app_->port()};
};
AppProcess* Endpoints::app_ = nullptr;

// id and randomNumber of each {"id":N,"randomNumber":M} object in a JSON body.
std::vector<std::pair<int, int>> worlds(const std::string& body) {
  static const std::regex re(R"re(\{"id":(\d+),"randomNumber":(\d+)\})re");
  std::vector<std::pair<int, int>> out;
  for (auto it = std::sregex_iterator(body.begin(), body.end(), re); it != std::sregex_iterator();
       ++it) {
    out.emplace_back(std::stoi((*it)[1]), std::stoi((*it)[2]));
  }
  return out;
}

TEST_F(Endpoints, PlaintextCarriesTheCommonHeaders) {
  auto r = client_.get("/plaintext");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "Hello, World!");
  EXPECT_EQ(r.header("Content-Type"), "text/plain; charset=utf-8");
  EXPECT_EQ(r.header("Content-Length"), "13");
  EXPECT_EQ(r.header("Server"), "webstack-app");
  EXPECT_TRUE(
      std::regex_match(r.header("Date"),
                       std::regex(R"([A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT)")))
      << r.header("Date");
  EXPECT_EQ(r.header("X-Served-By"), "web-test");
  EXPECT_EQ(r.header("X-Request-Id").size(), 32u);
}

TEST_F(Endpoints, KeepsAnIncomingRequestIdAndReplacesAnUnsafeOne) {
  EXPECT_EQ(client_.get("/plaintext", {{"X-Request-Id", "lb-01:abc-123"}}).header("X-Request-Id"),
            "lb-01:abc-123");
  auto r = client_.get("/plaintext", {{"X-Request-Id", "bad id with spaces"}});
  EXPECT_EQ(r.header("X-Request-Id").size(), 32u);
}

TEST_F(Endpoints, Json) {
  auto r = client_.get("/json");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header("Content-Type"), "application/json");
  EXPECT_EQ(r.body, R"({"message":"Hello, World!"})");
}

TEST_F(Endpoints, DbReturnsOneWorldRowFromTheReplica) {
  auto r = client_.get("/db");
  ASSERT_EQ(r.status, 200) << r.body;
  auto w = worlds(r.body);
  ASSERT_EQ(w.size(), 1u) << r.body;
  EXPECT_EQ(r.body.front(), '{');
  EXPECT_GE(w[0].first, 1);
  EXPECT_LE(w[0].first, 10000);
  EXPECT_EQ(r.header("X-DB-Node"), MariaDbPair::shared().address(MariaDbPair::kReplica));
  // The number is the row's, as stored.
  auto stored = MariaDbPair::shared().root_sql(
      MariaDbPair::kReplica,
      "SELECT randomNumber FROM webstack.World WHERE id = " + std::to_string(w[0].first));
  EXPECT_EQ(std::stoi(stored), w[0].second);
}

TEST_F(Endpoints, QueriesClampsItsParameter) {
  struct Case {
    const char* query;
    std::size_t rows;
  } cases[] = {{"", 1},           {"?queries=", 1},    {"?queries=foo", 1},   {"?queries=0", 1},
               {"?queries=1", 1}, {"?queries=20", 20}, {"?queries=500", 500}, {"?queries=501", 500},
               {"?queries=-4", 1}};
  for (const auto& c : cases) {
    auto r = client_.get(std::string("/queries") + c.query);
    ASSERT_EQ(r.status, 200) << c.query;
    EXPECT_EQ(r.body.front(), '[') << c.query;
    EXPECT_EQ(worlds(r.body).size(), c.rows) << c.query;
  }
}

TEST_F(Endpoints, FortunesAreSortedEscapedAndIncludeTheAddedOne) {
  auto r = client_.get("/fortunes");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.header("Content-Type"), "text/html; charset=utf-8");
  EXPECT_TRUE(
      r.body.starts_with("<!DOCTYPE "
                         "html><html><head><title>Fortunes</title></head><body><table><tr><th>id</"
                         "th><th>message</th></tr>"));
  EXPECT_TRUE(r.body.ends_with("</table></body></html>"));
  static const std::regex row(R"(<tr><td>(\d+)</td><td>([^<]*)</td></tr>)");
  std::vector<std::string> messages;
  std::set<int> ids;
  for (auto it = std::sregex_iterator(r.body.begin(), r.body.end(), row);
       it != std::sregex_iterator(); ++it) {
    ids.insert(std::stoi((*it)[1]));
    messages.push_back((*it)[2]);
  }
  EXPECT_EQ(ids.size(), 13u);
  EXPECT_TRUE(ids.count(0));
  EXPECT_NE(r.body.find("<tr><td>0</td><td>Additional fortune added at request time.</td></tr>"),
            std::string::npos);
  EXPECT_NE(r.body.find("&lt;script&gt;alert(&quot;This should not be displayed in a browser alert "
                        "box.&quot;);&lt;/script&gt;"),
            std::string::npos);
  EXPECT_NE(r.body.find("フレームワークのベンチマーク"), std::string::npos);
  EXPECT_EQ(r.body.find("<script>"), std::string::npos);
  // Sorted by the message as stored (compare unescaped: escaping keeps this order here
  // because the only escaped row starts with '<' in both forms).
  EXPECT_TRUE(std::is_sorted(messages.begin(), messages.end())) << r.body;
}

TEST_F(Endpoints, UpdatesWriteNewNumbersThroughThePrimary) {
  auto& db = MariaDbPair::shared();
  auto r = client_.get("/updates?queries=20");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.header("X-DB-Node"), db.address(MariaDbPair::kPrimary));
  auto w = worlds(r.body);
  ASSERT_EQ(w.size(), 20u);
  for (auto [id, number] : w) {
    EXPECT_GE(number, 1);
    EXPECT_LE(number, 10000);
    auto stored =
        db.root_sql(MariaDbPair::kPrimary,
                    "SELECT randomNumber FROM webstack.World WHERE id = " + std::to_string(id));
    EXPECT_EQ(std::stoi(stored), number) << "id " << id;
  }
  EXPECT_EQ(worlds(client_.get("/updates?queries=abc").body).size(), 1u);
  EXPECT_EQ(worlds(client_.get("/updates?queries=600").body).size(), 500u);
}

TEST_F(Endpoints, MessagesArePostedToThePrimaryAndListed) {
  auto& db = MariaDbPair::shared();
  auto p = client_.post("/api/messages", R"({"author":"Ann","text":"hello <b>world</b> フ"})");
  ASSERT_EQ(p.status, 201) << p.body;
  EXPECT_EQ(p.header("X-DB-Node"), db.address(MariaDbPair::kPrimary));
  EXPECT_NE(p.body.find(R"("served_by":"web-test")"), std::string::npos) << p.body;
  EXPECT_TRUE(std::regex_search(p.body, std::regex(R"("gtid":"\d+-\d+-\d+")"))) << p.body;
  EXPECT_NE(p.header("Set-Cookie").find("ws_gtid="), std::string::npos);

  // With the cookie the write is visible at once, wherever the read goes.
  const std::string cookie = p.header("Set-Cookie").substr(0, p.header("Set-Cookie").find(';'));
  auto l = client_.get("/api/messages?limit=5", {{"Cookie", cookie}});
  ASSERT_EQ(l.status, 200) << l.body;
  EXPECT_NE(l.body.find(R"("author":"Ann","text":"hello <b>world</b> フ")"), std::string::npos)
      << l.body;
  EXPECT_NE(l.body.find(R"("db_node":")"), std::string::npos);

  auto page = client_.get("/guestbook", {{"Cookie", cookie}});
  ASSERT_EQ(page.status, 200);
  EXPECT_EQ(page.header("Content-Type"), "text/html; charset=utf-8");
  EXPECT_NE(page.body.find("hello &lt;b&gt;world&lt;/b&gt; フ"), std::string::npos);
  EXPECT_NE(page.body.find("<form method=\"post\" action=\"/api/messages\" autocomplete=\"off\">"),
            std::string::npos);
  EXPECT_NE(page.body.find("Served by web-test"), std::string::npos);
}

TEST_F(Endpoints, TheFormPostRedirectsToTheGuestbook) {
  auto p = client_.post("/api/messages", "author=Bo+B&text=from+a+form%21",
                        "application/x-www-form-urlencoded");
  EXPECT_EQ(p.status, 303) << p.body;
  EXPECT_EQ(p.header("Location"), "/guestbook");
  // The browser follows the redirect with the read-your-writes cookie it was given.
  const std::string cookie = p.header("Set-Cookie").substr(0, p.header("Set-Cookie").find(';'));
  EXPECT_NE(client_.get("/guestbook", {{"Cookie", cookie}}).body.find("from a form!"),
            std::string::npos);
}

TEST_F(Endpoints, InvalidMessagesAre422NamingTheField) {
  struct Case {
    std::string body;
    std::string field;
  } cases[] = {
      {R"({"text":"no author"})", "author"},
      {R"({"author":"a"})", "text"},
      {R"({"author":"","text":"x"})", "author"},
      {R"({"author":")" + std::string(65, 'a') + R"(","text":"x"})", "author"},
      {R"({"author":"a","text":")" + std::string(2001, 'x') + R"("})", "text"},
      {R"({"author":7,"text":"x"})", "author"},
      {"{\"author\":\"a\",\"text\":\"\xC0\xAF\"}", "text"},
  };
  for (const auto& c : cases) {
    auto r = client_.post("/api/messages", c.body);
    EXPECT_EQ(r.status, 422) << c.body << " -> " << r.body;
    EXPECT_NE(r.body.find(R"("field":")" + c.field + "\""), std::string::npos) << r.body;
  }
  EXPECT_EQ(client_.post("/api/messages", "not json").status, 400);
  EXPECT_EQ(client_.post("/api/messages", "x", "text/plain").status, 415);
}

TEST_F(Endpoints, OperationsEndpoints) {
  EXPECT_EQ(client_.get("/healthz").status, 200);
  EXPECT_EQ(client_.get("/readyz").status, 200);
  auto info = client_.get("/api/info");
  ASSERT_EQ(info.status, 200);
  EXPECT_NE(info.body.find(R"("host":"web-test")"), std::string::npos) << info.body;
  EXPECT_NE(info.body.find(R"("primary":")" + MariaDbPair::shared().address(MariaDbPair::kPrimary) +
                           "\""),
            std::string::npos)
      << info.body;
  client_.get("/plaintext");
  auto m = client_.get("/metrics");
  ASSERT_EQ(m.status, 200);
  EXPECT_TRUE(m.header("Content-Type").starts_with("text/plain; version=0.0.4"));
  EXPECT_NE(m.body.find(R"(webstack_http_requests_total{route="plaintext",status="200"})"),
            std::string::npos);
  EXPECT_NE(
      m.body.find(R"(webstack_http_request_duration_seconds_bucket{route="plaintext",le="+Inf"})"),
      std::string::npos);
  EXPECT_NE(m.body.find(R"(webstack_db_reads_total{path="replica"})"), std::string::npos);
  EXPECT_NE(m.body.find("webstack_db_pool_connections_open{node="), std::string::npos);
  EXPECT_NE(m.body.find("webstack_http_in_flight"), std::string::npos);
}

TEST_F(Endpoints, UnknownPathsAndMethods) {
  EXPECT_EQ(client_.get("/nope").status, 404);
  auto r = client_.request("DELETE", "/db");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.header("Allow"), "GET, HEAD");
  auto h = client_.request("HEAD", "/plaintext");
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(h.header("Content-Length"), "13");
  EXPECT_EQ(h.body, "");
  EXPECT_EQ(client_.get("/plaintext").body, "Hello, World!");  // the connection is still in step
}

}  // namespace
}  // namespace webstack::it
