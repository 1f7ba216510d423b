#include "app_process.hpp"

#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <stdexcept>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "http_client.hpp"

namespace webstack::it {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kPollInterval = 50ms;

bool has_setting(const std::vector<std::string>& settings, std::string_view key) {
  return std::any_of(settings.begin(), settings.end(), [&](const std::string& s) {
    return s.size() > key.size() && s.compare(0, key.size(), key) == 0 && s[key.size()] == '=';
  });
}

std::string setting_value(const std::vector<std::string>& settings, std::string_view key) {
  for (const auto& s : settings) {
    if (s.size() > key.size() && s.compare(0, key.size(), key) == 0 && s[key.size()] == '=') {
      return s.substr(key.size() + 1);
    }
  }
  return {};
}

}  // namespace

AppOptions app_options_for(const MariaDbPair& db) {
  AppOptions o;
  o.settings = {"db.nodes=" + db.db_nodes(), "db.user=" + db.app_user(),
                "db.database=" + db.database(), "db.probe_user=" + db.probe_user()};
  o.db_password = db.app_password();
  o.db_probe_password = db.probe_password();
  return o;
}

AppProcess::AppProcess(AppOptions options) : options_(std::move(options)) {
  dir_ = make_temp_dir("app");
  log_path_ = dir_ + "/app.log";
  try {
    if (has_setting(options_.settings, "server.port")) {
      port_ =
          static_cast<std::uint16_t>(std::stoul(setting_value(options_.settings, "server.port")));
    } else {
      port_ = free_tcp_port();
      options_.settings.push_back(fmt::format("server.port={}", port_));
    }
    if (!has_setting(options_.settings, "server.listen")) {
      options_.settings.emplace_back("server.listen=127.0.0.1");
    }
    SpawnOptions spawn;
    spawn.argv.push_back(options_.binary);
    spawn.argv.insert(spawn.argv.end(), options_.extra_args.begin(), options_.extra_args.end());
    for (const auto& s : options_.settings) {
      spawn.argv.emplace_back("--set");
      spawn.argv.push_back(s);
    }
    spawn.env = options_.env;
    if (!options_.db_password.empty()) {
      spawn.env.emplace_back("WEBSTACK_DB_PASSWORD", options_.db_password);
    }
    if (!options_.db_probe_password.empty()) {
      spawn.env.emplace_back("WEBSTACK_DB_PROBE_PASSWORD", options_.db_probe_password);
    }
    spawn.output_path = log_path_;
    pid_ = spawn_daemon(spawn);
    if (options_.wait_healthy) wait_for_status(options_.health_path, 200, options_.startup_timeout);
  } catch (...) {
    if (pid_ > 0) stop();
    // The constructor failed: the destructor will not run, so print the log here.
    std::fprintf(stderr, "---- webstack-app output (%s) ----\n%s\n----\n", log_path_.c_str(),
                 tail_file(log_path_, 8192).c_str());
    remove_tree(dir_);
    throw;
  }
}

AppProcess::~AppProcess() {
  try {
    stop();
  } catch (...) {
  }
  const auto* test = ::testing::UnitTest::GetInstance()->current_test_info();
  if (test != nullptr && ::testing::Test::HasFailure()) {
    std::fprintf(stderr, "---- webstack-app output, last 8 KiB (pid %d, port %u) ----\n%s\n----\n",
                 static_cast<int>(pid_), static_cast<unsigned>(port_),
                 tail_file(log_path_, 8192).c_str());
  }
  remove_tree(dir_);
}

bool AppProcess::running() {
  if (exit_status_) return false;
  exit_status_ = wait_for_exit(pid_, 0ms);
  return !exit_status_;
}

void AppProcess::signal(int sig) {
  if (running()) ::kill(pid_, sig);
}

std::optional<int> AppProcess::wait_exit(std::chrono::milliseconds timeout) {
  if (!exit_status_) exit_status_ = wait_for_exit(pid_, timeout);
  return exit_status_;
}

int AppProcess::stop() {
  if (!exit_status_) exit_status_ = terminate_process(pid_, options_.stop_grace);
  return *exit_status_;
}

void AppProcess::wait_for_status(const std::string& path, int status,
                                 std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  std::string last = "no answer";
  for (;;) {
    if (!running()) {
      throw std::runtime_error(fmt::format("webstack-app exited ({}) while waiting for {} {}",
                                           describe_wait_status(*exit_status_), path, status));
    }
    try {
      HttpClient client(port_, 2s);
      const auto r = client.get(path);
      if (r.status == status) return;
      last = fmt::format("{} {}", r.status, r.body.substr(0, 200));
    } catch (const HttpError& e) {
      last = e.what();
    }
    if (Clock::now() >= deadline) break;
    std::this_thread::sleep_for(kPollInterval);
  }
  throw std::runtime_error(
      fmt::format("webstack-app on port {}: GET {} != {} after {} ms (last: {})", port_, path,
                  status, timeout.count(), last));
}

std::string AppProcess::log() const {
  try {
    return read_file(log_path_);
  } catch (const std::exception&) {
    return {};
  }
}

}  // namespace webstack::it
