// Exactly-once writes (Idempotency-Key) against a real MariaDB primary + replica: a
// repeat is answered from the stored key and writes nothing, another request under the
// same key is refused, concurrent repeats write once, keys expire and are deleted, a
// malformed key is refused, and a write whose outcome the app could not know (its
// primary stopped mid-way) is repeated until it is stored, once.
#include <signal.h>

#include <gtest/gtest.h>

#include <atomic>
#include <regex>
#include <set>
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

// The message id a 201 answer names.
std::string id_of(const std::string& body) {
  static const std::regex re(R"("id":(\d+))");
  std::smatch m;
  return std::regex_search(body, m, re) ? m[1].str() : std::string();
}

class Idempotency : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto opts = app_options_for(MariaDbPair::shared());
    for (const char* s : {"server.threads=2", "db.probe_interval_ms=250"})
      opts.settings.emplace_back(s);
    app_ = new AppProcess(std::move(opts));
  }
  static void TearDownTestSuite() {
    delete app_;
    app_ = nullptr;
  }
  // Rows of `author` in the messages table, on the primary.
  static std::string stored(const std::string& author) {
    return MariaDbPair::shared().root_sql(
        MariaDbPair::kPrimary,
        "SELECT COUNT(*) FROM webstack.messages WHERE author = '" + author + "'");
  }
  static std::string keys_named(const std::string& key) {
    return MariaDbPair::shared().root_sql(
        MariaDbPair::kPrimary,
        "SELECT COUNT(*) FROM webstack.idempotency_keys WHERE idem_key = '" + key + "'");
  }
  static HttpResponse post(HttpClient& c, const std::string& key, const std::string& body) {
    return c.request("POST", "/api/messages",
                     {{"Content-Type", "application/json"}, {"Idempotency-Key", key}}, body);
  }
  static AppProcess* app_;
  HttpClient client_{app_->port()};
};
AppProcess* Idempotency::app_ = nullptr;

