// AppProcess: runs the built webstack-app (WEBSTACK_APP_PATH) as a child for a test.
//
//   auto& db = webstack::it::MariaDbPair::shared();
//   webstack::it::AppProcess app(webstack::it::app_options_for(db));   // waits for /healthz 200
//   webstack::it::HttpClient c(app.port());
//   EXPECT_EQ(c.get("/db").status, 200);
//
//   auto opts = webstack::it::app_options_for(db);
//   opts.settings.push_back("server.threads=2");           // passed as --set server.threads=2
//   webstack::it::AppProcess app2(std::move(opts));
//   EXPECT_EQ(WEXITSTATUS(app2.stop()), 0);                // SIGTERM, graceful drain
//
// The app gets `--set key=value` for every entry of settings, plus (unless the settings
// already name them) server.listen=127.0.0.1 and server.port=<a free port>; the DB passwords
// go in the environment as WEBSTACK_DB_PASSWORD and WEBSTACK_DB_PROBE_PASSWORD. Its stdout
// and stderr go to a temp file: log() returns it, and the destructor prints its tail when the
// current test has failed.
// The destructor stops the app (SIGTERM; SIGKILL after the stop grace) and removes the file.
// The child runs with PR_SET_PDEATHSIG=SIGKILL (see subprocess.hpp).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "mariadb_pair.hpp"
#include "subprocess.hpp"

#ifndef WEBSTACK_APP_PATH
#error "WEBSTACK_APP_PATH must be the path of the webstack-app binary"
#endif

namespace webstack::it {

struct AppOptions {
  std::vector<std::string> settings;    // "key=value", each passed as --set key=value
  std::vector<std::string> extra_args;  // passed as they are, before the --set arguments
  std::string db_password;              // WEBSTACK_DB_PASSWORD (not set when empty)
  std::string db_probe_password;        // WEBSTACK_DB_PROBE_PASSWORD (not set when empty)
  std::vector<std::pair<std::string, std::string>> env;  // more environment variables
  bool wait_healthy = true;  // wait for GET health_path == 200 in the constructor
  std::string health_path = "/healthz";
  std::chrono::milliseconds startup_timeout{30'000};
  std::chrono::milliseconds stop_grace{20'000};  // SIGTERM -> SIGKILL in stop()/destructor
  std::string binary = WEBSTACK_APP_PATH;
};

// db.nodes (both nodes), db.user, db.database and the app user's password; db.probe_user and
// its password (the topology probe's own account, as in the lab).
AppOptions app_options_for(const MariaDbPair& db);

class AppProcess {
 public:
  // Starts the app; with wait_healthy, waits until GET health_path answers 200. Throws
  // std::runtime_error (with the app's output) if it exits or is not healthy in time.
  explicit AppProcess(AppOptions options);
  ~AppProcess();
  AppProcess(const AppProcess&) = delete;
  AppProcess& operator=(const AppProcess&) = delete;

  pid_t pid() const { return pid_; }
  std::uint16_t port() const { return port_; }
  const AppOptions& options() const { return options_; }

  bool running();        // reaps the child if it has exited
  void signal(int sig);  // e.g. SIGTERM, to observe the shutdown yourself
  // Waits for the app to exit; its raw wait status, or nullopt on timeout.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout);
  // SIGTERM, wait up to options().stop_grace, then SIGKILL. Raw wait status (use
  // WIFEXITED/WEXITSTATUS). Calling it again returns the same status.
  int stop();
  // Waits until GET path answers `status`; throws on timeout or if the app exits.
  void wait_for_status(const std::string& path, int status, std::chrono::milliseconds timeout);

  std::string log() const;  // stdout + stderr so far
  const std::string& log_path() const { return log_path_; }

 private:
  AppOptions options_;
  std::string dir_;
  std::string log_path_;
  std::uint16_t port_ = 0;
  pid_t pid_ = -1;
  std::optional<int> exit_status_;
};

}  // namespace webstack::it
