#include "bench/bench.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <stdexcept>

#include "bench/bench_internal.hpp"
#include "bench/sysbench.hpp"
#include "common/process.hpp"
#include "common/text.hpp"
#include "lab/network.hpp"
#include "lab/status.hpp"
#include "render/render.hpp"

namespace webstack::bench {

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using topo::Role;

using detail::now_utc;
using detail::prepare_sysbench;
using detail::report;
using detail::run_sysbench;
using detail::Sample;

double to_ms(double value, const std::string& unit) {
  if (unit == "us") return value / 1000.0;
  if (unit == "s") return value * 1000.0;
  return value;  // ms
}

}  // namespace

std::string detail::now_utc(const char* format) {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, format, &tm);
  return buf;
}

WrkResult parse_wrk(const std::string& out) {
  WrkResult r;
  std::smatch m;
  if (!std::regex_search(out, m, std::regex(R"(Requests/sec:\s+(\d+(?:\.\d+)?))"))) {
    throw std::runtime_error("wrk printed no Requests/sec: " + out.substr(0, 300));
  }
  r.requests_per_s = std::stod(m[1]);
  if (std::regex_search(out, m, std::regex(R"(\n\s*50%\s+(\d+(?:\.\d+)?)(us|ms|s)\b)"))) {
    r.p50_ms = to_ms(std::stod(m[1]), m[2]);
  }
  if (std::regex_search(out, m, std::regex(R"(\n\s*99%\s+(\d+(?:\.\d+)?)(us|ms|s)\b)"))) {
    r.p99_ms = to_ms(std::stod(m[1]), m[2]);
  }
  if (std::regex_search(out, m, std::regex(R"((\d+) requests in)"))) r.requests = std::stoll(m[1]);
  if (std::regex_search(out, m, std::regex(R"(Non-2xx or 3xx responses:\s+(\d+))"))) {
    r.non_2xx = std::stoll(m[1]);
  }
  if (std::regex_search(
          out, m,
          std::regex(R"(Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+))"))) {
    r.socket_errors = std::stoll(m[1]) + std::stoll(m[2]) + std::stoll(m[3]) + std::stoll(m[4]);
  }
  return r;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

std::string test_path(const std::string& test) {
  static const std::map<std::string, std::string> kPaths = {
      {"plaintext", "/plaintext"},
      {"json", "/json"},
      {"db", "/db"},
      {"queries", "/queries?queries=20"},
      {"fortunes", "/fortunes"},
      {"updates", "/updates?queries=20"},
      {"write", "/api/messages"},        // guestbook posts (bench/write.lua)
      {"write-keyed", "/api/messages"},  // the same, each with an Idempotency-Key
  };
  const auto it = kPaths.find(test);
  if (it == kPaths.end()) {
    throw std::invalid_argument("unknown test \"" + test +
                                "\" (known: plaintext, json, db, queries, fortunes, updates, "
                                "write, write-keyed)");
  }
  return it->second;
}

namespace {

// The write tests' wrk script: POST /api/messages (JSON), each post a text of its own;
// "keyed" adds an Idempotency-Key that no other post (of this run or an earlier one,
// `nonce`) has, so that every post is a first run, never a replay.
constexpr std::string_view kWriteScript = R"(-- Written by `webstack bench`: guestbook posts.
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function init(args)
  keyed = args[1] == "keyed"
  nonce = args[2]
  counter = 0
end
function request()
  counter = counter + 1
  local headers = {}
  for name, value in pairs(wrk.headers) do headers[name] = value end
  headers["Content-Type"] = "application/json"
  if keyed then
    headers["Idempotency-Key"] = string.format('"bench-%s-%d-%d"', nonce, tid, counter)
  end
  local body = string.format('{"author":"bench","text":"post %s-%d-%d"}', nonce, tid, counter)
  return wrk.format("POST", wrk.path, headers, body)
end
)";

bool is_write_test(const std::string& test) {
  return test == "write" || test == "write-keyed";
}

// Refuses options no run could use: an unknown test or app, nothing to run.
void check_options(const Options& o) {
  for (const auto& test : o.tests) test_path(test);
  for (const auto& app : o.apps) {
    if (app != "webstack" && app != "php" && app != "node") {
      throw std::invalid_argument("unknown app \"" + app + "\" (known: webstack, php, node)");
    }
  }
  if (o.rounds < 1 || o.connections < 1 || o.duration.count() < 1) {
    throw std::invalid_argument("--rounds, --connections and --duration must be at least 1");
  }
}

// The lab, with every app on every web host: brought up with the apps as peers when it is
// down, refused when it is up without them.
void lab_with_peers(const topo::Topology& t, lab::SiteOptions& site, const Options& o) {
  const bool running = lab::lab_svscan_pid(site.state_dir) > 0;
  const auto peers = running ? lab::recorded_peers(site.state_dir) : o.apps;
  for (const auto& app : o.apps) {
    for (const auto* w : t.with_role(Role::Web)) {
      const bool there = w->app == app || std::find(peers.begin(), peers.end(), app) != peers.end();
      if (!there || (running && peers.empty())) {
        throw std::runtime_error(fmt::format(
            "lab {} is up without the benchmark peers ({} on {}): `webstack down`, then `webstack "
            "bench` brings it up with them (or `webstack up --peers webstack,php,node`)",
            t.name, app, w->name));
      }
    }
  }
  if (!running) {
    site.peers = o.apps;
    lab::site_up(t, site);
  }
}

// The site's address through the load balancer, as the client host reaches it.
std::string site_base(const topo::Topology& t, bool tls) {
  const auto* lb = t.with_role(Role::LoadBalancer).front();
  return tls ? fmt::format("https://{}:{}", lb->address, t.https_port)
             : fmt::format("http://{}:{}", lb->address, t.http_port);
}

// One run of the benchmark on a lab that is up: what its steps share. Made, it has the
// report directory, the database ceiling prepared and the write tests' script written.
struct Bench {
  Bench(const topo::Topology& topology, const lab::SiteOptions& site, const Options& options,
        std::FILE* to);
  Bench(const Bench&) = delete;
  Bench& operator=(const Bench&) = delete;

  // wrk from the client host: `app`'s server (Host: <app>.bench) for `test`.
  std::vector<std::string> wrk_argv(const std::string& app, const std::string& test,
                                    std::chrono::seconds duration);
  // 2. Warm-up (not recorded): each app's caches, pools and JITs, a second each test.
  void warm_up();
  // 3. Interleaved rounds.
  std::vector<Sample> rounds();

  const topo::Topology& t;
  const Options& o;
  std::FILE* out;
  const bool tls;
  const std::string client, base, dir;
  const bool with_db_ceiling;
  std::string sysbench_cfg;
  const std::string write_script;
  int wrk_runs = 0;
};

Bench::Bench(const topo::Topology& topology, const lab::SiteOptions& site, const Options& options,
             std::FILE* to)
    : t(topology),
      o(options),
      out(to),
      tls(lab::recorded_profile(site.state_dir) != render::Profile::Seed),
      client(t.with_role(Role::Client).front()->name),
      base(site_base(t, tls)),
      dir(o.out_dir.empty() ? site.state_dir + "/bench/" + now_utc("%Y%m%dT%H%M%SZ") : o.out_dir),
      with_db_ceiling(o.ceilings &&
                      std::find(o.tests.begin(), o.tests.end(), "db") != o.tests.end()),
      write_script(dir + "/write.lua") {
  fs::create_directories(dir);

  if (with_db_ceiling) sysbench_cfg = prepare_sysbench(t, site.state_dir);

  if (std::any_of(o.tests.begin(), o.tests.end(), is_write_test)) {
    std::ofstream(write_script) << kWriteScript;
  }
}

std::vector<std::string> Bench::wrk_argv(const std::string& app, const std::string& test,
                                         std::chrono::seconds duration) {
  std::vector<std::string> argv = {"wrk",
                                   fmt::format("-t{}", o.threads),
                                   fmt::format("-c{}", o.connections),
                                   fmt::format("-d{}s", duration.count()),
                                   "--latency",
                                   "-H",
                                   "Host: " + app + ".bench"};
  if (is_write_test(test)) {
    argv.insert(argv.end(), {"-s", write_script, base + test_path(test), "--",
                             test == "write-keyed" ? "keyed" : "plain",
                             fmt::format("{}-{}", now_utc("%Y%m%dT%H%M%S"), ++wrk_runs)});
  } else {
    argv.push_back(base + test_path(test));
  }
  return lab::in_host(t, client, argv);
}

void Bench::warm_up() {
  for (const auto& test : o.tests) {
    for (const auto& app : o.apps) {
      run(wrk_argv(app, test, 2s), 60s);
    }
  }
}

std::vector<Sample> Bench::rounds() {
  std::vector<Sample> samples;
  for (int round = 1; round <= o.rounds; ++round) {
    for (const auto& test : o.tests) {
      std::vector<std::string> apps = o.apps;
      if (o.ceilings && test == "plaintext") apps.push_back("nginx");
      for (const auto& app : apps) {
        const auto r = run(wrk_argv(app, test, o.duration), o.duration + 60s);
        if (r.exit_code != 0) {
          throw std::runtime_error(
              fmt::format("wrk failed for {} {}: {}", app, test, text::trim(r.err + r.out)));
        }
        Sample s{test, app, round, parse_wrk(r.out)};
        std::fprintf(out, "  round %d  %-10s %-9s %10.0f req/s  p50 %7.2f ms  p99 %7.2f ms%s\n",
                     round, test.c_str(), app.c_str(), s.r.requests_per_s, s.r.p50_ms, s.r.p99_ms,
                     s.r.non_2xx + s.r.socket_errors > 0
                         ? fmt::format("  errors {}", s.r.non_2xx + s.r.socket_errors).c_str()
                         : "");
        std::fflush(out);
        samples.push_back(std::move(s));
      }
      if (with_db_ceiling && test == "db") {
        Sample s{"db", "sysbench", round, run_sysbench(t, sysbench_cfg, o)};
        std::fprintf(out, "  round %d  %-10s %-9s %10.0f q/s    p50 %7.2f ms  p99 %7.2f ms\n",
                     round, "db", "sysbench", s.r.requests_per_s, s.r.p50_ms, s.r.p99_ms);
        std::fflush(out);
        samples.push_back(std::move(s));
      }
    }
  }
  return samples;
}

}  // namespace