TEST_F(Idempotency, ARepeatGetsTheStoredAnswerAndWritesNothing) {
  const std::string body = R"({"author":"idem-repeat","text":"once"})";
  const auto first = post(client_, R"("repeat-1")", body);
  ASSERT_EQ(first.status, 201) << first.body;
  EXPECT_FALSE(first.has_header("Idempotent-Replayed"));
  EXPECT_TRUE(std::regex_search(first.body, std::regex(R"("gtid":"\d+-\d+-\d+")"))) << first.body;
  EXPECT_NE(first.header("Set-Cookie").find("ws_gtid="), std::string::npos);
  for (int i = 0; i < 3; ++i) {
    const auto again = post(client_, R"("repeat-1")", body);
    ASSERT_EQ(again.status, 201) << again.body;
    EXPECT_EQ(again.header("Idempotent-Replayed"), "true");
    EXPECT_EQ(id_of(again.body), id_of(first.body)) << again.body;
    // The stored answer is the first one; only the GTID (a position covering the write)
    // may differ.
    const auto without_gtid = [](const std::string& b) {
      return std::regex_replace(b, std::regex(R"(,"gtid":"[^"]*")"), "");
    };
    EXPECT_EQ(without_gtid(again.body), without_gtid(first.body));
    EXPECT_FALSE(again.header("X-GTID").empty());
  }
  EXPECT_EQ(stored("idem-repeat"), "1\n");
}

TEST_F(Idempotency, TheSameKeyWithAnotherRequestIs422) {
  ASSERT_EQ(post(client_, R"("mismatch-1")", R"({"author":"idem-mm","text":"a"})").status, 201);
  const auto other = post(client_, R"("mismatch-1")", R"({"author":"idem-mm","text":"b"})");
  EXPECT_EQ(other.status, 422) << other.body;
  EXPECT_NE(other.body.find(R"("header":"Idempotency-Key")"), std::string::npos) << other.body;
  EXPECT_EQ(stored("idem-mm"), "1\n");
}

TEST_F(Idempotency, ConcurrentRepeatsWriteOnce) {
  constexpr int kClients = 16;
  const std::string body = R"({"author":"idem-race","text":"together"})";
  std::vector<HttpResponse> answers(kClients);
  std::atomic<int> ready{0};
  std::vector<std::thread> clients;
  clients.reserve(kClients);
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back([&, i] {
      HttpClient c(app_->port());
      c.get("/healthz");  // connected before the start line
      ++ready;
      while (ready < kClients) std::this_thread::yield();
      answers[static_cast<std::size_t>(i)] = post(c, R"("race-1")", body);
    });
  }
  for (auto& t : clients) t.join();
  std::set<std::string> ids;
  int replayed = 0;
  for (const auto& a : answers) {
    EXPECT_EQ(a.status, 201) << a.body;
    ids.insert(id_of(a.body));
    if (a.header("Idempotent-Replayed") == "true") ++replayed;
  }
  EXPECT_EQ(ids.size(), 1u) << "answers name different messages";
  EXPECT_EQ(replayed, kClients - 1);
  EXPECT_EQ(stored("idem-race"), "1\n");
}

TEST_F(Idempotency, AMalformedOrOversizedKeyIs400NamingTheHeader) {
  std::string oversized = std::string(258, 'k');
  oversized.front() = oversized.back() = '"';  // 256 characters between the quotes
  for (const std::string& key :
       {std::string("unquoted"), std::string(R"("")"), std::string(R"("a";x=1)"), oversized}) {
    const auto r = post(client_, key, R"({"author":"idem-bad","text":"x"})");
    EXPECT_EQ(r.status, 400) << key << " -> " << r.body;
    EXPECT_NE(r.body.find("Idempotency-Key header"), std::string::npos) << r.body;
  }
  // Two Idempotency-Key fields are one malformed value.
  const auto two = client_.request("POST", "/api/messages",
                                   {{"Content-Type", "application/json"},
                                    {"Idempotency-Key", R"("a")"},
                                    {"Idempotency-Key", R"("b")"}},
                                   R"({"author":"idem-bad","text":"x"})");
  EXPECT_EQ(two.status, 400) << two.body;
  EXPECT_EQ(stored("idem-bad"), "0\n");
}

TEST_F(Idempotency, TheGuestbookFormCarriesAKeyAndAResubmitIsStoredOnce) {
  const auto page = client_.get("/guestbook");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(
      page.body, m,
      std::regex(R"re(<input type="hidden" name="idempotency_key" value="([0-9a-f]{32})">)re")))
      << page.body;
  const std::string form = "author=idem-form&text=hello&idempotency_key=" + m[1].str();
  for (int i = 0; i < 2; ++i) {
    const auto r = client_.post("/api/messages", form, "application/x-www-form-urlencoded");
    EXPECT_EQ(r.status, 303) << r.body;
    EXPECT_EQ(r.header("Location"), "/guestbook");
    EXPECT_EQ(r.has_header("Idempotent-Replayed"), i == 1);
  }
  EXPECT_EQ(stored("idem-form"), "1\n");
  // Each render makes a new key.
  std::smatch m2;
  const auto page2 = client_.get("/guestbook");
  ASSERT_TRUE(std::regex_search(
      page2.body, m2, std::regex(R"re(name="idempotency_key" value="([0-9a-f]{32})")re")));
  EXPECT_NE(m2[1].str(), m[1].str());
  const auto bad =
      client_.post("/api/messages",
                   "author=idem-form&text=x&idempotency_key=", "application/x-www-form-urlencoded");
  EXPECT_EQ(bad.status, 400) << bad.body;
  EXPECT_NE(bad.body.find(R"("field":"idempotency_key")"), std::string::npos) << bad.body;
}

// The value of webstack_idempotent_writes_total{outcome="<outcome>"} (-1: absent).
long keyed_metric(HttpClient& c, const std::string& outcome) {
  std::smatch m;
  const std::string body = c.get("/metrics").body;
  if (!std::regex_search(
          body, m,
          std::regex(R"(webstack_idempotent_writes_total\{outcome=")" + outcome + R"("\} (\d+))")))
    return -1;
  return std::stol(m[1].str());
}

