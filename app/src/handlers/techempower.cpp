// The TechEmpower test types that read or write the database: /db, /queries,
// /fortunes, /updates.
#include <fmt/format.h>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>

#include "core/text.hpp"
#include "db/cluster.hpp"
#include "handlers/app.hpp"
#include "handlers/reply.hpp"

namespace webstack {

namespace asio = boost::asio;
namespace json = boost::json;

namespace {

constexpr std::string_view kSelectWorld = "SELECT id, randomNumber FROM World WHERE id = ?";

void append_world(std::string& out, std::int64_t id, std::int64_t number) {
  fmt::format_to(std::back_inserter(out), R"({{"id":{},"randomNumber":{}}})", id, number);
}

// One SELECT per row, each fetched on its own (the TechEmpower rule: no IN list), sent
// as one multi-statement round trip: MariaDB then wakes once per request, not once per
// row, which on two shared cores is most of a point select's cost. The ids are ours.
std::string select_worlds_sql(const std::vector<std::int64_t>& ids) {
  std::string sql;
  sql.reserve(ids.size() * 56);
  for (const std::int64_t id : ids) {
    fmt::format_to(std::back_inserter(sql), "SELECT id, randomNumber FROM World WHERE id = {};",
                   id);
  }
  return sql;
}

}  // namespace

std::string render_fortunes(const std::vector<std::pair<std::int64_t, std::string>>& rows) {
  std::string out;
  out.reserve(256 + rows.size() * 96);
  out +=
      "<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table>"
      "<tr><th>id</th><th>message</th></tr>";
  for (const auto& [id, message] : rows) {
    fmt::format_to(std::back_inserter(out), "<tr><td>{}</td><td>", id);
    text::html_escape(message, out);
    out += "</td></tr>";
  }
  out += "</table></body></html>";
  return out;
}

asio::awaitable<Response> App::db_single(const Request&, std::string_view) {
  Response r;
  r.content_type = kJson;
  const std::int64_t id = random_id();
  co_await cluster_.read([&](db::Lease& lease) -> asio::awaitable<void> {
    db::Result res = co_await lease.execute(kSelectWorld, db::params(id));
    r.body.clear();
    if (res.rows.empty()) throw db::QueryError(fmt::format("World row {} missing", id));
    append_world(r.body, as_int(res.rows[0][0]), as_int(res.rows[0][1]));
    r.headers.clear();
    tag_node(r, lease.node_name());
  });
  co_return r;
}

asio::awaitable<Response> App::db_queries(const Request&, std::string_view query) {
  const int n = text::queries_count(query);
  std::vector<std::int64_t> ids(static_cast<std::size_t>(n));
  for (auto& id : ids) id = random_id();
  Response r;
  r.content_type = kJson;
  const std::string sql = select_worlds_sql(ids);
  co_await cluster_.read([&](db::Lease& lease) -> asio::awaitable<void> {
    const std::vector<db::Result> results = co_await lease.query_multi(sql);
    r.body.clear();
    r.body.reserve(static_cast<std::size_t>(n) * 32 + 2);
    r.body += '[';
    for (std::size_t i = 0; i < ids.size(); ++i) {
      if (i >= results.size() || results[i].rows.empty()) {
        throw db::QueryError(fmt::format("World row {} missing", ids[i]));
      }
      if (i) r.body += ',';
      append_world(r.body, as_int(results[i].rows[0][0]), as_int(results[i].rows[0][1]));
    }
    r.body += ']';
    r.headers.clear();
    tag_node(r, lease.node_name());
  });
  co_return r;
}

asio::awaitable<Response> App::fortunes(const Request&, std::string_view) {
  std::vector<std::pair<std::int64_t, std::string>> rows;
  std::string node;
  co_await cluster_.read([&](db::Lease& lease) -> asio::awaitable<void> {
    db::Result res = co_await lease.execute("SELECT id, message FROM Fortune", db::params());
    rows.clear();
    rows.reserve(res.rows.size() + 1);
    for (auto& row : res.rows) rows.emplace_back(as_int(row[0]), as_text(row[1]));
    node = lease.node_name();
  });
  rows.emplace_back(0, "Additional fortune added at request time.");
  std::sort(rows.begin(), rows.end(),
            [](const auto& a, const auto& b) { return a.second < b.second; });
  Response r;
  r.content_type = kHtml;
  r.body = render_fortunes(rows);
  tag_node(r, node);
  co_return r;
}

asio::awaitable<Response> App::updates(const Request&, std::string_view query) {
  const int n = text::queries_count(query);
  std::vector<std::pair<std::int64_t, std::int64_t>> worlds;  // id, new randomNumber
  std::string node;
  co_await cluster_.write([&](db::Lease& lease) -> asio::awaitable<void> {
    worlds.clear();  // run again after a refused (read-only) write: start afresh
    worlds.reserve(static_cast<std::size_t>(n));
    std::vector<std::int64_t> ids(static_cast<std::size_t>(n));
    for (auto& id : ids) id = random_id();
    const std::vector<db::Result> selected = co_await lease.query_multi(select_worlds_sql(ids));
    for (std::size_t i = 0; i < ids.size(); ++i) {
      if (i >= selected.size() || selected[i].rows.empty()) {
        throw db::QueryError(fmt::format("World row {} missing", ids[i]));
      }
      worlds.emplace_back(as_int(selected[i].rows[0][0]), random_id());
    }
    // One statement for the batch, rows in id order (fewer lock waits between concurrent
    // batches). A row drawn twice keeps the value of its first draw, in the answer too.
    std::vector<std::pair<std::int64_t, std::int64_t>> batch = worlds;
    std::stable_sort(batch.begin(), batch.end(),
                     [](auto& a, auto& b) { return a.first < b.first; });
    batch.erase(std::unique(batch.begin(), batch.end(),
                            [](auto& a, auto& b) { return a.first == b.first; }),
                batch.end());
    for (auto& w : worlds) {
      w.second = std::lower_bound(batch.begin(), batch.end(), w, [](auto& a, auto& b) {
                   return a.first < b.first;
                 })->second;
    }
    std::string sql = "UPDATE World SET randomNumber = CASE id";
    std::vector<db::Param> values;
    values.reserve(batch.size() * 3);
    for (auto& w : batch) {
      sql += " WHEN ? THEN ?";
      values.emplace_back(w.first);
      values.emplace_back(w.second);
    }
    sql += " END WHERE id IN (";
    for (std::size_t i = 0; i < batch.size(); ++i) {
      sql += i ? ",?" : "?";
      values.emplace_back(batch[i].first);
    }
    sql += ")";
    bool conflicted = false;
    try {
      co_await lease.execute(sql, values);
    } catch (const db::QueryError& e) {
      if (!e.retryable()) throw;
      conflicted = true;
    }
    if (conflicted) {
      // A deadlock between concurrent batches rolled the statement back: run it once more.
      co_await lease.execute(sql, values);
    }
    node = lease.node_name();
  });
  Response r;
  r.content_type = kJson;
  r.body.reserve(worlds.size() * 32 + 2);
  r.body += '[';
  for (std::size_t i = 0; i < worlds.size(); ++i) {
    if (i) r.body += ',';
    append_world(r.body, worlds[i].first, worlds[i].second);
  }
  r.body += ']';
  tag_node(r, node);
  co_return r;
}

}  // namespace webstack
