#include "core/config.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace webstack {
namespace {

namespace fs = std::filesystem;

// A file under the test temp directory, removed at the end of the test.
class TempFile {
 public:
  explicit TempFile(const std::string& content, const std::string& suffix = ".toml") {
    static std::atomic<int> counter{0};
    path_ = (fs::path(testing::TempDir()) / ("webstack_config_test_" + std::to_string(::getpid()) +
                                             "_" + std::to_string(counter++) + suffix))
                .string();
    std::ofstream out(path_, std::ios::binary);
    out << content;
  }
  ~TempFile() {
    std::error_code ec;
    fs::remove(path_, ec);
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Runs `f`, expects a ConfigError and returns it.
template <typename F>
ConfigError expect_error(F&& f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e;
  }
  ADD_FAILURE() << "no ConfigError thrown";
  return ConfigError("", "", "none");
}

// A null-terminated environ block.
class Env {
 public:
  Env(std::initializer_list<std::string> vars) : storage_(vars) {
    for (auto& s : storage_) ptrs_.push_back(s.data());
    ptrs_.push_back(nullptr);
  }
  char** get() { return ptrs_.data(); }

 private:
  std::vector<std::string> storage_;
  std::vector<char*> ptrs_;
};

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

TEST(ConfigTest, DefaultsAreValidExceptNodes) {
  Config cfg;
  const ConfigError e = expect_error([&] { validate(cfg); });
  EXPECT_EQ(e.key(), "db.nodes");
  EXPECT_STREQ(e.what(), "db.nodes: at least one database node is required");

  cfg.db.nodes.push_back(DbNode{"db1", 3306});
  EXPECT_NO_THROW(validate(cfg));
}

// The documented example must stay a valid file that names every key.
TEST(ConfigTest, TheDocumentedExampleIsValidAndComplete) {
  const std::string path = std::string(WEBSTACK_SOURCE_DIR) + "/docs/webstack-app.example.toml";
  Config cfg;
  ASSERT_NO_THROW(apply_toml_file(cfg, path));
  EXPECT_NO_THROW(validate(cfg));
  EXPECT_EQ(cfg.db.nodes.size(), 2u);
  std::ifstream in(path);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (const auto& key : config_keys()) {
    const std::string leaf = key.substr(key.find('.') + 1);
    const bool set = text.find("\n" + leaf + " =") != std::string::npos;
    const bool commented = text.find("\n# " + leaf + " =") != std::string::npos;
    EXPECT_TRUE(set || commented) << key << " is not documented";
  }
}

TEST(ConfigTest, ConfigKeysListsEveryKey) {
  const std::vector<std::string> keys = config_keys();
  EXPECT_EQ(keys.size(), 33u);
  for (const char* k : {"server.listen", "server.port", "server.access_log", "db.nodes",
                        "db.password_file", "db.probe_user", "db.probe_password",
                        "db.probe_password_file", "db.gtid_wait_ms", "db.keyed_write_wait_ms",
                        "db.idempotency_ttl_s", "db.idempotency_cleanup_ms", "log.level"}) {
    EXPECT_NE(std::find(keys.begin(), keys.end(), k), keys.end()) << k;
  }
}

TEST(ConfigTest, TomlFileWithEverySection) {
  TempFile file(R"([server]
listen = "127.0.0.1"
port = 9090
threads = 4
served_by = "app-1"
server_header = "webstack"
header_timeout_ms = 5000
idle_timeout_ms = 30_000
header_limit = 16384
body_limit = 0
shutdown_lameduck_ms = 1500
shutdown_deadline_ms = 20000
shutdown_idle_grace_ms = 100
access_log = true

[db]
nodes = ["db1:3307", "db2", "[::1]:3308"]
user = "app"
password = "secret"
database = "bench"
probe_user = "monitor"
probe_password = "probe secret"
pool_size = 16
pool_wait_ms = 300
connect_timeout_ms = 1000
query_timeout_ms = 2000
probe_interval_ms = 500
max_replica_lag_ms = 2000
gtid_wait_ms = 100

[log]
level = "debug"
)");
  Config cfg;
  apply_toml_file(cfg, file.path());
  EXPECT_EQ(cfg.server.listen, "127.0.0.1");
  EXPECT_EQ(cfg.server.port, 9090);
  EXPECT_EQ(cfg.server.threads, 4u);
  EXPECT_EQ(cfg.server.served_by, "app-1");
  EXPECT_EQ(cfg.server.server_header, "webstack");
  EXPECT_EQ(cfg.server.header_timeout, std::chrono::milliseconds(5000));
  EXPECT_EQ(cfg.server.idle_timeout, std::chrono::milliseconds(30000));
  EXPECT_EQ(cfg.server.header_limit, 16384u);
  EXPECT_EQ(cfg.server.body_limit, 0u);
  EXPECT_EQ(cfg.server.shutdown_lameduck, std::chrono::milliseconds(1500));
  EXPECT_EQ(cfg.server.shutdown_deadline, std::chrono::milliseconds(20000));
  EXPECT_EQ(cfg.server.shutdown_idle_grace, std::chrono::milliseconds(100));
  EXPECT_TRUE(cfg.server.access_log);
  ASSERT_EQ(cfg.db.nodes.size(), 3u);
  EXPECT_EQ(cfg.db.nodes[0], (DbNode{"db1", 3307}));
  EXPECT_EQ(cfg.db.nodes[1], (DbNode{"db2", 3306}));
  EXPECT_EQ(cfg.db.nodes[2], (DbNode{"::1", 3308}));
  EXPECT_EQ(cfg.db.user, "app");
  EXPECT_EQ(cfg.db.password, "secret");
  EXPECT_EQ(cfg.db.database, "bench");
  EXPECT_EQ(cfg.db.probe_user, "monitor");
  EXPECT_EQ(cfg.db.probe_password, "probe secret");
  EXPECT_EQ(cfg.db.pool_size, 16u);
  EXPECT_EQ(cfg.db.pool_wait, std::chrono::milliseconds(300));
  EXPECT_EQ(cfg.db.connect_timeout, std::chrono::milliseconds(1000));
  EXPECT_EQ(cfg.db.query_timeout, std::chrono::milliseconds(2000));
  EXPECT_EQ(cfg.db.probe_interval, std::chrono::milliseconds(500));
  EXPECT_EQ(cfg.db.max_replica_lag, std::chrono::milliseconds(2000));
  EXPECT_EQ(cfg.db.gtid_wait, std::chrono::milliseconds(100));
  EXPECT_EQ(cfg.log_level, "debug");
  EXPECT_NO_THROW(validate(cfg));
}

TEST(ConfigTest, TomlKeysAbsentKeepTheirValue) {
  TempFile file("[server]\nport = 8081\n");
  Config cfg;
  cfg.db.user = "kept";
  apply_toml_file(cfg, file.path());
  EXPECT_EQ(cfg.server.port, 8081);
  EXPECT_EQ(cfg.db.user, "kept");
  EXPECT_EQ(cfg.server.listen, "0.0.0.0");
}

TEST(ConfigTest, TomlWrongType) {
  TempFile file("[server]\nlisten = \"::\"\nport = \"8080\"\n");
  Config cfg;
  const ConfigError e = expect_error([&] { apply_toml_file(cfg, file.path()); });
  EXPECT_EQ(e.key(), "server.port");
  EXPECT_EQ(e.origin(), file.path() + ":3");
  EXPECT_EQ(std::string(e.what()),
            file.path() + ":3: server.port: must be an integer 1..65535, got a string \"8080\"");
}

TEST(ConfigTest, TomlBooleanMustBeABoolean) {
  TempFile file("[server]\naccess_log = 1\n");
  Config cfg;
  const ConfigError e = expect_error([&] { apply_toml_file(cfg, file.path()); });
  EXPECT_EQ(e.key(), "server.access_log");
  EXPECT_EQ(e.origin(), file.path() + ":2");
}

TEST(ConfigTest, TomlOutOfRangeNamesKeyAndLine) {
  TempFile file("# comment\n\n[server]\nthreads = 2\n\n\nport = 70000\n");
  Config cfg;
  const ConfigError e = expect_error([&] { apply_toml_file(cfg, file.path()); });
  EXPECT_EQ(e.key(), "server.port");
  EXPECT_EQ(e.origin(), file.path() + ":7");
  EXPECT_EQ(std::string(e.what()),
            file.path() + ":7: server.port: must be an integer 1..65535, got 70000");
}

TEST(ConfigTest, TomlFirstErrorInFileOrder) {
  // toml++ keeps keys sorted; the error reported must still be the first one in the file.
  TempFile file("[server]\nport = 1.5\nheader_limit = 5\n");
  Config cfg;
  const ConfigError e = expect_error([&] { apply_toml_file(cfg, file.path()); });
  EXPECT_EQ(e.key(), "server.port");
  EXPECT_EQ(e.origin(), file.path() + ":2");
  EXPECT_EQ(std::string(e.what()),
            file.path() + ":2: server.port: must be an integer 1..65535, got a float 1.5");
}

TEST(ConfigTest, TomlValueOutsideSection) {
  TempFile file("port = 8080\n");
  Config cfg;
  const ConfigError e = expect_error([&] { apply_toml_file(cfg, file.path()); });
  EXPECT_EQ(e.key(), "port");
  EXPECT_EQ(e.origin(), file.path() + ":1");
}

TEST(ConfigTest, TomlRanges) {
  struct Case {
    const char* toml;
    const char* key;
  };
  for (const Case& c : {
           Case{"[server]\nport = 0\n", "server.port"},
           Case{"[server]\nthreads = 257\n", "server.threads"},
           Case{"[server]\nheader_timeout_ms = 0\n", "server.header_timeout_ms"},
           Case{"[server]\nidle_timeout_ms = 3600001\n", "server.idle_timeout_ms"},
           Case{"[server]\nheader_limit = 1023\n", "server.header_limit"},
           Case{"[server]\nheader_limit = 1048577\n", "server.header_limit"},
           Case{"[server]\nbody_limit = 67108865\n", "server.body_limit"},
           Case{"[server]\nbody_limit = -1\n", "server.body_limit"},
           Case{"[server]\nserved_by = \"a\\r\\nX-Evil: 1\"\n", "server.served_by"},
           Case{"[db]\npool_size = 0\n", "db.pool_size"},
           Case{"[db]\npool_size = 1025\n", "db.pool_size"},
           Case{"[db]\nuser = \"\"\n", "db.user"},
           Case{"[db]\nprobe_user = \"\"\n", "db.probe_user"},
           Case{"[log]\nlevel = \"verbose\"\n", "log.level"},
       }) {
    TempFile file(c.toml);
    Config cfg;
    const ConfigError e = expect_error([&] { apply_toml_file(cfg, file.path()); });
    EXPECT_EQ(e.key(), c.key) << c.toml;
    EXPECT_EQ(e.origin(), file.path() + ":2") << c.toml;
  }
  // The limits themselves are accepted.
  TempFile ok(
      "[server]\nport = 65535\nthreads = 256\nheader_limit = 1024\nbody_limit = 67108864\n"
      "idle_timeout_ms = 3600000\n[db]\npool_size = 1024\n");
  Config cfg;
  EXPECT_NO_THROW(apply_toml_file(cfg, ok.path()));
}

TEST(ConfigTest, HeaderTextLimitedTo255) {
  Config cfg;
  EXPECT_NO_THROW(apply_setting(cfg, "server.server_header", std::string(255, 'a'), "--set"));
  const ConfigError e = expect_error(
      [&] { apply_setting(cfg, "server.server_header", std::string(256, 'a'), "--set"); });
  EXPECT_EQ(e.key(), "server.server_header");
}

TEST(ConfigTest, TomlUnknownKey) {
  TempFile file("[server]\nport = 8080\nprot = 8081\n");
  Config cfg;
  const ConfigError e = expect_error([&] { apply_toml_file(cfg, file.path()); });
  EXPECT_EQ(e.key(), "server.prot");
  EXPECT_EQ(e.origin(), file.path() + ":3");
  const std::string what = e.what();
  EXPECT_TRUE(contains(what, file.path() + ":3: server.prot: unknown key")) << what;
  EXPECT_TRUE(contains(what, "did you mean server.port?")) << what;
  EXPECT_TRUE(contains(what, "server.listen, server.port")) << what;
}

TEST(ConfigTest, TomlUnknownSection) {
  TempFile file("[server]\nport = 8080\n\n[sever]\nport = 1\n");
  Config cfg;
  const ConfigError e = expect_error([&] { apply_toml_file(cfg, file.path()); });
  EXPECT_EQ(e.key(), "sever");
  EXPECT_EQ(e.origin(), file.path() + ":4");
  EXPECT_TRUE(contains(e.what(), "unknown section")) << e.what();
}

TEST(ConfigTest, TomlParseError) {
  TempFile file("[server]\nport = 8080\nlisten = \n");
  Config cfg;
  const ConfigError e = expect_error([&] { apply_toml_file(cfg, file.path()); });
  EXPECT_EQ(e.origin(), file.path() + ":3");
  EXPECT_TRUE(contains(e.what(), "invalid TOML")) << e.what();
}

TEST(ConfigTest, TomlMissingFile) {
  Config cfg;
  const ConfigError e =
      expect_error([&] { apply_toml_file(cfg, "/nonexistent/webstack/app.toml"); });
  EXPECT_EQ(e.origin(), "/nonexistent/webstack/app.toml");
}

TEST(ConfigTest, EnvironmentOverridesFile) {
  TempFile file("[server]\nport = 9090\nthreads = 3\n[log]\nlevel = \"warn\"\n");
  Config cfg;
  apply_toml_file(cfg, file.path());
  Env env{"PATH=/usr/bin",
          "WEBSTACK_SERVER_PORT=9191",
          "WEBSTACK_CONFIG=/etc/app.toml",
          "WEBSTACK_DB_NODES=a:3306, b",
          "WEBSTACK_LOG_LEVEL=DEBUG",
          "WEBSTACK_SERVER_ACCESS_LOG=yes"};
  apply_environment(cfg, env.get());
  EXPECT_EQ(cfg.server.port, 9191);
  EXPECT_EQ(cfg.server.threads, 3u);
  EXPECT_EQ(cfg.log_level, "debug");
  EXPECT_TRUE(cfg.server.access_log);
  EXPECT_EQ(cfg.db.nodes, (std::vector<DbNode>{{"a", 3306}, {"b", 3306}}));
}

TEST(ConfigTest, EnvironmentErrorNamesVariable) {
  Config cfg;
  Env env{"WEBSTACK_SERVER_PORT=http"};
  const ConfigError e = expect_error([&] { apply_environment(cfg, env.get()); });
  EXPECT_EQ(e.key(), "server.port");
  EXPECT_EQ(e.origin(), "env WEBSTACK_SERVER_PORT");
  EXPECT_STREQ(e.what(),
               "env WEBSTACK_SERVER_PORT: server.port: must be an integer 1..65535, got \"http\"");
}

TEST(ConfigTest, UnknownWebstackVariable) {
  Config cfg;
  Env env{"WEBSTACK_SERVER_PROT=8080"};
  const ConfigError e = expect_error([&] { apply_environment(cfg, env.get()); });
  EXPECT_EQ(e.origin(), "env WEBSTACK_SERVER_PROT");
  EXPECT_TRUE(contains(e.what(), "unknown variable")) << e.what();
  EXPECT_TRUE(contains(e.what(), "WEBSTACK_SERVER_PORT")) << e.what();

  Config untouched;
  Env other{"WEBSTACKX=1", "HOME=/root", "WEBSTACK_CONFIG=x.toml"};
  EXPECT_NO_THROW(apply_environment(untouched, other.get()));
  EXPECT_NO_THROW(apply_environment(untouched, nullptr));
}

TEST(ConfigTest, ApplySetting) {
  Config cfg;
  apply_setting(cfg, "server.port", "8088", "--set");
  apply_setting(cfg, "server.access_log", "no", "--set");
  apply_setting(cfg, "db.query_timeout_ms", "1500", "--set");
  apply_setting(cfg, "server.served_by", "node a", "--set");
  EXPECT_EQ(cfg.server.port, 8088);
  EXPECT_FALSE(cfg.server.access_log);
  EXPECT_EQ(cfg.db.query_timeout, std::chrono::milliseconds(1500));
  EXPECT_EQ(cfg.server.served_by, "node a");

  for (const char* b : {"true", "1", "yes", "YES"}) {
    apply_setting(cfg, "server.access_log", b, "--set");
    EXPECT_TRUE(cfg.server.access_log) << b;
  }
  for (const char* b : {"false", "0", "no"}) {
    apply_setting(cfg, "server.access_log", b, "--set");
    EXPECT_FALSE(cfg.server.access_log) << b;
  }

  ConfigError e = expect_error([&] { apply_setting(cfg, "server.access_log", "maybe", "--set"); });
  EXPECT_EQ(e.key(), "server.access_log");
  EXPECT_EQ(e.origin(), "--set");

  e = expect_error([&] { apply_setting(cfg, "server.port", "8080x", "--set"); });
  EXPECT_STREQ(e.what(), "--set: server.port: must be an integer 1..65535, got \"8080x\"");

  e = expect_error([&] { apply_setting(cfg, "server.prot", "1", "--set"); });
  EXPECT_EQ(e.key(), "server.prot");
  EXPECT_TRUE(contains(e.what(), "--set: server.prot: unknown key")) << e.what();
}

TEST(ConfigTest, PasswordFile) {
  TempFile secret("s3cret pass\n", ".txt");
  Config cfg;
  apply_setting(cfg, "db.password_file", secret.path(), "--set");
  EXPECT_EQ(cfg.db.password, "s3cret pass");

  TempFile crlf("other\r\n", ".txt");
  TempFile toml("[db]\npassword_file = \"" + crlf.path() + "\"\n");
  apply_toml_file(cfg, toml.path());
  EXPECT_EQ(cfg.db.password, "other");

  const ConfigError e =
      expect_error([&] { apply_setting(cfg, "db.password_file", "/nonexistent/secret", "--set"); });
  EXPECT_EQ(e.key(), "db.password_file");
  EXPECT_TRUE(contains(e.what(), "/nonexistent/secret")) << e.what();
}

// Without a probe password the prober logs in as db.user (prober.cpp): the default
// configuration is a single-account setup.
TEST(ConfigTest, ProbeAccountDefaults) {
  Config cfg;
  EXPECT_EQ(cfg.db.probe_user, "webstack_probe");
  EXPECT_EQ(cfg.db.probe_password, "");
}

// The probe account's keys work like db.user / db.password / db.password_file.
TEST(ConfigTest, ProbeAccountFromEverySource) {
  TempFile secret("probe pw\r\n", ".txt");
  TempFile toml("[db]\nprobe_user = \"mon\"\nprobe_password_file = \"" + secret.path() + "\"\n");
  Config cfg;
  apply_toml_file(cfg, toml.path());
  EXPECT_EQ(cfg.db.probe_user, "mon");
  EXPECT_EQ(cfg.db.probe_password, "probe pw");
  EXPECT_EQ(cfg.db.password, "");  // the app's password is another key

  Env env{"WEBSTACK_DB_PROBE_USER=mon2", "WEBSTACK_DB_PROBE_PASSWORD=from env"};
  apply_environment(cfg, env.get());
  EXPECT_EQ(cfg.db.probe_user, "mon2");
  EXPECT_EQ(cfg.db.probe_password, "from env");

  TempFile other("other\n", ".txt");
  Env file_env{"WEBSTACK_DB_PROBE_PASSWORD_FILE=" + other.path()};
  apply_environment(cfg, file_env.get());
  EXPECT_EQ(cfg.db.probe_password, "other");

  apply_setting(cfg, "db.probe_password", "from flag", "--set");
  EXPECT_EQ(cfg.db.probe_password, "from flag");
  apply_setting(cfg, "db.probe_password_file", secret.path(), "--set");
  EXPECT_EQ(cfg.db.probe_password, "probe pw");
  apply_setting(cfg, "db.probe_user", "webstack_probe", "--set");
  EXPECT_EQ(cfg.db.probe_user, "webstack_probe");
  EXPECT_EQ(cfg.db.user, "webstack");
}

TEST(ConfigTest, ProbeAccountErrors) {
  Config cfg;
  ConfigError e = expect_error(
      [&] { apply_setting(cfg, "db.probe_password_file", "/nonexistent/probe", "--set"); });
  EXPECT_EQ(e.key(), "db.probe_password_file");
  EXPECT_TRUE(contains(e.what(), "/nonexistent/probe")) << e.what();

  e = expect_error([&] { apply_setting(cfg, "db.probe_password_file", "", "--set"); });
  EXPECT_EQ(e.key(), "db.probe_password_file");

  e = expect_error(
      [&] { apply_setting(cfg, "db.probe_password", std::string("se\0cret", 7), "--set"); });
  EXPECT_EQ(e.key(), "db.probe_password");
  EXPECT_FALSE(contains(e.what(), "cret")) << e.what();  // the value is never echoed

  Env env{"WEBSTACK_DB_PROBE_USER="};
  e = expect_error([&] { apply_environment(cfg, env.get()); });
  EXPECT_EQ(e.key(), "db.probe_user");
  EXPECT_EQ(e.origin(), "env WEBSTACK_DB_PROBE_USER");

  e = expect_error([&] { apply_setting(cfg, "db.probe_pasword", "x", "--set"); });
  EXPECT_TRUE(contains(e.what(), "did you mean db.probe_password?")) << e.what();
  EXPECT_EQ(cfg.db.probe_password, "");
}

TEST(ConfigTest, NodesParsing) {
  Config cfg;
  apply_setting(cfg, "db.nodes", "db1,db2:3307,10.0.0.3:13306", "--set");
  EXPECT_EQ(cfg.db.nodes, (std::vector<DbNode>{{"db1", 3306}, {"db2", 3307}, {"10.0.0.3", 13306}}));

  for (const char* bad :
       {"db1:0", "db1:70000", ":3306", "db1:", "db1:x", "a,,b", "db1,db1:3306", "a:1,a:1", "::1"}) {
    const ConfigError e = expect_error([&] { apply_setting(cfg, "db.nodes", bad, "--set"); });
    EXPECT_EQ(e.key(), "db.nodes") << bad;
  }
  const ConfigError dup =
      expect_error([&] { apply_setting(cfg, "db.nodes", "db1,db1:3306", "--set"); });
  EXPECT_STREQ(dup.what(), "--set: db.nodes: duplicate node db1:3306");

  // The last valid value stays.
  EXPECT_EQ(cfg.db.nodes.size(), 3u);
}

TEST(ConfigTest, TomlNodesErrorsPointAtTheElement) {
  TempFile file("[db]\nnodes = [\n  \"a:3306\",\n  \"b:99999\",\n]\n");
  Config cfg;
  ConfigError e = expect_error([&] { apply_toml_file(cfg, file.path()); });
  EXPECT_EQ(e.key(), "db.nodes");
  EXPECT_EQ(e.origin(), file.path() + ":4");

  TempFile wrong("[db]\nnodes = \"a:3306\"\n");
  e = expect_error([&] { apply_toml_file(cfg, wrong.path()); });
  EXPECT_EQ(e.key(), "db.nodes");
  EXPECT_EQ(e.origin(), wrong.path() + ":2");

  TempFile element("[db]\nnodes = [\"a\", 3306]\n");
  e = expect_error([&] { apply_toml_file(cfg, element.path()); });
  EXPECT_EQ(e.key(), "db.nodes");
}

TEST(ConfigTest, ToTomlMasksPasswordAndRoundTrips) {
  Config cfg;
  cfg.db.nodes = {{"db1", 3306}, {"db2", 3307}};
  cfg.db.password = "secret";
  cfg.db.probe_password = "probe-secret";
  cfg.server.served_by = "a \"b\"";
  const std::string text = to_toml(cfg);
  EXPECT_TRUE(contains(text, "[server]\nlisten = \"0.0.0.0\"\nport = 8080\n")) << text;
  EXPECT_TRUE(contains(text, "\npassword = \"***\"\n")) << text;
  EXPECT_TRUE(contains(text, "\nprobe_user = \"webstack_probe\"\nprobe_password = \"***\"\n"))
      << text;
  EXPECT_FALSE(contains(text, "secret")) << text;
  EXPECT_FALSE(contains(text, "password_file")) << text;
  EXPECT_TRUE(contains(text, "nodes = [\"db1:3306\", \"db2:3307\"]\n")) << text;
  EXPECT_TRUE(contains(text, "[log]\nlevel = \"info\"\n")) << text;

  TempFile file(text);
  Config back;
  apply_toml_file(back, file.path());
  EXPECT_EQ(back.db.nodes, cfg.db.nodes);
  EXPECT_EQ(back.server.served_by, cfg.server.served_by);
  EXPECT_EQ(back.db.password, "***");
  EXPECT_EQ(back.db.probe_password, "***");
  EXPECT_EQ(to_toml(back), text);

  Config no_password;
  EXPECT_TRUE(contains(to_toml(no_password), "\npassword = \"\"\n"));
  EXPECT_TRUE(contains(to_toml(no_password), "\nprobe_password = \"\"\n"));
}

}  // namespace
}  // namespace webstack