// SQL as root on the primary.
std::string primary_sql(const std::string& q) {
  return MariaDbPair::shared().root_sql(MariaDbPair::kPrimary, q);
}

// An app of its own with a one-second time to live and `cleanup_ms`, and posts of one
// body under `key` to it.
struct ShortLivedKeys {
  ShortLivedKeys(const char* cleanup, std::string k, std::string b)
      : app([cleanup] {
          auto opts = app_options_for(MariaDbPair::shared());
          opts.settings.emplace_back("db.idempotency_ttl_s=1");
          opts.settings.emplace_back(cleanup);
          return opts;
        }()),
        client(app.port()),
        key(std::move(k)),
        body(std::move(b)) {}
  HttpResponse post() {
    return client.request(
        "POST", "/api/messages",
        {{"Content-Type", "application/json"}, {"Idempotency-Key", "\"" + key + "\""}}, body);
  }
  AppProcess app;
  HttpClient client;
  std::string key, body;
};

TEST(IdempotencyExpiry, KeysExpireAndAreDeletedThenTheKeyWritesAgain) {
  ShortLivedKeys t("db.idempotency_cleanup_ms=250", "ttl-1", R"({"author":"idem-ttl","text":"t"})");
  const auto first = t.post();
  ASSERT_EQ(first.status, 201) << first.body;
  ASSERT_TRUE(eventually(
      [&] {
        return primary_sql(
                   "SELECT COUNT(*) FROM webstack.idempotency_keys WHERE idem_key = 'ttl-1'") ==
               "0\n";
      },
      15s))
      << "the expired key was never deleted";
  EXPECT_GE(keyed_metric(t.client, "expired"), 1);
  const auto later = t.post();
  ASSERT_EQ(later.status, 201) << later.body;
  EXPECT_FALSE(later.has_header("Idempotent-Replayed"));
  EXPECT_EQ(primary_sql("SELECT COUNT(*) FROM webstack.messages WHERE author = 'idem-ttl'"), "2\n");
}

// A key past its expiry that the cleanup has not deleted yet: used again, it is deleted
// and the write runs afresh (not answered from the expired row).
TEST(IdempotencyExpiry, AnExpiredKeyNotYetDeletedWritesAgain) {
  ShortLivedKeys t("db.idempotency_cleanup_ms=3600000", "ttl-2",
                   R"({"author":"idem-ttl2","text":"t"})");
  const auto first = t.post();
  ASSERT_EQ(first.status, 201) << first.body;
  ASSERT_TRUE(eventually(
      [&] {
        return primary_sql(
                   "SELECT COUNT(*) FROM webstack.idempotency_keys WHERE idem_key = "
                   "'ttl-2' AND expires_at <= NOW(3)") == "1\n";
      },
      15s));
  const auto later = t.post();
  ASSERT_EQ(later.status, 201) << later.body;
  EXPECT_FALSE(later.has_header("Idempotent-Replayed"));
  EXPECT_NE(id_of(later.body), id_of(first.body));
  EXPECT_EQ(primary_sql("SELECT COUNT(*) FROM webstack.messages WHERE author = 'idem-ttl2'"),
            "2\n");
  EXPECT_EQ(primary_sql("SELECT COUNT(*) FROM webstack.idempotency_keys WHERE idem_key = "
                        "'ttl-2' AND expires_at > NOW(3)"),
            "1\n");
}

