// Guestbook posts under an idempotency key (docs/high-availability.md, "Exactly-once
// writes"): the write and its key in one transaction, a repeat answered from the key,
// and the deletion of expired keys.
#include <fmt/format.h>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <exception>

#include "core/idempotency.hpp"
#include "core/log.hpp"
#include "db/cluster.hpp"
#include "handlers/app.hpp"
#include "handlers/reply.hpp"

namespace webstack {

namespace asio = boost::asio;
namespace json = boost::json;

namespace {

constexpr unsigned kDuplicateKey = 1062;     // ER_DUP_ENTRY
constexpr unsigned kLockWaitTimeout = 1205;  // ER_LOCK_WAIT_TIMEOUT
constexpr unsigned kDeadlock = 1213;         // ER_LOCK_DEADLOCK

// A keyed post's answer, first time or replayed: the stored status and body, and the
// GTID that covers the write (known only after the commit, so it is not stored).
struct KeyedAnswer {
  unsigned status = 0;
  std::string body;  // as stored: the JSON without "gtid", or the form's text
  std::string gtid;
  std::string node;
  bool replayed = false;
  bool mismatch = false;  // the key was stored for another request
};

struct KeyedWrite {
  std::string_view key, hash, author, text, served_by;
  bool form = false;
  std::chrono::seconds ttl;
  long lock_wait_s = 1;  // how long the key's INSERT waits for a run in progress
};

// A run under the same key held it past the lock wait: Cluster::write_repeatable tries
// again until its deadline (waiting for that run), then 409.
class KeyInProgress : public db::Unavailable {
  using Unavailable::Unavailable;
};

// Ends a batch's open transaction before the connection goes back to the pool; a
// connection whose ROLLBACK failed is never pooled again.
asio::awaitable<void> rollback(db::Lease& lease) {
  try {
    co_await lease.query("ROLLBACK");
  } catch (...) {
    lease.discard();
    throw;
  }
}

constexpr std::string_view kFormAnswer = "See /guestbook\n";

// The whole transaction, one batch; `rest` gets the JSON answer after its id (empty for
// a form), the answer's text once the id is known.
std::string keyed_sql(const KeyedWrite& w, std::string_view node, std::string& rest) {
  using idempotency::hex_literal;
  const std::string key = hex_literal(w.key);
  std::string response;
  if (w.form) {
    response = hex_literal(kFormAnswer);
  } else {
    for (auto [name, value] :
         {std::pair{"author", w.author}, std::pair{"text", w.text},
          std::pair{"served_by", std::string_view(w.served_by)}, std::pair{"db_node", node}}) {
      fmt::format_to(std::back_inserter(rest), R"(,"{}":{})", name,
                     json::serialize(json::string(value)));
    }
    rest += '}';
    response = fmt::format("CONCAT({}, LAST_INSERT_ID(), {})", hex_literal(R"({"id":)"),
                           hex_literal(rest));
  }
  // The message first, so that the key's row is written once, with the answer (which
  // names the message's id); a duplicate key rolls the message back with it.
  return fmt::format(
      "START TRANSACTION;"
      "INSERT INTO messages (author, body) "
      "VALUES (CONVERT({0} USING utf8mb4), CONVERT({1} USING utf8mb4));"
      "SET STATEMENT innodb_lock_wait_timeout = {7} FOR "
      "INSERT INTO idempotency_keys (idem_key, request_hash, status, response, expires_at) "
      "VALUES ({2}, {3}, {4}, {5}, NOW(3) + INTERVAL {6} SECOND);"
      "COMMIT;"
      "SELECT @@last_gtid, LAST_INSERT_ID()",
      hex_literal(w.author), hex_literal(w.text), key, hex_literal(w.hash), w.form ? 303 : 201,
      response, w.ttl.count(), w.lock_wait_s);
}

// One attempt on a write connection. The whole transaction is one round trip (the
// server runs it through even if this process stops meanwhile, so no key stays locked
// by a stalled client); the request's text reaches the SQL only as hex literals. A
// stored key (a committed earlier run, or a concurrent one waited for) fails the key's
// INSERT with a duplicate: then the stored answer is read instead.
asio::awaitable<KeyedAnswer> run_keyed(db::Lease& lease, const KeyedWrite& w) {
  KeyedAnswer answer;
  answer.node = lease.node_name();
  std::string rest;  // the JSON answer after its id
  const std::string sql = keyed_sql(w, answer.node, rest);
  for (int round = 0;; ++round) {
    std::vector<db::Result> results;
    std::exception_ptr failure;
    unsigned code = 0;
    try {
      results = co_await lease.query_multi(sql);
    } catch (const db::QueryError& e) {
      failure = std::current_exception();
      code = e.code();
    } catch (const db::RefusedReadOnly&) {
      failure = std::current_exception();
    }
    if (failure) {
      // The batch stopped at the failed statement with its transaction open.
      co_await rollback(lease);
      if (code == kLockWaitTimeout) {
        throw KeyInProgress("db: a run under the same key holds it (lock wait timeout)");
      }
      if ((code != kDuplicateKey && code != kDeadlock) || round >= 3) {
        std::rethrow_exception(failure);
      }
      if (code == kDeadlock) continue;
      const db::Result stored = co_await lease.execute(
          "SELECT request_hash, status, response, expires_at > NOW(3), @@gtid_current_pos "
          "FROM idempotency_keys WHERE idem_key = ?",
          db::params(w.key));
      if (stored.rows.empty()) continue;  // expired and deleted since: run afresh
      const auto& row = stored.rows[0];
      if (as_int(row[3]) == 0) {
        co_await lease.execute(
            "DELETE FROM idempotency_keys WHERE idem_key = ? AND expires_at <= NOW(3)",
            db::params(w.key));
        continue;
      }
      answer.replayed = true;
      answer.mismatch = as_text(row[0]) != w.hash;
      answer.status = static_cast<unsigned>(as_int(row[1]));
      answer.body = as_text(row[2]);
      answer.gtid = as_text(row[4]);
      co_return answer;
    }
    if (results.size() != 5 || results[4].rows.empty()) {
      co_await rollback(lease);  // (a no-op once the COMMIT ran)
      throw db::QueryError(fmt::format("keyed write: {} results, expected 5", results.size()));
    }
    answer.status = w.form ? 303 : 201;
    answer.gtid = as_text(results[4].rows[0][0]);
    if (w.form) {
      answer.body = kFormAnswer;
    } else {
      // The same text the key's row stored.
      answer.body = fmt::format(R"({{"id":{}{})", as_int(results[4].rows[0][1]), rest);
    }
    co_return answer;
  }
}

}  // namespace

asio::awaitable<Response> App::messages_post_keyed(const Request& req, const std::string& key,
                                                   const std::string& author,
                                                   const std::string& text, bool form) {
  const auto& cfg = cluster_.config();
  const std::string hash =
      idempotency::fingerprint(req.method, req.target, req.content_type, req.body);
  // The key's lock wait ends before the statement's own timeout (which would break the
  // connection): a run in progress is then waited for by trying again.
  const long lock_wait_s =
      std::max<long>(1, static_cast<long>(cfg.query_timeout.count() / 1000) - 1);
  const KeyedWrite w{key,        hash, author, text, shared_.served_by, form, cfg.idempotency_ttl,
                     lock_wait_s};
  KeyedAnswer answer;
  bool in_progress = false;
  try {
    co_await cluster_.write_repeatable(
        [&](db::Lease& lease) -> asio::awaitable<void> { answer = co_await run_keyed(lease, w); },
        std::chrono::steady_clock::now() + cfg.keyed_write_wait,
        [&] { metrics_.keyed_write(KeyedOutcome::Retried); });
  } catch (const KeyInProgress&) {
    in_progress = true;
  }
  if (in_progress) {
    metrics_.keyed_write(KeyedOutcome::InProgress);
    co_return json_response(
        409, json::object{{"error", fmt::format("a request with this {} is still in progress; "
                                                "send it again later",
                                                kKeyHeader)},
                          {"header", kKeyHeader}});
  }
  if (answer.mismatch) {
    metrics_.keyed_write(KeyedOutcome::Mismatch);
    co_return json_response(
        422, json::object{
                 {"error", fmt::format("this {} was first used with another request", kKeyHeader)},
                 {"header", kKeyHeader}});
  }
  metrics_.keyed_write(answer.replayed ? KeyedOutcome::Replayed : KeyedOutcome::Stored);
  Response r;
  r.status = answer.status;
  tag_node(r, answer.node);
  set_gtid(r, answer.gtid);
  if (answer.replayed) r.headers.emplace_back("Idempotent-Replayed", "true");
  if (answer.status == 303) {
    r.headers.emplace_back("Location", "/guestbook");
    r.body = std::move(answer.body);
    co_return r;
  }
  r.content_type = kJson;
  r.body = std::move(answer.body);
  if (!answer.gtid.empty() && r.body.ends_with('}')) {
    // The GTID, known only after the commit, joins the stored answer.
    r.body.pop_back();
    fmt::format_to(std::back_inserter(r.body), R"(,"gtid":{}}})",
                   json::serialize(json::string(answer.gtid)));
  }
  co_return r;
}

void App::start_housekeeping() {
  cluster_.every(cluster_.config().idempotency_cleanup, "delete expired idempotency keys",
                 [this] { return delete_expired_keys(); });
}

// In batches, so that no statement holds many row locks for long; for at most one period,
// so that a backlog is worked off over several.
asio::awaitable<void> App::delete_expired_keys() {
  constexpr std::uint64_t kBatch = 1000;
  std::uint64_t deleted = 0;
  const auto until = std::chrono::steady_clock::now() + cluster_.config().idempotency_cleanup;
  while (std::chrono::steady_clock::now() < until) {
    db::Result res;
    co_await cluster_.write([&](db::Lease& lease) -> asio::awaitable<void> {
      res = co_await lease.execute(
          "DELETE FROM idempotency_keys WHERE expires_at <= NOW(3) ORDER BY expires_at LIMIT 1000",
          db::params());
    });
    deleted += res.affected_rows;
    if (res.affected_rows < kBatch) break;
  }
  if (deleted > 0) {
    metrics_.keyed_write(KeyedOutcome::Expired, deleted);
    log::info("expired idempotency keys deleted", {{"count", std::to_string(deleted)}});
  }
}

}  // namespace webstack
