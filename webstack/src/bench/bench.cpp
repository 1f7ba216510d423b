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
#include <sstream>
#include <stdexcept>
#include <thread>

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

using detail::prepare_sysbench;
using detail::run_sysbench;

double to_ms(double value, const std::string& unit) {
  if (unit == "us") return value / 1000.0;
  if (unit == "s") return value * 1000.0;
  return value;  // ms
}

std::string now_utc(const char* format) {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, format, &tm);
  return buf;
}

struct Sample {
  std::string test, app;  // app "sysbench" for the database ceiling
  int round = 0;
  WrkResult r;
};

std::string machine_description() {
  std::string model;
  std::ifstream cpu("/proc/cpuinfo");
  for (std::string line; std::getline(cpu, line);) {
    if (line.starts_with("model name")) {
      model = text::trim(line.substr(line.find(':') + 1));
      break;
    }
  }
  const auto kernel = text::trim(run({"uname", "-r"}, 5s).out);
  long mem_kb = 0;
  std::ifstream mem("/proc/meminfo");
  for (std::string line; std::getline(mem, line);) {
    if (line.starts_with("MemTotal:")) mem_kb = std::stol(line.substr(9));
  }
  return fmt::format("{} x {}, {:.0f} GiB, Linux {}", std::thread::hardware_concurrency(), model,
                     static_cast<double>(mem_kb) / 1048576.0, kernel);
}

std::string versions(const std::string& app_binary) {
  const auto first = [](const std::vector<std::string>& argv) {
    const auto r = run(argv, 10s);
    const auto text = r.out.empty() ? r.err : r.out;
    return text::trim(text.substr(0, text.find('\n')));
  };
  return fmt::format("{}; {}; {}; {}; {}; {}; Node {}; {}", first({app_binary, "--version"}),
                     first({"haproxy", "-v"}), first({"nginx", "-v"}),
                     first({"mariadbd", "--version"}), first({"wrk", "--version"}),
                     first({"sysbench", "--version"}), first({"php-fpm8.2", "-v"}),
                     first({"node", "--version"}));
}

}  // namespace

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

// One line of the table: a test and a server, over the rounds.
struct Row {
  std::string test, app;
  double rps, lo, hi, p50, p99;
  long long errors;
};

// 4. Medians and ratios: the rows, and the median req/s of each (test, app).
struct Summary {
  std::vector<Row> rows;
  std::map<std::pair<std::string, std::string>, double> med;
};

Summary summarize(const Options& o, bool with_db_ceiling, const std::vector<Sample>& samples) {
  Summary sum;
  auto& rows = sum.rows;
  auto& med = sum.med;
  for (const auto& test : o.tests) {
    std::vector<std::string> apps = o.apps;
    if (o.ceilings && test == "plaintext") apps.push_back("nginx");
    if (with_db_ceiling && test == "db") apps.push_back("sysbench");
    for (const auto& app : apps) {
      std::vector<double> rps, p50, p99;
      long long errors = 0;
      for (const auto& s : samples) {
        if (s.test != test || s.app != app) continue;
        rps.push_back(s.r.requests_per_s);
        p50.push_back(s.r.p50_ms);
        p99.push_back(s.r.p99_ms);
        errors += s.r.non_2xx + s.r.socket_errors;
      }
      if (rps.empty()) continue;
      rows.push_back({test, app, median(rps), *std::min_element(rps.begin(), rps.end()),
                      *std::max_element(rps.begin(), rps.end()), median(p50), median(p99), errors});
      med[{test, app}] = rows.back().rps;
    }
  }
  return sum;
}

// The table (Markdown), each server's median against webstack-app's.
std::string table_of(const Summary& sum) {
  const auto& med = sum.med;
  const auto ratio = [&](const std::string& test, const std::string& other) -> std::string {
    const auto a = med.find({test, "webstack"}), b = med.find({test, other});
    if (a == med.end() || b == med.end() || b->second <= 0) return "";
    return fmt::format("{:.2f}", a->second / b->second);
  };

  std::ostringstream table;
  table << "| test | server | req/s (median) | min-max | p50 ms | p99 ms | errors | webstack-app / "
           "this |\n"
        << "|---|---|---:|---:|---:|---:|---:|---:|\n";
  for (const auto& r : sum.rows) {
    const std::string name = r.app == "webstack" ? "webstack-app"
                             : r.app == "php"    ? "PHP-FPM"
                             : r.app == "node"   ? "Node.js"
                             : r.app == "nginx"  ? "Nginx return 200 (ceiling)"
                                                 : "sysbench point-select, q/s (ceiling)";
    table << fmt::format("| {} | {} | {:.0f} | {:.0f}-{:.0f} | {:.2f} | {:.2f} | {} | {} |\n",
                         r.test, name, r.rps, r.lo, r.hi, r.p50, r.p99, r.errors,
                         r.app == "webstack" ? "" : ratio(r.test, r.app));
  }
  return table.str();
}

