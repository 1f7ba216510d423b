// Connection's reading of stored results: rows already buffered by Connector/C, turned
// into Fields; no I/O (and no Asio).
#include <algorithm>
#include <charconv>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "db/connection.hpp"

namespace webstack::db {

namespace {

bool is_integer(enum_field_types t) {
  switch (t) {
    case MYSQL_TYPE_TINY:
    case MYSQL_TYPE_SHORT:
    case MYSQL_TYPE_LONG:
    case MYSQL_TYPE_INT24:
    case MYSQL_TYPE_LONGLONG:
    case MYSQL_TYPE_YEAR:
      return true;
    default:
      return false;
  }
}

bool is_real(enum_field_types t) {
  return t == MYSQL_TYPE_DECIMAL || t == MYSQL_TYPE_NEWDECIMAL || t == MYSQL_TYPE_FLOAT ||
         t == MYSQL_TYPE_DOUBLE;
}

// A text-protocol value as a Field: ints as int64, DECIMAL/float as double, else text.
Field text_field(const MYSQL_FIELD& f, const char* data, unsigned long len) {
  if (data == nullptr) {
    return std::monostate{};
  }
  const char* end = data + len;
  if (is_integer(f.type)) {
    std::int64_t v = 0;
    auto [p, ec] = std::from_chars(data, end, v);
    if (ec == std::errc{} && p == end) {
      return v;
    }
  } else if (is_real(f.type)) {
    double v = 0;
    auto [p, ec] = std::from_chars(data, end, v);
    if (ec == std::errc{} && p == end) {
      return v;
    }
  }
  return std::string(data, len);  // also BIGINT UNSIGNED beyond int64
}

// A binary-protocol result column: what it binds, and where its values land.
enum class Kind { Null, Int, Uint, Real, Text };
struct Column {
  Kind kind = Kind::Text;
  long long i = 0;
  double d = 0;
  std::vector<char> buf;
  unsigned long length = 0;
  my_bool is_null = 0;
  my_bool error = 0;
};

// Binds column `col` (field `f`) to `b`: ints as long long, DECIMAL/float as double, else
// text.
void bind_column(const MYSQL_FIELD& f, Column& col, MYSQL_BIND& b) {
  b.is_null = &col.is_null;
  b.length = &col.length;
  b.error = &col.error;
  if (f.type == MYSQL_TYPE_NULL) {
    col.kind = Kind::Null;
    b.buffer_type = MYSQL_TYPE_NULL;
  } else if (is_integer(f.type)) {
    const bool is_unsigned = (f.flags & UNSIGNED_FLAG) != 0;
    col.kind = is_unsigned ? Kind::Uint : Kind::Int;
    b.buffer_type = MYSQL_TYPE_LONGLONG;
    b.buffer = &col.i;
    b.is_unsigned = is_unsigned ? 1 : 0;
  } else if (is_real(f.type)) {
    col.kind = Kind::Real;
    b.buffer_type = MYSQL_TYPE_DOUBLE;
    b.buffer = &col.d;
  } else {
    // Temporal values are converted to text by Connector/C; 64 bytes hold any of them.
    col.buf.resize(std::max<unsigned long>(f.max_length, 64));
    b.buffer_type = MYSQL_TYPE_STRING;
    b.buffer = col.buf.data();
    b.buffer_length = col.buf.size();
  }
}

// The fetched row's value of column `c`; std::nullopt: fetching its whole text failed.
std::optional<Field> binary_field(MYSQL_STMT* handle, const Column& col, unsigned c) {
  if (col.is_null != 0 || col.kind == Kind::Null) {
    return Field{std::monostate{}};
  }
  if (col.kind == Kind::Int) {
    return Field{static_cast<std::int64_t>(col.i)};
  }
  if (col.kind == Kind::Uint) {
    const auto u = static_cast<std::uint64_t>(col.i);
    if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      return Field{std::to_string(u)};
    }
    return Field{static_cast<std::int64_t>(u)};
  }
  if (col.kind == Kind::Real) {
    return Field{col.d};
  }
  if (col.length <= col.buf.size()) {
    return Field{std::string(col.buf.data(), col.length)};
  }
  // Longer than max_length promised (e.g. a temporal conversion): fetch it whole.
  std::string text(col.length, '\0');
  unsigned long length = 0;
  MYSQL_BIND one{};
  one.buffer_type = MYSQL_TYPE_STRING;
  one.buffer = text.data();
  one.buffer_length = text.size();
  one.length = &length;
  if (mysql_stmt_fetch_column(handle, &one, c, 0) != 0) {
    return std::nullopt;
  }
  text.resize(std::min<std::size_t>(length, text.size()));
  return Field{std::move(text)};
}

}  // namespace

// Reads the rows mysql_stmt_store_result() buffered; no I/O.
Result Connection::fetch_binary(MYSQL_STMT* handle) {
  struct FreeResult {
    MYSQL_STMT* h;
    ~FreeResult() { mysql_stmt_free_result(h); }
  } free_result{handle};
  // Metadata taken after store_result(), so max_length is filled in.
  std::unique_ptr<MYSQL_RES, decltype(&mysql_free_result)> meta(mysql_stmt_result_metadata(handle),
                                                                &mysql_free_result);
  if (!meta) {
    fail_stmt(handle, "result metadata");
  }
  const unsigned n = mysql_num_fields(meta.get());
  const MYSQL_FIELD* fields = mysql_fetch_fields(meta.get());
  std::vector<Column> cols(n);
  std::vector<MYSQL_BIND> binds(n);
  for (unsigned c = 0; c < n; ++c) {
    bind_column(fields[c], cols[c], binds[c]);
  }
  if (n > 0 && mysql_stmt_bind_result(handle, binds.data()) != 0) {
    fail_stmt(handle, "bind result");
  }

  Result result;
  result.rows.reserve(static_cast<std::size_t>(mysql_stmt_num_rows(handle)));
  for (;;) {
    const int rc = mysql_stmt_fetch(handle);
    if (rc == MYSQL_NO_DATA) {
      break;
    }
    if (rc == 1) {
      fail_stmt(handle, "fetch row");
    }
    Row row;
    row.reserve(n);
    for (unsigned c = 0; c < n; ++c) {
      std::optional<Field> value = binary_field(handle, cols[c], c);
      if (!value) {
        fail_stmt(handle, "fetch column");
      }
      row.push_back(std::move(*value));
    }
    result.rows.push_back(std::move(row));
  }
  return result;
}

// The rows of a stored text-protocol result, and its column names into `columns` (if
// given).
Result Connection::read_text_rows(MYSQL_RES* res, std::vector<std::string>* columns) {
  Result result;
  const unsigned n = mysql_num_fields(res);
  const MYSQL_FIELD* fields = mysql_fetch_fields(res);
  if (columns != nullptr) {
    columns->clear();
    for (unsigned c = 0; c < n; ++c) {
      columns->emplace_back(fields[c].name, fields[c].name_length);
    }
  }
  result.rows.reserve(static_cast<std::size_t>(mysql_num_rows(res)));
  while (MYSQL_ROW row = mysql_fetch_row(res)) {
    const unsigned long* lengths = mysql_fetch_lengths(res);
    Row out;
    out.reserve(n);
    for (unsigned c = 0; c < n; ++c) {
      out.push_back(text_field(fields[c], row[c], lengths[c]));
    }
    result.rows.push_back(std::move(out));
  }
  return result;
}

}  // namespace webstack::db