std::string run_bench(const topo::Topology& t, lab::SiteOptions site, const Options& o,
                      std::FILE* out) {
  check_options(o);
  // 1. The lab, with every app on every web host.
  lab_with_peers(t, site, o);
  Bench b(t, site, o, out);
  std::fprintf(out,
               "benchmark: %zu apps x %zu tests x %d rounds, %llds each, %d connections, "
               "from %s through %s\n",
               o.apps.size(), o.tests.size(), o.rounds, static_cast<long long>(o.duration.count()),
               o.connections, b.client.c_str(), b.base.c_str());
  std::fflush(out);

  // 2. Warm-up (not recorded).
  b.warm_up();

  // 3. Interleaved rounds.
  const std::vector<Sample> samples = b.rounds();

  // 4. Medians and ratios, 5. the report.
  report(o, {b.dir, b.base, b.tls, b.with_db_ceiling, site.app_binary}, samples, out);
  return b.dir;
}

void run_lab_bench(const topo::Topology& t, const lab::SiteOptions& site, int rounds,
                   std::FILE* out) {
  // A copy of the topology that cannot meet the user's lab: its own name, subnet and
  // state directory, and a free edge port.
  topo::Topology copy = t;
  copy.name = "wsbench";
  const std::string net = "10.199.251.";
  copy.subnet = net + "0/24";
  for (std::size_t i = 0; i < copy.hosts.size(); ++i) {
    copy.hosts[i].address = net + std::to_string(10 + i);
  }
  for (std::size_t i = 0; i < copy.virtual_addresses.size(); ++i) {
    copy.virtual_addresses[i] = net + std::to_string(5 + i);
  }
  // Free edge ports beside the real lab's: the site's, Prometheus's and Alertmanager's.
  std::uint16_t port = 18443;
  const auto next_free = [&port] {
    while (!port_free(port)) ++port;
    return port++;
  };
  copy.edge_port = next_free();
  copy.prometheus_port = next_free();
  copy.alertmanager_port = next_free();
  lab::SiteOptions o = site;
  o.state_dir = "/var/lib/webstack/wsbench-lab";
  o.peers.clear();
  std::vector<double> cold, warm, down, purge;
  const auto timed = [](auto&& f) {
    const auto t0 = Clock::now();
    f();
    return std::chrono::duration<double>(Clock::now() - t0).count();
  };
  // up prints its steps on stdout: silenced while timed, the figures go to `out`.
  std::fflush(stdout);
  const int saved = ::dup(1);
  const int null = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  const auto quiet = [&](bool on) {
    std::fflush(stdout);
    ::dup2(on ? null : saved, 1);
  };
  for (int i = 0; i < rounds; ++i) {
    quiet(true);
    try {
      lab::site_down(copy, o, true);
      cold.push_back(timed([&] { lab::site_up(copy, o); }));
      down.push_back(timed([&] { lab::site_down(copy, o, false); }));
      warm.push_back(timed([&] { lab::site_up(copy, o); }));
      purge.push_back(timed([&] { lab::site_down(copy, o, true); }));
    } catch (...) {
      quiet(false);
      ::close(null);
      ::close(saved);
      throw;
    }
    quiet(false);
    std::fprintf(out,
                 "  round %d: cold up %.2f s, down %.2f s, warm up %.2f s, down --purge %.2f s\n",
                 i + 1, cold.back(), down.back(), warm.back(), purge.back());
    std::fflush(out);
  }
  ::close(null);
  ::close(saved);
  std::fprintf(out,
               "\nlab (%zu hosts), median of %d: cold up %.2f s, warm up %.2f s, down %.2f s, "
               "down --purge %.2f s\n",
               t.hosts.size(), rounds, median(cold), median(warm), median(down), median(purge));
}

}  // namespace webstack::bench
