// System test of the benchmark peers and `webstack bench`: a lab whose web-01 runs the PHP
// peer as its app (topology `app = "php"`) and every web host runs all three application
// servers as peers; each answers the TechEmpower tests alike through the whole stack, and
// a short `webstack bench` writes its report. Needs root; traffic from the client host.
#include <unistd.h>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "common/process.hpp"
#include "test_lab.hpp"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using webstack::test::read_file;
using webstack::test::TestLab;

TEST(BenchSystemTest, PeersServeTheSameTestsAndBenchWritesItsReport) {
  if (::geteuid() != 0) GTEST_FAIL() << "needs root";
  TestLab lab("wsb", "app = \"php\"\n");
  const auto up = lab.cli({"up", "--peers", "webstack,php,node"}, 180s);
  ASSERT_EQ(up.exit_code, 0) << up.out << up.err;

  // Each server by name, through lb-01 and TLS: same statuses and shapes.
  for (const std::string app : {"webstack", "php", "node"}) {
    const auto get = [&](const std::string& path) {
      return lab.client_curl({"-H", "Host: " + app + ".bench", "--resolve",
                              lab.address(10) + ":443:" + lab.address(10), "-k", "-w",
                              "\n%{http_code}", "https://" + lab.address(10) + path});
    };
    EXPECT_EQ(get("/plaintext"), "Hello, World!\n200") << app;
    EXPECT_EQ(get("/json"), "{\"message\":\"Hello, World!\"}\n200") << app;
    const auto db = get("/db");
    EXPECT_TRUE(db.starts_with("{\"id\":") && db.ends_with("}\n200")) << app << ": " << db;
    const auto queries = get("/queries?queries=3");
    EXPECT_EQ(std::count(queries.begin(), queries.end(), '{'), 3) << app << ": " << queries;
    const auto fortunes = get("/fortunes");
    EXPECT_NE(fortunes.find("Additional fortune added at request time."), std::string::npos) << app;
    EXPECT_TRUE(fortunes.ends_with("200")) << app;
    const auto updates = get("/updates?queries=2");
    EXPECT_EQ(std::count(updates.begin(), updates.end(), '{'), 2) << app << ": " << updates;
    EXPECT_TRUE(updates.ends_with("]\n200")) << app << ": " << updates;
  }

  // The site itself: web-01's app is the PHP peer (no guestbook API: 404), web-02's is
  // webstack-app (200), and the site is served by both. (Strict alternation is the round
  // robin test's: here a GET that got a 502 from a peer is retried on the other host.)
  std::multiset<std::string> answers;
  for (int i = 0; i < 6; ++i) {
    answers.insert(lab.client_curl({"-o", "/dev/null", "-w", "%{http_code} %header{x-served-by}",
                                    lab.site_url("/api/messages")}));
  }
  EXPECT_GE(answers.count("404 web-01"), 1u) << fmt::format("{}", fmt::join(answers, ", "));
  EXPECT_GE(answers.count("200 web-02"), 1u) << fmt::format("{}", fmt::join(answers, ", "));
  EXPECT_EQ(answers.count("404 web-01") + answers.count("200 web-02"), answers.size())
      << fmt::format("{}", fmt::join(answers, ", "));

  // A short benchmark: every app and the ceilings, one round, a report.
  const std::string out = lab.dir() + "/bench-report";
  const auto bench = lab.cli({"bench", "--duration", "1", "--rounds", "1", "--connections", "8",
                              "--test", "plaintext,db", "--out", out},
                             300s);
  ASSERT_EQ(bench.exit_code, 0) << bench.out << bench.err;
  const auto report = read_file(out + "/report.md");
  for (const char* row :
       {"| plaintext | webstack-app |", "| plaintext | PHP-FPM |", "| plaintext | Node.js |",
        "| plaintext | Nginx return 200 (ceiling) |", "| db | webstack-app |", "| db | PHP-FPM |",
        "| db | Node.js |", "| db | sysbench point-select, q/s (ceiling) |"}) {
    EXPECT_NE(report.find(row), std::string::npos) << row << " missing from:\n" << report;
  }
  std::istringstream csv(read_file(out + "/results.csv"));
  int lines = 0;
  for (std::string line; std::getline(csv, line);) ++lines;
  EXPECT_EQ(lines, 1 + 8);  // header, 4 plaintext runs, 3 db runs and sysbench
  EXPECT_GT(fs::file_size(out + "/chart.png"), 1000u);

  // The lab itself, on a throwaway copy: figures printed, nothing of the copy left.
  const auto lab_bench = lab.cli({"bench", "--lab", "--rounds", "1"}, 300s);
  ASSERT_EQ(lab_bench.exit_code, 0) << lab_bench.out << lab_bench.err;
  EXPECT_NE(lab_bench.out.find("median of 1: cold up "), std::string::npos) << lab_bench.out;
  EXPECT_FALSE(fs::exists("/var/lib/webstack/wsbench-lab"));
  const auto netns = ::webstack::run({"ip", "netns", "list"});
  EXPECT_EQ(netns.out.find("wsbench-"), std::string::npos) << netns.out;
}

}  // namespace
