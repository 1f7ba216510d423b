// webstack-app configuration: defaults, then a TOML file, then WEBSTACK_* environment
// variables, then command-line --set overrides. Every value passes the same validation,
// and an error names the key, where the value came from and why it was refused.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "common/text.hpp"

namespace webstack {

struct DbNode {
  std::string host;
  std::uint16_t port = 3306;
  std::string name() const { return host + ":" + std::to_string(port); }
  bool operator==(const DbNode&) const = default;
};

struct ServerConfig {
  std::string listen = "0.0.0.0";
  std::uint16_t port = 8080;
  unsigned threads = 0;   // 0: one per core
  std::string served_by;  // X-Served-By value; empty: the host name
  std::string server_header = "webstack-app";
  std::chrono::milliseconds header_timeout{10'000};     // slowloris bound -> 408
  std::chrono::milliseconds idle_timeout{60'000};       // keep-alive idle, then silent close
  std::size_t header_limit = 8 * 1024;                  // -> 431
  std::size_t body_limit = 64 * 1024;                   // -> 413
  std::chrono::milliseconds shutdown_lameduck{0};       // after SIGTERM: /readyz 503, still serving
  std::chrono::milliseconds shutdown_deadline{10'000};  // after the lame duck, hard close
  std::chrono::milliseconds shutdown_idle_grace{500};   // idle keep-alive kept this long on drain
  bool access_log = false;
};

struct DatabaseConfig {
  std::vector<DbNode> nodes;  // every node; the app finds the primary itself
  std::string user = "webstack";
  std::string password;
  std::string database = "webstack";
  // The topology prober's account (SLAVE MONITOR only). With no probe password the prober
  // logs in as user/password: a single-account setup works, with replica status only if
  // that account holds SLAVE MONITOR.
  std::string probe_user = "webstack_probe";
  std::string probe_password;
  unsigned pool_size = 8;                    // per node, per I/O thread
  std::chrono::milliseconds pool_wait{200};  // bounded wait for a pooled connection -> 503
  std::chrono::milliseconds connect_timeout{2'000};
  std::chrono::milliseconds query_timeout{5'000};
  std::chrono::milliseconds probe_interval{1'000};   // topology re-check period
  std::chrono::milliseconds max_replica_lag{1'000};  // replicas lagging more are not read from
  std::chrono::milliseconds gtid_wait{250};          // read-your-writes wait on a replica
  // A write finding no writable node (a promotion under way) waits this long for the
  // prober to find one, then 503.
  std::chrono::milliseconds writer_wait{2'000};
  // A write with an Idempotency-Key may run again: after a failure that leaves unknown
  // whether it committed (connection lost, statement timed out) too, on whichever node is
  // writable, until this long after it began (long enough for a promotion), then 503.
  std::chrono::milliseconds keyed_write_wait{15'000};
  // How long a stored key answers repeats; then the app deletes it, every cleanup period.
  std::chrono::seconds idempotency_ttl{24 * 3600};
  std::chrono::milliseconds idempotency_cleanup{60'000};
};

struct Config {
  ServerConfig server;
  DatabaseConfig db;
  std::string log_level = "info";  // debug, info, warn, error
};

// A configuration error: `key` is the dotted key ("server.port"), `origin` where the
// value came from ("app.toml:12", "env WEBSTACK_SERVER_PORT", "--set").
class ConfigError : public std::runtime_error {
 public:
  // what() is "origin: key: why"; an empty origin or key is left out.
  ConfigError(std::string key, std::string origin, const std::string& why)
      : std::runtime_error(text::located(origin, 0, key, why)),
        key_(std::move(key)),
        origin_(std::move(origin)) {}
  const std::string& key() const { return key_; }
  const std::string& origin() const { return origin_; }

 private:
  std::string key_;
  std::string origin_;
};

// Applies one textual value (from env or --set) to `cfg`. Throws ConfigError.
void apply_setting(Config& cfg, const std::string& key, const std::string& value,
                   const std::string& origin);

// Reads a TOML file into `cfg` (keys absent from the file keep their value).
// Unknown keys and wrong types are errors. Throws ConfigError.
void apply_toml_file(Config& cfg, const std::string& path);

// Applies WEBSTACK_<SECTION>_<KEY> variables from `environ` (e.g. WEBSTACK_SERVER_PORT,
// WEBSTACK_DB_NODES="a:3306,b:3306", WEBSTACK_DB_PASSWORD). Throws ConfigError.
void apply_environment(Config& cfg, char** environ);

// Cross-field checks after every source is applied (e.g. db.nodes not empty).
void validate(const Config& cfg);

// The keys that exist, for --help and error messages.
std::vector<std::string> config_keys();

// Renders the effective configuration as TOML (passwords masked), for --check-config.
std::string to_toml(const Config& cfg);

}  // namespace webstack
