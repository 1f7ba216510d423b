// webstack-app against a changing database: read/write routing, read-your-writes,
// killed connections, a stopped primary, and a promotion.
#include <signal.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "app_process.hpp"
#include "eventually.hpp"
#include "http_client.hpp"
#include "mariadb_pair.hpp"
#include "subprocess.hpp"

namespace webstack::it {
namespace {

using Clock = std::chrono::steady_clock;

std::string gtid_cookie(const HttpResponse& post) {
  std::smatch m;
  std::string cookie = post.header("Set-Cookie");
  if (!std::regex_search(cookie, m, std::regex(R"(ws_gtid=([0-9,-]+))"))) return {};
  return "ws_gtid=" + m[1].str();
}

// Waits until `pred()` holds, for at most `timeout`; true if it did.

// Any 2xx answer must be a right one: a /db body is one World row.
void expect_valid_db_answer(const HttpResponse& r) {
  ASSERT_TRUE(r.status == 200 || r.status == 503) << r.status << " " << r.body;
  if (r.status == 200) {
    EXPECT_TRUE(std::regex_match(r.body, std::regex(R"(\{"id":\d+,"randomNumber":\d+\})")))
        << r.body;
  }
}

class Topology : public ::testing::Test {
 protected:
  // webstack_db_read_your_writes_total{outcome="..."} from the app's /metrics.
  double ryw_checks(const std::string& outcome) {
    const std::string body = client_.get("/metrics").body;
    const std::string name = "webstack_db_read_your_writes_total{outcome=\"" + outcome + "\"} ";
    const auto at = body.find(name);
    return at == std::string::npos ? -1 : std::stod(body.substr(at + name.size()));
  }

  MariaDbPair& db_ = MariaDbPair::shared();
  AppProcess app_{[&] {
    auto o = app_options_for(db_);
    o.settings.push_back("server.threads=2");
    return o;
  }()};
  HttpClient client_{app_.port()};

  void wait_reads_on(const std::string& node) {
    ASSERT_TRUE(eventually([&] { return client_.get("/db").header("X-DB-Node") == node; }, 10s))
        << "reads never reached " << node;
  }
};

TEST_F(Topology, ReadsGoToTheReplicaAndWritesToThePrimary) {
  wait_reads_on(db_.address(MariaDbPair::kReplica));
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(client_.get("/queries?queries=3").header("X-DB-Node"),
              db_.address(MariaDbPair::kReplica));
  }
  EXPECT_EQ(client_.get("/updates?queries=2").header("X-DB-Node"),
            db_.address(MariaDbPair::kPrimary));
  // The probe used its own account: no fallback, nothing refused.
  EXPECT_EQ(app_.log().find("db probe"), std::string::npos) << app_.log();
  EXPECT_EQ(app_.log().find("probe_password not set"), std::string::npos) << app_.log();
}

// Each read names the write just made (the cookie): the replica answers it, after its GTID
// wait ran and found the write there.
TEST_F(Topology, ReadYourWritesWithAHealthyReplica) {
  wait_reads_on(db_.address(MariaDbPair::kReplica));
  const double caught_up = ryw_checks("caught_up");
  ASSERT_GE(caught_up, 0) << client_.get("/metrics").body;
  for (int i = 0; i < 10; ++i) {
    std::string text = "ryw healthy " + std::to_string(i);
    auto p = client_.post("/api/messages", R"({"author":"ryw","text":")" + text + "\"}");
    ASSERT_EQ(p.status, 201) << p.body;
    auto l = client_.get("/api/messages?limit=5", {{"Cookie", gtid_cookie(p)}});
    ASSERT_EQ(l.status, 200);
    EXPECT_NE(l.body.find(text), std::string::npos) << l.body;
    EXPECT_EQ(l.header("X-DB-Node"), db_.address(MariaDbPair::kReplica));
  }
  EXPECT_EQ(ryw_checks("caught_up"), caught_up + 10);
}

