#include "core/config_keys.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iterator>
#include <type_traits>

#include "common/text.hpp"

namespace webstack::config_detail {

void refuse(std::string why) {
  throw Refused{std::move(why)};
}

std::string quoted(std::string_view s) {
  std::string out = "\"";
  text::json_escape(s, out);
  out += '"';
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
  }
  return out;
}

namespace {

// ---------------------------------------------------------------------------------------------
// The checks.

bool printable_ascii(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x20 && c <= 0x7e; });
}

// Of string keys: each refuses the text, or returns what is stored.

// A header value: printable ASCII (so no CR/LF), at most 255 bytes.
std::string header_value(const std::string& s) {
  if (s.size() > 255) {
    refuse(fmt::format("must be at most 255 characters, got {}", s.size()));
  }
  if (!printable_ascii(s)) {
    refuse(fmt::format("must be printable ASCII without CR/LF, got {}", quoted(s)));
  }
  return s;
}

// An account, a schema, an address: not empty, printable ASCII.
std::string plain_name(const std::string& s) {
  if (s.empty()) {
    refuse("must not be empty");
  }
  if (!printable_ascii(s)) {
    refuse(fmt::format("must be printable ASCII, got {}", quoted(s)));
  }
  return s;
}

std::string listen_address(const std::string& s) {
  plain_name(s);
  if (s.find(' ') != std::string::npos) {
    refuse("must not contain spaces");
  }
  return s;
}

// A password: never echoed in an error.
std::string no_nul(const std::string& s) {
  if (s.find('\0') != std::string::npos) {
    refuse("must not contain NUL");
  }
  return s;
}

std::string log_level(const std::string& s) {
  std::string level = lower(s);
  if (level != "debug" && level != "info" && level != "warn" && level != "error") {
    refuse(fmt::format("must be one of debug, info, warn, error, got {}", quoted(s)));
  }
  return level;
}

// "host", "host:port", "[v6addr]" or "[v6addr]:port".
DbNode parse_node(std::string_view text) {
  const std::string_view t = trim(text);
  if (t.empty()) {
    refuse("empty node address (expected host or host:port)");
  }
  std::string_view host;
  std::string_view port;
  bool has_port = false;
  if (t.front() == '[') {
    const auto close = t.find(']');
    if (close == std::string_view::npos) {
      refuse(fmt::format("{}: missing ']'", quoted(t)));
    }
    host = t.substr(1, close - 1);
    std::string_view rest = t.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') {
        refuse(fmt::format("{}: expected ':port' after ']'", quoted(t)));
      }
      port = rest.substr(1);
      has_port = true;
    }
  } else {
    const auto colon = t.rfind(':');
    if (colon == std::string_view::npos) {
      host = t;
    } else {
      host = t.substr(0, colon);
      port = t.substr(colon + 1);
      has_port = true;
      if (host.find(':') != std::string_view::npos) {
        refuse(fmt::format("{}: an IPv6 address must be written [addr]:port", quoted(t)));
      }
    }
  }
  if (host.empty()) {
    refuse(fmt::format("{}: host must not be empty", quoted(t)));
  }
  for (char c : host) {
    if (c <= 0x20 || c >= 0x7f || c == ',' || c == '/' || c == '"') {
      refuse(fmt::format("{}: invalid character in host", quoted(t)));
    }
  }
  DbNode node;
  node.host = std::string(host);
  if (has_port) {
    unsigned long p = 0;
    const auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (port.empty() || ec != std::errc() || ptr != port.data() + port.size() || p < 1 ||
        p > 65535) {
      refuse(fmt::format("{}: port must be an integer 1..65535", quoted(t)));
    }
    node.port = static_cast<std::uint16_t>(p);
  }
  return node;
}

void apply_nodes(Config& cfg, const Value& v) {
  std::vector<DbNode> nodes;
  for (const Item& item : std::get<std::vector<Item>>(v)) {
    DbNode node;
    try {
      node = parse_node(item.text);
    } catch (Refused& r) {
      throw ConfigError("db.nodes", item.origin, r.why);
    }
    if (std::find(nodes.begin(), nodes.end(), node) != nodes.end()) {
      throw ConfigError("db.nodes", item.origin, fmt::format("duplicate node {}", node.name()));
    }
    nodes.push_back(std::move(node));
  }
  cfg.db.nodes = std::move(nodes);
}

