#include "dashboard/load.hpp"

#include <curl/curl.h>
#include <fmt/format.h>

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>

namespace webstack::dashboard {

namespace {

using Clock = std::chrono::steady_clock;

constexpr std::size_t kKeep = 500;  // records kept for the request stream
constexpr long kTimeoutMs = 3000;   // a whole request, connection and TLS included

// libcurl's global state, once per process, before any handle (it is not thread-safe).
void curl_init_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
      throw std::runtime_error("libcurl: global initialisation failed");
    }
  });
}

// One request's answer: its status and the headers the dashboard shows.
struct Answer {
  int status = 0;
  std::string served_by, db_node;
};

// One keep-alive connection to the site, plain or TLS (verified against the lab CA, the
// site's name checked), reused from one request to the next; libcurl opens a new one
// when the site closed it. Its sockets are made on the calling thread, in its network
// namespace. HTTP/1.1, as a browser behind a balancer without HTTP/2 would speak.
class Connection {
 public:
  explicit Connection(const LoadTarget& t) : t_(t), curl_(curl_easy_init(), curl_easy_cleanup) {
    if (!curl_) throw std::runtime_error("libcurl: cannot make a handle");
    // The site's name resolves to the target address: no DNS, the Host header and the
    // TLS name are the site's.
    resolve_.reset(curl_slist_append(
        nullptr, fmt::format("{}:{}:{}", t_.site_name, t_.port, t_.address).c_str()));
    set(CURLOPT_RESOLVE, resolve_.get());
    set(CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_1_1));
    set(CURLOPT_TIMEOUT_MS, kTimeoutMs);
    set(CURLOPT_NOSIGNAL, 1L);  // no SIGALRM for timeouts: this is one thread of many
    set(CURLOPT_USERAGENT, "webstack-dashboard");
    set(CURLOPT_ERRORBUFFER, error_);
    set(CURLOPT_WRITEFUNCTION, &Connection::discard);
    set(CURLOPT_HEADERFUNCTION, &Connection::header);
    set(CURLOPT_HEADERDATA, static_cast<void*>(this));
    // Straight to the site: no proxy from the environment (https_proxy...), which the
    // client host could not reach; and the lab CA only, not the system's CAs too.
    set(CURLOPT_PROXY, "");
    if (t_.tls) {
      set(CURLOPT_CAINFO, t_.ca_file.c_str());
      set(CURLOPT_CAPATH, static_cast<const char*>(nullptr));
    }
  }
  // libcurl holds this object's address (header callback data, error buffer).
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Sends one request (a POST when body is given) and reads its answer; throws
  // std::runtime_error with libcurl's reason when no answer came.
  Answer exchange(const std::string& path, const std::string* body,
                  const std::vector<std::string>& headers) {
    answer_ = Answer{};
    error_[0] = '\0';
    const std::string url =
        fmt::format("{}://{}:{}{}", t_.tls ? "https" : "http", t_.site_name, t_.port, path);
    std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> list(nullptr, curl_slist_free_all);
    for (const auto& h : headers) {
      curl_slist* grown = curl_slist_append(list.get(), h.c_str());
      if (!grown) throw std::runtime_error("libcurl: out of memory");
      (void)list.release();  // grown is that list (or its first node), one header longer
      list.reset(grown);
    }
    set(CURLOPT_URL, url.c_str());
    set(CURLOPT_HTTPHEADER, list.get());
    if (body) {
      set(CURLOPT_POSTFIELDS, body->c_str());
      set(CURLOPT_POSTFIELDSIZE, static_cast<long>(body->size()));
    } else {
      set(CURLOPT_HTTPGET, 1L);
    }
    const CURLcode rc = curl_easy_perform(curl_.get());
    set(CURLOPT_HTTPHEADER, static_cast<curl_slist*>(nullptr));
    if (rc != CURLE_OK) {
      throw std::runtime_error(error_[0] != '\0' ? error_ : curl_easy_strerror(rc));
    }
    long status = 0;
    curl_easy_getinfo(curl_.get(), CURLINFO_RESPONSE_CODE, &status);
    answer_.status = static_cast<int>(status);
    return answer_;
  }

 private:
  template <class V>
  void set(CURLoption option, V value) {
    if (curl_easy_setopt(curl_.get(), option, value) != CURLE_OK) {
      throw std::runtime_error(fmt::format("libcurl: option {} refused", static_cast<int>(option)));
    }
  }

  static std::size_t discard(char*, std::size_t size, std::size_t n, void*) { return size * n; }

  // One header line at a time ("Name: value\r\n"); the status line and the blank line
  // at the end come here too.
  static std::size_t header(char* data, std::size_t size, std::size_t n, void* self) {
    auto* conn = static_cast<Connection*>(self);
    const std::string_view line(data, size * n);
    const auto colon = line.find(':');
    if (colon != std::string_view::npos) {
      std::string name(line.substr(0, colon));
      std::transform(name.begin(), name.end(), name.begin(),
                     [](unsigned char ch) { return std::tolower(ch); });
      std::string_view value = line.substr(colon + 1);
      while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) {
        value.remove_prefix(1);
      }
      while (!value.empty() &&
             (value.back() == '\r' || value.back() == '\n' || value.back() == ' ')) {
        value.remove_suffix(1);
      }
      if (name == "x-served-by") conn->answer_.served_by = value;
      if (name == "x-db-node") conn->answer_.db_node = value;
    }
    return size * n;
  }

  const LoadTarget& t_;
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl_;
  std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> resolve_{nullptr,
                                                                       curl_slist_free_all};
  char error_[CURL_ERROR_SIZE] = {};
  Answer answer_;
};