// No primary (stopped), and the replica lacks the client's last write (its SQL thread was
// stopped before it): a read that names that write is refused (503), never answered
// stale; a read that names none is served by the replica.
TEST_F(Topology, ReadYourWritesWithNoPrimaryIsRefusedWhereTheWriteIsMissing) {
  const std::string replica = db_.address(MariaDbPair::kReplica);
  wait_reads_on(replica);
  db_.root_sql(MariaDbPair::kReplica, "STOP SLAVE SQL_THREAD");
  struct Restart {
    MariaDbPair& db;
    ~Restart() {
      db.start(MariaDbPair::kPrimary);
      db.root_sql(MariaDbPair::kReplica, "START SLAVE SQL_THREAD");
      db.wait_replica_caught_up();
    }
  } restart{db_};
  const std::string text = "written before the primary stopped";
  auto p = client_.post("/api/messages", R"({"author":"ryw","text":")" + text + "\"}");
  ASSERT_EQ(p.status, 201) << p.body;
  const double behind = ryw_checks("behind");
  db_.stop(MariaDbPair::kPrimary);
  ASSERT_TRUE(eventually(
      [&] { return client_.post("/api/messages", R"({"author":"ryw","text":"x"})").status == 503; },
      5s));
  auto l = client_.get("/api/messages?limit=5", {{"Cookie", gtid_cookie(p)}});
  EXPECT_EQ(l.status, 503) << l.body;
  EXPECT_EQ(l.body.find(text), std::string::npos) << l.body;
  EXPECT_EQ(ryw_checks("behind"), behind + 1);
  auto plain = client_.get("/api/messages?limit=5");
  EXPECT_EQ(plain.status, 200) << plain.body;
  EXPECT_EQ(plain.header("X-DB-Node"), replica);
}

TEST_F(Topology, ReadYourWritesWithTheReplicaSqlThreadStopped) {
  wait_reads_on(db_.address(MariaDbPair::kReplica));
  db_.root_sql(MariaDbPair::kReplica, "STOP SLAVE SQL_THREAD");
  struct Restart {
    MariaDbPair& db;
    ~Restart() {
      db.root_sql(MariaDbPair::kReplica, "START SLAVE SQL_THREAD");
      db.wait_replica_caught_up();
    }
  } restart{db_};
  auto p =
      client_.post("/api/messages", R"({"author":"ryw","text":"while the replica is stopped"})");
  ASSERT_EQ(p.status, 201) << p.body;
  auto l = client_.get("/api/messages?limit=5", {{"Cookie", gtid_cookie(p)}});
  ASSERT_EQ(l.status, 200);
  EXPECT_NE(l.body.find("while the replica is stopped"), std::string::npos) << l.body;
  EXPECT_EQ(l.header("X-DB-Node"), db_.address(MariaDbPair::kPrimary));
  // The replica really lacks the row: the answer did not come from it.
  EXPECT_EQ(
      db_.root_sql(
          MariaDbPair::kReplica,
          "SELECT COUNT(*) FROM webstack.messages WHERE body = 'while the replica is stopped'"),
      "0\n");
}

TEST_F(Topology, KilledConnectionsAreReplacedWithoutAWrongAnswer) {
  wait_reads_on(db_.address(MariaDbPair::kReplica));
  for (int i = 0; i < 20; ++i) client_.get("/db");
  ASSERT_EQ(client_.post("/api/messages", R"({"author":"k","text":"before kill"})").status, 201);
  for (int node : {MariaDbPair::kPrimary, MariaDbPair::kReplica}) {
    // The pools' connections and the probes' (their own account).
    std::string ids = db_.root_sql(node,
                                   "SELECT GROUP_CONCAT(CONCAT('KILL ', id) SEPARATOR ';') FROM "
                                   "information_schema.PROCESSLIST WHERE USER IN ('webstack', "
                                   "'webstack_probe')");
    ASSERT_NE(ids, "NULL\n") << "the app holds no connection on node " << node;
    db_.root_sql(node, ids);
  }
  // Reads are retried on a fresh connection: every answer is right.
  for (int i = 0; i < 50; ++i) {
    auto r = client_.get("/db");
    expect_valid_db_answer(r);
    EXPECT_EQ(r.status, 200) << r.body;
  }
  // A write on a killed connection may be refused (503), never answered wrongly.
  auto p = client_.post("/api/messages", R"({"author":"k","text":"after kill"})");
  EXPECT_TRUE(p.status == 201 || p.status == 503) << p.status << " " << p.body;
  EXPECT_TRUE(eventually(
      [&] {
        return client_.post("/api/messages", R"({"author":"k","text":"again"})").status == 201;
      },
      5s));
}

