// The dashboard's load generator: steady requests to the site as a visitor sends them,
// from the lab's client host (a thread that joins its network namespace: never from the
// root namespace), over HTTPS verified with the lab CA when the site has TLS. Reads
// (/db, the guestbook's JSON) and one guestbook POST in five, paced at a rate, bounded in
// rate and time. Each request is recorded as the client saw it: status, X-Served-By, the
// database node that answered (X-DB-Node), duration, error. The HTTP client is libcurl.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace webstack::dashboard {

// Milliseconds since the epoch (the page's time axis; records and events carry it).
std::int64_t wall_ms();

struct LoadTarget {
  std::string netns;    // "<lab>-client"
  std::string address;  // the site's (first) virtual address, else the first balancer's
  std::uint16_t port = 443;
  bool tls = true;
  std::string ca_file;    // the lab CA (tls)
  std::string site_name;  // Host header and TLS name
};

struct RequestRecord {
  std::uint64_t seq = 0;
  std::int64_t time_ms = 0;  // wall clock, when it was sent
  std::string method, path;
  int status = 0;  // 0: no answer
  std::string served_by, db_node;
  double ms = 0;
  std::string error;
};

struct LoadStats {
  bool running = false;
  int rate = 0;
  std::uint64_t sent = 0, ok = 0, failed = 0;
  std::map<std::string, std::uint64_t> by_host;  // X-Served-By counts
};

class LoadGenerator {
 public:
  static constexpr int kMaxRate = 200;  // requests per second
  static constexpr std::chrono::seconds kMaxDuration{std::chrono::minutes(10)};  // then it stops

  explicit LoadGenerator(LoadTarget target);
  ~LoadGenerator();
  LoadGenerator(const LoadGenerator&) = delete;
  LoadGenerator& operator=(const LoadGenerator&) = delete;

  // Starts (or restarts at the new rate); the counters start afresh, the records go on
  // (their sequence numbers keep growing). Throws
  // std::invalid_argument when rate is not 1..kMaxRate.
  void start(int rate);
  void stop();  // joins the thread; idempotent
  LoadStats stats() const;
  // Records with seq > after, oldest first, at most `max`; *next: the seq to ask after.
  std::vector<RequestRecord> after(std::uint64_t after, std::size_t max, std::uint64_t* next) const;

 private:
  void run(int rate);
  void record(RequestRecord r);

  const LoadTarget target_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  mutable std::mutex m_;
  std::condition_variable wake_;  // stop() ends the pacing wait
  LoadStats stats_;
  std::deque<RequestRecord> records_;  // the last kKeep
  std::uint64_t next_seq_ = 1;
};

}  // namespace webstack::dashboard