std::string render_nodes(const Config& cfg) {
  std::string out = "[";
  for (std::size_t i = 0; i < cfg.db.nodes.size(); ++i) {
    if (i > 0) {
      out += ", ";
    }
    const DbNode& n = cfg.db.nodes[i];
    const bool v6 = n.host.find(':') != std::string::npos;
    out += quoted(v6 ? fmt::format("[{}]:{}", n.host, n.port) : n.name());
  }
  out += "]";
  return out;
}

std::string read_password_file(const std::string& path) {
  if (path.empty()) {
    refuse("must not be empty");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    refuse(fmt::format("cannot read {}: {}", quoted(path), std::strerror(errno)));
  }
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) {
    refuse(fmt::format("cannot read {}: {}", quoted(path), std::strerror(errno)));
  }
  while (!content.empty() && (content.back() == '\n' || content.back() == '\r')) {
    content.pop_back();
  }
  return content;
}

// ---------------------------------------------------------------------------------------------
// Row builders of the key table: where a key is stored, how it is checked and rendered.

// Where a key is stored: `at<&Server::port>`, a member of Config or of one of its sections.
template <auto Member>
struct At {};
template <auto Member>
constexpr At<Member> at{};

using Server = ServerConfig;
using Db = DatabaseConfig;

template <class M>
struct MemberOf;
template <class T, class S>
struct MemberOf<T S::*> {
  using Section = S;
};

template <class Section, class C>  // C: Config or const Config
auto& section(C& c) {
  if constexpr (std::is_same_v<Section, ServerConfig>) {
    return c.server;
  } else if constexpr (std::is_same_v<Section, DatabaseConfig>) {
    return c.db;
  } else {
    static_assert(std::is_same_v<Section, Config>);
    return c;
  }
}

template <auto Member, class C>
auto& field(C& c) {
  return section<typename MemberOf<decltype(Member)>::Section>(c).*Member;
}

template <class T>
constexpr bool kDuration = false;
template <class Rep, class Period>
constexpr bool kDuration<std::chrono::duration<Rep, Period>> = true;

template <auto Member>
void store_integer(Config& c, const Value& v) {
  auto& f = field<Member>(c);
  using T = std::remove_reference_t<decltype(f)>;
  if constexpr (kDuration<T>) {
    f = T(as_int(v));
  } else {
    f = static_cast<T>(as_int(v));
  }
}

template <auto Member>
std::string render_integer(const Config& c) {
  const auto& f = field<Member>(c);
  if constexpr (kDuration<std::remove_cvref_t<decltype(f)>>) {
    return std::to_string(f.count());
  } else {
    return std::to_string(f);
  }
}

template <auto Member>
void store_value(Config& c, const Value& v) {
  using T = std::remove_reference_t<decltype(field<Member>(c))>;
  field<Member>(c) = std::get<T>(v);
}

std::string render_str(std::string_view s) {
  return quoted(s);
}
std::string render_bool(bool b) {
  return b ? "true" : "false";
}

template <auto Member>
std::string render_text(const Config& c) {
  return render_str(field<Member>(c));
}

template <auto Member>
std::string render_masked(const Config& c) {
  return render_str(field<Member>(c).empty() ? "" : "***");
}

template <auto Member>
std::string render_boolean(const Config& c) {
  return render_bool(field<Member>(c));
}

// An integer `min`..`max`, stored as a count or as a std::chrono duration; `unit` is shown
// in the error.
template <auto Member>
constexpr KeyDef integer(std::string_view name, At<Member>, std::int64_t min, std::int64_t max,
                         std::string_view unit = {}) {
  return {.name = name,
          .kind = Kind::Integer,
          .min = min,
          .max = max,
          .unit = unit,
          .store = store_integer<Member>,
          .render = render_integer<Member>};
}

template <auto Member>
constexpr KeyDef boolean(std::string_view name, At<Member>) {
  return {.name = name,
          .kind = Kind::Boolean,
          .store = store_value<Member>,
          .render = render_boolean<Member>};
}

template <auto Member>
constexpr KeyDef text(std::string_view name, At<Member>, std::string (*check)(const std::string&)) {
  return {.name = name,
          .kind = Kind::String,
          .check = check,
          .store = store_value<Member>,
          .render = render_text<Member>};
}