// Keyed against unkeyed writes, per app, from the same run (the issue's target: p99
// within 1.2x).
std::string keyed_against_plain(const Options& o, const std::vector<Row>& rows) {
  std::string keyed_lines;
  for (const auto& app : o.apps) {
    const Row* plain = nullptr;
    const Row* keyed = nullptr;
    for (const auto& r : rows) {
      if (r.app == app && r.test == "write") plain = &r;
      if (r.app == app && r.test == "write-keyed") keyed = &r;
    }
    if (plain == nullptr || keyed == nullptr || plain->p99 <= 0 || plain->rps <= 0) continue;
    keyed_lines += fmt::format(
        "Writes with an Idempotency-Key, {}: p99 {:.2f} ms against {:.2f} ms without, {:.2f}x "
        "(target at most 1.2x); {:.0f} against {:.0f} req/s, {:.2f}x.\n",
        app, keyed->p99, plain->p99, keyed->p99 / plain->p99, keyed->rps, plain->rps,
        keyed->rps / plain->rps);
  }
  return keyed_lines;
}

// results.csv: every sample.
void write_csv(const std::string& dir, const std::vector<Sample>& samples) {
  std::ofstream csv(dir + "/results.csv");
  csv << "test,app,round,requests_per_s,p50_ms,p99_ms,requests,non_2xx,socket_errors\n";
  for (const auto& s : samples) {
    csv << fmt::format("{},{},{},{:.1f},{:.3f},{:.3f},{},{},{}\n", s.test, s.app, s.round,
                       s.r.requests_per_s, s.r.p50_ms, s.r.p99_ms, s.r.requests, s.r.non_2xx,
                       s.r.socket_errors);
  }
  csv.close();
}

// chart.dat and chart.gp, and chart.png drawn from them by gnuplot (its failure said on
// `out`, the table is in report.md anyway).
void write_chart(const std::string& dir, const Options& o, const Summary& sum, std::FILE* out) {
  const auto& med = sum.med;
  // chart.dat: one line per test, the median of each app in column order.
  std::vector<std::string> columns = o.apps;
  {
    std::ofstream dat(dir + "/chart.dat");
    dat << "test";
    for (const auto& a : columns) dat << " " << a;
    dat << "\n";
    for (const auto& test : o.tests) {
      dat << test;
      for (const auto& a : columns) {
        const auto it = med.find({test, a});
        dat << " " << (it == med.end() ? 0.0 : it->second);
      }
      dat << "\n";
    }
  }
  {
    std::ofstream gp(dir + "/chart.gp");
    gp << "set terminal pngcairo size 1000,560 font 'sans,11'\n"
       << "set output '" << dir << "/chart.png'\n"
       << "set title 'Requests per second through the whole stack (median of " << o.rounds
       << " rounds; log scale)'\n"
       << "set style data histograms\nset style histogram clustered gap 1\n"
       << "set style fill solid 0.85 border -1\nset logscale y\nset grid ytics\n"
       << "set ylabel 'requests/s'\nset key top right\n"
       << "plot";
    for (std::size_t i = 0; i < columns.size(); ++i) {
      gp << (i == 0 ? " " : ", ") << "'" << dir << "/chart.dat' using " << i + 2
         << (i == 0 ? ":xtic(1)" : "") << " title columnheader(" << i + 2 << ")";
    }
    gp << "\n";
  }
  const auto plotted = run({"gnuplot", dir + "/chart.gp"}, 60s);
  if (plotted.exit_code != 0) {
    std::fprintf(out, "webstack: gnuplot failed (%s); the table is still in report.md\n",
                 text::trim(plotted.err).c_str());
  }
}

// report.md: the machine, the software, how each run was made, the table and the chart.
void write_report(const Bench& b, const lab::SiteOptions& site, const std::string& table,
                  const std::string& keyed_lines) {
  const Options& o = b.o;
  std::ofstream md(b.dir + "/report.md");
  md << "# webstack bench, " << now_utc("%Y-%m-%d %H:%M UTC") << "\n\n"
     << "Machine: " << machine_description() << ".\n\n"
     << "Software: " << versions(site.app_binary) << ".\n\n"
     << fmt::format(
            "Each run: `wrk -t{} -c{} -d{}s --latency -H 'Host: <server>.bench' "
            "{}<path>` from the client host through the load balancer ({}), {} "
            "interleaved rounds after a 2 s warm-up per run; sysbench "
            "`oltp_point_select --threads={}` against the replica from a web host. "
            "Medians, with min-max over the rounds.\n\n",
            o.threads, o.connections, o.duration.count(), b.base, b.tls ? "HTTPS" : "HTTP",
            o.rounds, o.connections)
     << "Paths: plaintext `/plaintext`, json `/json`, db `/db`, queries `/queries?queries=20`, "
        "fortunes `/fortunes`, updates `/updates?queries=20`, write and write-keyed `POST "
        "/api/messages` (write.lua: a JSON post with a text of its own; write-keyed adds an "
        "Idempotency-Key no post had before).\n\n"
     << table << (keyed_lines.empty() ? "" : "\n" + keyed_lines)
     << "\n![requests per second](chart.png)\n";
  md.close();
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

  // 4. Medians and ratios.
  const Summary sum = summarize(o, b.with_db_ceiling, samples);
  const std::string table = table_of(sum);
  const std::string keyed_lines = keyed_against_plain(o, sum.rows);
  std::fprintf(out, "\n%s%s%s", table.c_str(), keyed_lines.empty() ? "" : "\n",
               keyed_lines.c_str());

  // 5. The report: Markdown, CSV, chart.
  write_csv(b.dir, samples);
  write_chart(b.dir, o, sum, out);
  write_report(b, site, table, keyed_lines);
  std::fprintf(out, "\nreport: %s/report.md (chart.png, results.csv)\n", b.dir.c_str());
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