// A run in progress under `key`: another session that inserted the key's row and holds
// it, its transaction open (a long SLEEP), until release() kills that session (its
// transaction then rolls back). The constructor returns once the row is held.
class KeyHolder {
 public:
  KeyHolder(const std::string& key, int tag)
      : sleep_("SELECT SLEEP(" + std::to_string(tag) + ")"), thread_([this, key] {
          try {
            MariaDbPair::shared().root_sql(
                MariaDbPair::kPrimary,
                "START TRANSACTION; INSERT INTO webstack.idempotency_keys (idem_key, "
                "request_hash, status, response, expires_at) VALUES ('" +
                    key + "', REPEAT('x', 32), 201, '', NOW(3) + INTERVAL 1 DAY); " + sleep_ +
                    "; ROLLBACK",
                600s);
          } catch (const std::exception&) {
            // Killed by release(): expected.
          }
        }) {
    held_ = eventually([&] { return session() != ""; }, 10s);
  }
  ~KeyHolder() { release(); }
  bool held() const { return held_; }
  void release() {
    if (!thread_.joinable()) return;
    eventually(
        [&] {
          const std::string id = session();
          if (!id.empty()) primary_sql("KILL " + id);
          return id.empty();
        },
        10s);
    thread_.join();
  }

 private:
  // The holding session's id ("" once it is gone).
  std::string session() const {
    std::string id =
        primary_sql("SELECT ID FROM information_schema.PROCESSLIST WHERE INFO = '" + sleep_ + "'");
    while (!id.empty() && id.back() == '\n') id.pop_back();
    return id;
  }
  std::string sleep_;
  std::thread thread_;
  bool held_ = false;
};

// An app of its own whose keyed writes give up after `keyed_wait_ms`, with a 2 s query
// timeout (so the key's lock wait is 1 s).
AppOptions held_key_app(const std::string& keyed_wait_ms) {
  auto opts = app_options_for(MariaDbPair::shared());
  opts.settings.emplace_back("db.query_timeout_ms=2000");
  opts.settings.emplace_back("db.keyed_write_wait_ms=" + keyed_wait_ms);
  return opts;
}

HttpResponse post_held(const AppProcess& app, const std::string& key) {
  HttpClient c(app.port(), 60s);
  return c.request("POST", "/api/messages",
                   {{"Content-Type", "application/json"}, {"Idempotency-Key", "\"" + key + "\""}},
                   R"({"author":"idem-held","text":")" + key + R"("})");
}

// A run holding the key past db.keyed_write_wait_ms: 409; once it is gone, the write runs.
TEST(IdempotencyInProgress, ARunHoldingTheKeyPastTheWaitGets409) {
  AppProcess app(held_key_app("2500"));
  KeyHolder holder("held-1", 301);
  ASSERT_TRUE(holder.held()) << "the holder never held the key";
  const auto r = post_held(app, "held-1");
  EXPECT_EQ(r.status, 409) << r.body;
  EXPECT_NE(r.body.find(R"("header":"Idempotency-Key")"), std::string::npos) << r.body;
  HttpClient metrics(app.port());
  EXPECT_EQ(keyed_metric(metrics, "in_progress"), 1);
  holder.release();  // its transaction rolls back: the key was never stored
  const auto again = post_held(app, "held-1");
  EXPECT_EQ(again.status, 201) << again.body;
  EXPECT_EQ(primary_sql("SELECT COUNT(*) FROM webstack.messages WHERE body = 'held-1'"), "1\n");
}

// A post that meets a run in progress waits for it (the app tries the key again after
// each lock wait) and runs once that run is gone.
TEST(IdempotencyInProgress, APostWaitsForARunHoldingTheKey) {
  AppProcess app(held_key_app("15000"));
  KeyHolder holder("held-2", 302);
  ASSERT_TRUE(holder.held()) << "the holder never held the key";
  // InnoDB counts every row lock wait: a counter, so no wait is missed between two looks
  // (a look at INNODB_TRX could fall between the app's tries).
  const auto lock_waits = [] {
    return std::stoll(
        primary_sql("SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE "
                    "VARIABLE_NAME = 'INNODB_ROW_LOCK_WAITS'"));
  };
  const long long waits_before = lock_waits();
  HttpResponse r;
  std::thread poster([&] { r = post_held(app, "held-2"); });
  // The post waits on the key's row lock, then the holder goes.
  const bool waited = eventually([&] { return lock_waits() > waits_before; }, 10s);
  holder.release();
  poster.join();
  EXPECT_TRUE(waited) << "the post never waited on the key's lock";
  EXPECT_EQ(r.status, 201) << r.body;
  EXPECT_FALSE(r.has_header("Idempotent-Replayed"));
  EXPECT_EQ(primary_sql("SELECT COUNT(*) FROM webstack.messages WHERE body = 'held-2'"), "1\n");
}