// Rendered as "***" when set.
template <auto Member>
constexpr KeyDef password(std::string_view name, At<Member>) {
  return {.name = name,
          .kind = Kind::String,
          .check = no_nul,
          .store = store_value<Member>,
          .render = render_masked<Member>};
}

// The password read from the file named; not rendered (the password key is).
template <auto Member>
constexpr KeyDef password_file(std::string_view name, At<Member>) {
  return {.name = name,
          .kind = Kind::String,
          .check = read_password_file,
          .store = store_value<Member>,
          .render = nullptr};
}

constexpr std::int64_t kMaxMs = 3'600'000;
constexpr std::int64_t kKiB = 1024;
constexpr std::int64_t kMiB = kKiB * 1024;

// The one table of keys: every source goes through it, in this order (the environment is
// applied in it, --check-config renders in it). Defaults are those of config.hpp.
constexpr std::array kKeys = {
    // [server]
    text("server.listen", at<&Server::listen>, listen_address),
    integer("server.port", at<&Server::port>, 1, 65535),
    integer("server.threads", at<&Server::threads>, 0, 256, "0: one per core"),
    text("server.served_by", at<&Server::served_by>, header_value),
    text("server.server_header", at<&Server::server_header>, header_value),
    integer("server.header_timeout_ms", at<&Server::header_timeout>, 1, kMaxMs, "ms"),
    integer("server.idle_timeout_ms", at<&Server::idle_timeout>, 1, kMaxMs, "ms"),
    integer("server.header_limit", at<&Server::header_limit>, kKiB, kMiB, "bytes, 1 KiB..1 MiB"),
    integer("server.body_limit", at<&Server::body_limit>, 0, 64 * kMiB, "bytes, 0..64 MiB"),
    integer("server.shutdown_lameduck_ms", at<&Server::shutdown_lameduck>, 0, kMaxMs, "ms"),
    integer("server.shutdown_deadline_ms", at<&Server::shutdown_deadline>, 1, kMaxMs, "ms"),
    integer("server.shutdown_idle_grace_ms", at<&Server::shutdown_idle_grace>, 1, kMaxMs, "ms"),
    boolean("server.access_log", at<&Server::access_log>),
    // [db]
    KeyDef{.name = "db.nodes", .kind = Kind::List, .store = apply_nodes, .render = render_nodes},
    text("db.user", at<&Db::user>, plain_name),
    password("db.password", at<&Db::password>),
    password_file("db.password_file", at<&Db::password>),
    text("db.probe_user", at<&Db::probe_user>, plain_name),
    password("db.probe_password", at<&Db::probe_password>),
    password_file("db.probe_password_file", at<&Db::probe_password>),
    text("db.database", at<&Db::database>, plain_name),
    integer("db.pool_size", at<&Db::pool_size>, 1, 1024, "connections per node and I/O thread"),
    integer("db.pool_wait_ms", at<&Db::pool_wait>, 1, kMaxMs, "ms"),
    integer("db.connect_timeout_ms", at<&Db::connect_timeout>, 1, kMaxMs, "ms"),
    integer("db.query_timeout_ms", at<&Db::query_timeout>, 1, kMaxMs, "ms"),
    integer("db.probe_interval_ms", at<&Db::probe_interval>, 1, kMaxMs, "ms"),
    integer("db.max_replica_lag_ms", at<&Db::max_replica_lag>, 1, kMaxMs, "ms"),
    integer("db.gtid_wait_ms", at<&Db::gtid_wait>, 1, kMaxMs, "ms"),
    integer("db.writer_wait_ms", at<&Db::writer_wait>, 0, kMaxMs, "ms"),
    integer("db.keyed_write_wait_ms", at<&Db::keyed_write_wait>, 0, kMaxMs, "ms"),
    integer("db.idempotency_ttl_s", at<&Db::idempotency_ttl>, 1, 366 * 24 * 3600, "s"),
    integer("db.idempotency_cleanup_ms", at<&Db::idempotency_cleanup>, 1, kMaxMs, "ms"),
    // [log]
    text("log.level", at<&Config::log_level>, log_level),
};

}  // namespace

std::span<const KeyDef> key_table() {
  return kKeys;
}

}  // namespace webstack::config_detail