TEST_F(Topology, PrimaryStoppedWritesAre503ReadsContinue) {
  wait_reads_on(db_.address(MariaDbPair::kReplica));
  db_.stop(MariaDbPair::kPrimary);
  struct Restart {
    MariaDbPair& db;
    ~Restart() {
      db.start(MariaDbPair::kPrimary);
      db.wait_replica_caught_up();
    }
  } restart{db_};
  EXPECT_TRUE(eventually(
      [&] { return client_.post("/api/messages", R"({"author":"p","text":"x"})").status == 503; },
      5s));
  auto w = client_.get("/updates?queries=2");
  EXPECT_EQ(w.status, 503) << w.body;
  for (int i = 0; i < 20; ++i) {
    auto r = client_.get("/db");
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.header("X-DB-Node"), db_.address(MariaDbPair::kReplica));
  }
  EXPECT_EQ(client_.get("/fortunes").status, 200);
  EXPECT_EQ(client_.get("/readyz").status, 200);  // a node is reachable
}

// A replica that stops answering while reads wait on it (SIGSTOP: its host hung, or cut
// off without a reset): once the prober finds it unreachable (a probe times out after
// db.connect_timeout_ms), the reads waiting there are abandoned and run again on the
// primary, long before db.query_timeout_ms would end them with a 503.
TEST_F(Topology, ReadsWaitingOnAHungReplicaMoveToThePrimary) {
  // This test's own app: a query timeout far above what abandoning takes.
  auto opts = app_options_for(db_);
  for (const char* s : {"server.threads=1", "db.query_timeout_ms=30000", "db.probe_interval_ms=250",
                        "db.connect_timeout_ms=1000"})
    opts.settings.emplace_back(s);
  AppProcess app(std::move(opts));
  HttpClient client(app.port(), 60s);
  const std::string replica = db_.address(MariaDbPair::kReplica);
  ASSERT_TRUE(eventually([&] { return client.get("/db").header("X-DB-Node") == replica; }, 10s));

  const pid_t pid = db_.pid(MariaDbPair::kReplica);
  ASSERT_GT(pid, 0);
  Paused paused(pid);  // stopped (state T) when this returns; resumed at the end
  // Reads sent right after the hang: they reach the replica before the prober notices.
  std::vector<std::thread> readers;
  std::vector<HttpResponse> answers(4);
  std::vector<double> seconds(answers.size());
  for (std::size_t i = 0; i < answers.size(); ++i) {
    readers.emplace_back([&, i] {
      HttpClient c(app.port(), 60s);
      const auto t0 = Clock::now();
      answers[i] = c.get("/db");
      seconds[i] = std::chrono::duration<double>(Clock::now() - t0).count();
    });
  }
  for (auto& t : readers) t.join();
  for (std::size_t i = 0; i < answers.size(); ++i) {
    EXPECT_EQ(answers[i].status, 200) << answers[i].body;
    EXPECT_EQ(answers[i].header("X-DB-Node"), db_.address(MariaDbPair::kPrimary));
    // Abandoned (about a second), not timed out (30 s): the bound has room for a slow
    // build on a busy machine.
    EXPECT_LT(seconds[i], 15.0) << "read " << i << " waited for the query timeout";
    std::printf("read %zu answered by the primary after %.2f s\n", i, seconds[i]);
  }
  // They were on the replica when it hung, and were cut short there (not sent after).
  EXPECT_NE(app.log().find("db reads abandoned on an unreachable node"), std::string::npos)
      << app.log();

  // Resumed, the replica serves reads again.
  paused.resume();
  EXPECT_TRUE(eventually([&] { return client.get("/db").header("X-DB-Node") == replica; }, 20s));
}

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto pos = text.find(what); pos != std::string::npos; pos = text.find(what, pos + 1)) ++n;
  return n;
}

