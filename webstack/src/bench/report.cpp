// The medians, the table and the report of `webstack bench` (see bench/bench_internal.hpp):
// report.md, results.csv and chart.png (gnuplot) in the report directory.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "bench/bench_internal.hpp"
#include "common/process.hpp"
#include "common/text.hpp"

namespace webstack::bench {

namespace {

using namespace std::chrono_literals;
using detail::now_utc;
using detail::RunSetup;
using detail::Sample;

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

// Keyed against unkeyed writes, per app, from the same run (the target: p99
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
void write_report(const RunSetup& run, const Options& o, const std::string& table,
                  const std::string& keyed_lines) {
  std::ofstream md(run.dir + "/report.md");
  md << "# webstack bench, " << now_utc("%Y-%m-%d %H:%M UTC") << "\n\n"
     << "Machine: " << machine_description() << ".\n\n"
     << "Software: " << versions(run.app_binary) << ".\n\n"
     << fmt::format(
            "Each run: `wrk -t{} -c{} -d{}s --latency -H 'Host: <server>.bench' "
            "{}<path>` from the client host through the load balancer ({}), {} "
            "interleaved rounds after a 2 s warm-up per run; sysbench "
            "`oltp_point_select --threads={}` against the replica from a web host. "
            "Medians, with min-max over the rounds.\n\n",
            o.threads, o.connections, o.duration.count(), run.base, run.tls ? "HTTPS" : "HTTP",
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

void detail::report(const Options& o, const RunSetup& run, const std::vector<Sample>& samples,
                    std::FILE* out) {
  // 4. Medians and ratios.
  const Summary sum = summarize(o, run.with_db_ceiling, samples);
  const std::string table = table_of(sum);
  const std::string keyed_lines = keyed_against_plain(o, sum.rows);
  std::fprintf(out, "\n%s%s%s", table.c_str(), keyed_lines.empty() ? "" : "\n",
               keyed_lines.c_str());

  // 5. The report: Markdown, CSV, chart.
  write_csv(run.dir, samples);
  write_chart(run.dir, o, sum, out);
  write_report(run, o, table, keyed_lines);
  std::fprintf(out, "\nreport: %s/report.md (chart.png, results.csv)\n", run.dir.c_str());
}

}  // namespace webstack::bench