// The primary stops (SIGSTOP) with keyed writes in flight: their statements time out
// (db.query_timeout_ms=1000), so the app cannot know whether they committed. It repeats
// them until the primary answers again; whether a first attempt went through once the
// server resumed (it reads what was already in its socket) or not, each write is stored
// once and every request is answered 201. Unkeyed writes in the same stall fail (503).
TEST(IdempotencyUnknownOutcome, WritesInFlightWhenThePrimaryStallsAreRepeatedAndStoredOnce) {
  auto& db = MariaDbPair::shared();
  auto opts = app_options_for(db);
  for (const char* s : {"server.threads=1", "db.query_timeout_ms=1000", "db.connect_timeout_ms=500",
                        "db.probe_interval_ms=250", "db.keyed_write_wait_ms=30000"})
    opts.settings.emplace_back(s);
  AppProcess app(std::move(opts));
  constexpr int kWriters = 4;
  {
    // Pooled connections to the primary first, so that the writes below are sent on
    // them (and stall mid-statement) before the prober sees the primary gone.
    std::vector<std::thread> warm;
    warm.reserve(kWriters);
    for (int i = 0; i < kWriters; ++i) {
      warm.emplace_back([&, i] {
        HttpClient c(app.port());
        const auto r = c.request("POST", "/api/messages",
                                 {{"Content-Type", "application/json"},
                                  {"Idempotency-Key", "\"warm-" + std::to_string(i) + "\""}},
                                 R"({"author":"idem-warm","text":"w"})");
        EXPECT_EQ(r.status, 201) << r.body;
      });
    }
    for (auto& t : warm) t.join();
  }
  const pid_t pid = db.pid(MariaDbPair::kPrimary);
  ASSERT_GT(pid, 0);
  Paused paused(pid);  // stopped (state T) when this returns; resumed at the end

  std::vector<HttpResponse> answers(kWriters);
  std::vector<std::thread> writers;
  writers.reserve(kWriters);
  for (int i = 0; i < kWriters; ++i) {
    writers.emplace_back([&, i] {
      HttpClient c(app.port(), 60s);
      answers[static_cast<std::size_t>(i)] =
          c.request("POST", "/api/messages",
                    {{"Content-Type", "application/json"},
                     {"Idempotency-Key", "\"stall-" + std::to_string(i) + "\""}},
                    R"({"author":"idem-stall","text":"w)" + std::to_string(i) + R"("})");
    });
  }
  HttpClient plain(app.port(), 60s);
  const auto unkeyed = plain.post("/api/messages", R"({"author":"idem-stall-plain","text":"u"})");
  EXPECT_EQ(unkeyed.status, 503) << "an unkeyed write is not repeated: " << unkeyed.body;
  // The keyed ones are still waiting: resume the primary.
  paused.resume();
  for (auto& t : writers) t.join();
  for (const auto& a : answers) EXPECT_EQ(a.status, 201) << a.body;
  EXPECT_EQ(db.root_sql(MariaDbPair::kPrimary,
                        "SELECT COUNT(*), COUNT(DISTINCT body) FROM webstack.messages WHERE "
                        "author = 'idem-stall'"),
            "4\t4\n");
  HttpClient metrics(app.port());
  const long retried = keyed_metric(metrics, "retried");
  EXPECT_GE(retried, 1) << "no keyed write was sent to the stalled primary";
  std::printf("keyed writes through a 1 s query timeout on a stalled primary: %ld retries\n",
              retried);
}

}  // namespace
}  // namespace webstack::it