// Every node as /api/info reports it.
std::string info(HttpClient& client) {
  return client.get("/api/info").body;
}

// Without a probe account the probe logs in as the app user, which may not run SHOW SLAVE
// STATUS: the app works, reads stay on the primary, and it says why once.
TEST(ProbeAccount, WithoutOneReadsStayOnThePrimary) {
  auto& db = MariaDbPair::shared();
  auto o = app_options_for(db);
  o.db_probe_password.clear();
  o.settings.push_back("server.threads=2");
  AppProcess app(std::move(o));
  HttpClient client(app.port());
  ASSERT_TRUE(eventually(
      [&] {
        return info(client).find("SHOW SLAVE STATUS refused to webstack") != std::string::npos;
      },
      10s))
      << info(client);
  for (int i = 0; i < 20; ++i) {
    auto r = client.get("/db");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.header("X-DB-Node"), db.address(MariaDbPair::kPrimary));
  }
  EXPECT_EQ(client.post("/api/messages", R"({"author":"probe","text":"no probe"})").status, 201);
  EXPECT_EQ(client.get("/readyz").status, 200);
  const std::string log = app.log();
  EXPECT_EQ(count(log, "db.probe_password not set"), 1u) << log;
  // Two threads, each probing the replica every second: still one warning.
  EXPECT_EQ(count(log, "db probe cannot see replication"), 1u) << log;
  EXPECT_NE(log.find("fix=\"set db.probe_password"), std::string::npos) << log;
  EXPECT_EQ(log.find("not usable as replica"), std::string::npos) << log;
  EXPECT_EQ(log.find("unreachable"), std::string::npos) << log;
}

// A refused probe login (wrong password, or a database made before the probe account) does
// not take the site down: the probe falls back to the app user and says so once.
TEST(ProbeAccount, ARefusedLoginFallsBackToTheAppUser) {
  auto& db = MariaDbPair::shared();
  auto o = app_options_for(db);
  o.db_probe_password = "wrong";
  o.settings.push_back("server.threads=2");
  AppProcess app(std::move(o));
  HttpClient client(app.port());
  ASSERT_TRUE(eventually(
      [&] {
        return info(client).find("SHOW SLAVE STATUS refused to webstack") != std::string::npos;
      },
      10s))
      << info(client);
  EXPECT_EQ(client.get("/readyz").status, 200);
  auto r = client.get("/db");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.header("X-DB-Node"), db.address(MariaDbPair::kPrimary));
  const std::string log = app.log();
  EXPECT_EQ(count(log, "db probe account refused"), 1u) << log;
  EXPECT_NE(log.find("Access denied for user 'webstack_probe'"), std::string::npos) << log;
  EXPECT_EQ(count(log, "db probe cannot see replication"), 1u) << log;
  EXPECT_EQ(log.find("unreachable"), std::string::npos) << log;
}

