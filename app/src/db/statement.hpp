// What a statement takes and what comes back: parameters, rows, results, and the errors
// that say why the database could not serve it. No Asio: shared by Connection, Lease and
// Cluster, and by the handlers through db/cluster.hpp.
#pragma once

#include <array>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace webstack::db {

// The database could not serve the request: no writable node, no reachable node,
// pool wait timed out, connection lost during a write. Handlers answer 503.
class Unavailable : public std::runtime_error {
  using std::runtime_error::runtime_error;
};
// The connection broke (server gone, killed, network error): it was closed and will be
// replaced. A kind of Unavailable; Cluster::read retries once on it.
class ConnectionLost : public Unavailable {
  using Unavailable::Unavailable;
};
// A write reached a node that is read-only now (demoted since the last probe): the
// statement did not run, so Cluster::write may run it again on the new primary.
class RefusedReadOnly : public Unavailable {
  using Unavailable::Unavailable;
};
// The server refused a statement (syntax, constraint, deadlock...). Handlers answer 500.
class QueryError : public std::runtime_error {
 public:
  explicit QueryError(const std::string& what, unsigned code = 0)
      : std::runtime_error(what), code_(code) {}
  unsigned code() const { return code_; }  // the server's ER_* number; 0 if not from it
  // The statement lost a lock conflict and was rolled back: running it again is safe.
  bool retryable() const {
    return code_ == 1213 /* ER_LOCK_DEADLOCK */ || code_ == 1205 /* ER_LOCK_WAIT_TIMEOUT */;
  }

 private:
  unsigned code_;
};

using Param = std::variant<std::nullptr_t, std::int64_t, std::string_view>;
using Field =
    std::variant<std::monostate, std::int64_t, double, std::string>;  // NULL, ints, floats, text
using Row = std::vector<Field>;

// Statement parameters as a braced list: `{id}`, `{name, body}` (up to kMax; beyond, use a
// std::vector<Param>). Not a std::initializer_list: g++ 12 rejects a braced
// initializer_list temporary inside a co_await expression ("array used as initializer").
// Held by value, so a not-yet-awaited execute() does not dangle.
class Params {
 public:
  static constexpr std::size_t kMax = 16;
  Params() = default;
  template <class... P>
  requires(sizeof...(P) >= 1 && sizeof...(P) <= kMax && (std::convertible_to<P, Param> && ...))
      Params(P&&... params)  // NOLINT(google-explicit-constructor): braced lists are the point
      : values_{Param(std::forward<P>(params))...}, size_(sizeof...(P)) {}
  std::span<const Param> span() const { return {values_.data(), size_}; }

 private:
  std::array<Param, kMax> values_{};
  std::size_t size_ = 0;
};

// `lease.execute(sql, db::params(id, name))`: the same as a braced list, spelled as a call.
template <class... P>
Params params(P&&... values) {
  return Params(std::forward<P>(values)...);
}

struct Result {
  std::vector<Row> rows;
  std::uint64_t affected_rows = 0;
  std::uint64_t insert_id = 0;
};

}  // namespace webstack::db