// What a visitor does: reads, and now and then a guestbook entry.
struct Step {
  const char* method;
  const char* path;
};
constexpr Step kSteps[] = {{"GET", "/db"},
                           {"GET", "/db"},
                           {"GET", "/api/messages"},
                           {"GET", "/db"},
                           {"POST", "/api/messages"}};

}  // namespace

std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

LoadGenerator::LoadGenerator(LoadTarget target) : target_(std::move(target)) {
  curl_init_once();
}

LoadGenerator::~LoadGenerator() {
  stop();
}

void LoadGenerator::start(int rate) {
  if (rate < 1 || rate > kMaxRate) {
    throw std::invalid_argument(
        fmt::format("rate {}: requests per second must be 1 to {}", rate, kMaxRate));
  }
  stop();
  {
    std::lock_guard lock(m_);
    stats_ = LoadStats{};
    stats_.running = true;
    stats_.rate = rate;
  }
  {
    std::lock_guard lock(m_);
    stop_ = false;
  }
  thread_ = std::thread([this, rate] { run(rate); });
}

void LoadGenerator::stop() {
  {
    std::lock_guard lock(m_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  std::lock_guard lock(m_);
  stats_.running = false;
}

LoadStats LoadGenerator::stats() const {
  std::lock_guard lock(m_);
  return stats_;
}

std::vector<RequestRecord> LoadGenerator::after(std::uint64_t after, std::size_t max,
                                                std::uint64_t* next) const {
  std::lock_guard lock(m_);
  // The newest `max` after `after`: a page that polls slower than the rate skips the
  // older ones rather than falling further behind.
  std::vector<RequestRecord> out;
  for (auto it = records_.rbegin(); it != records_.rend() && it->seq > after && out.size() < max;
       ++it) {
    out.push_back(*it);
  }
  std::reverse(out.begin(), out.end());
  // Nothing newer: the newest there is (a page that knew a restarted dashboard's seqs
  // starts over from here).
  *next = out.empty() ? next_seq_ - 1 : out.back().seq;
  return out;
}

void LoadGenerator::record(RequestRecord r) {
  std::lock_guard lock(m_);
  r.seq = next_seq_++;
  ++stats_.sent;
  if (r.error.empty()) {
    ++stats_.ok;
  } else {
    ++stats_.failed;
  }
  if (!r.served_by.empty()) ++stats_.by_host[r.served_by];
  records_.push_back(std::move(r));
  while (records_.size() > kKeep) records_.pop_front();
}

void LoadGenerator::run(int rate) {
  // This thread only: into the client host's network namespace.
  const std::string ns_path = "/run/netns/" + target_.netns;
  const int fd = ::open(ns_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) {
    RequestRecord r;
    r.time_ms = wall_ms();
    r.error = fmt::format("cannot join {}: {}", ns_path, std::strerror(errno));
    if (fd >= 0) ::close(fd);
    record(std::move(r));
    std::lock_guard lock(m_);
    stats_.running = false;
    return;
  }
  ::close(fd);

  std::optional<Connection> conn;
  const auto period = std::chrono::microseconds(1'000'000 / rate);
  const auto end = Clock::now() + kMaxDuration;
  auto next = Clock::now();
  // Each post names itself (Idempotency-Key): the site may then retry it anywhere on the
  // way without storing it twice.
  const std::string run =
      fmt::format("{:08x}{:08x}", std::random_device{}(), std::random_device{}());
  for (std::uint64_t i = 0; !stop_ && Clock::now() < end; ++i) {
    next += period;
    {
      // The rate asked for; stop() wakes it.
      std::unique_lock lock(m_);
      if (wake_.wait_until(lock, next, [this] { return stop_.load(); })) break;
    }
    if (Clock::now() > next + std::chrono::seconds(1))
      next = Clock::now();  // no burst after a stall
    const Step& step = kSteps[i % std::size(kSteps)];
    RequestRecord r;
    r.time_ms = wall_ms();
    r.method = step.method;
    r.path = step.path;
    const bool post = r.method == "POST";
    std::vector<std::string> headers;
    std::string body;
    if (post) {
      headers = {"Content-Type: application/json",
                 fmt::format("Idempotency-Key: \"dashboard-{}-{}\"", run, i)};
      body = fmt::format(R"({{"author":"dashboard","text":"request {}"}})", i);
    }
    const auto t0 = Clock::now();
    try {
      if (!conn) conn.emplace(target_);
      const Answer res = conn->exchange(step.path, post ? &body : nullptr, headers);
      r.status = res.status;
      r.served_by = res.served_by;
      r.db_node = res.db_node;
      const int want = post ? 201 : 200;
      if (r.status != want) r.error = fmt::format("status {}", r.status);
    } catch (const std::exception& e) {
      r.error = e.what();
    }
    r.ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    record(std::move(r));
  }
  std::lock_guard lock(m_);
  stats_.running = false;
}

}  // namespace webstack::dashboard