TEST(Promotion, TheAppFollowsANewPrimaryByItself) {
  MariaDbPair pair;  // private: this test rewires replication
  AppProcess app(app_options_for(pair));
  HttpClient client(app.port());
  const std::string old_primary = pair.address(MariaDbPair::kPrimary);
  const std::string new_primary = pair.address(MariaDbPair::kReplica);
  ASSERT_TRUE(
      eventually([&] { return client.get("/updates").header("X-DB-Node") == old_primary; }, 10s));

  // Promote the replica the way an operator (or webstack failover) does.
  pair.wait_replica_caught_up();
  pair.root_sql(MariaDbPair::kPrimary, "SET GLOBAL read_only = ON");
  pair.root_sql(MariaDbPair::kReplica, "STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = OFF");
  const auto promoted = Clock::now();

  // It follows within a probe interval or two (1 s each); the bound leaves room for a
  // slow build on a busy machine, the time taken is printed.
  bool followed = eventually(
      [&] {
        auto r = client.post("/api/messages", R"({"author":"promo","text":"after promotion"})");
        return r.status == 201 && r.header("X-DB-Node") == new_primary;
      },
      10s);
  const auto took = Clock::now() - promoted;
  EXPECT_TRUE(followed) << "writes did not move to " << new_primary;
  std::printf(
      "writes followed the new primary after %lld ms\n",
      static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(took).count()));
  RecordProperty(
      "follow_ms",
      static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(took).count()));
  EXPECT_EQ(pair.root_sql(MariaDbPair::kReplica,
                          "SELECT COUNT(*) FROM webstack.messages WHERE body = 'after promotion'"),
            "1\n");
  // Nothing was written to the demoted node.
  EXPECT_EQ(pair.root_sql(MariaDbPair::kPrimary,
                          "SELECT COUNT(*) FROM webstack.messages WHERE body = 'after promotion'"),
            "0\n");
}

// A write arriving while no node is writable (the old primary fenced, the new one not yet
// promoted) waits for the prober to find the new primary instead of failing: it lands
// there, once. With no primary at all it fails after db.writer_wait_ms, with the reason.
TEST(Promotion, AWriteDuringTheSwitchWaitsForTheNewPrimary) {
  MariaDbPair pair;  // private: this test rewires replication
  auto opts = app_options_for(pair);
  opts.settings.push_back("db.writer_wait_ms=3000");
  AppProcess app(std::move(opts));
  HttpClient client(app.port());
  const std::string new_primary = pair.address(MariaDbPair::kReplica);
  ASSERT_TRUE(eventually(
      [&] {
        return client.get("/updates").header("X-DB-Node") == pair.address(MariaDbPair::kPrimary);
      },
      10s));

  // No writable node: the app sees it (its /api/info names no primary).
  pair.wait_replica_caught_up();
  pair.root_sql(MariaDbPair::kPrimary, "SET GLOBAL read_only = ON");
  ASSERT_TRUE(
      eventually([&] { return info(client).find(R"("primary":null)") != std::string::npos; }, 5s))
      << info(client);
  const auto t0 = Clock::now();
  const auto refused = client.post("/api/messages", R"({"author":"switch","text":"nowhere"})");
  EXPECT_EQ(refused.status, 503) << refused.body;
  EXPECT_NE(refused.body.find("no writable node within 3000 ms"), std::string::npos)
      << refused.body;
  EXPECT_GE(Clock::now() - t0, 3s) << "answered before db.writer_wait_ms";

  // A write sent now waits; the replica is promoted meanwhile.
  HttpResponse during;
  std::thread writer([&] {
    HttpClient c(app.port());
    during = c.post("/api/messages", R"({"author":"switch","text":"during the switch"})");
  });
  pair.root_sql(MariaDbPair::kReplica, "STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = OFF");
  writer.join();
  EXPECT_EQ(during.status, 201) << during.body;
  EXPECT_EQ(during.header("X-DB-Node"), new_primary);
  EXPECT_EQ(
      pair.root_sql(MariaDbPair::kReplica,
                    "SELECT COUNT(*) FROM webstack.messages WHERE body = 'during the switch'"),
      "1\n");
  EXPECT_EQ(pair.root_sql(MariaDbPair::kReplica,
                          "SELECT COUNT(*) FROM webstack.messages WHERE body = 'nowhere'"),
            "0\n");
}

}  // namespace
}  // namespace webstack::it
