#include "dashboard/load.hpp"

#include <fmt/format.h>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <random>
#include <stdexcept>

namespace webstack::dashboard {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kKeep = 500;  // records kept for the request stream
constexpr auto kTimeout = std::chrono::seconds(3);

// One keep-alive connection to the site, plain or TLS; every operation bounded by
// kTimeout (tcp_stream's timer cancels it). Runs on the load thread's own io_context.
class Connection {
 public:
  explicit Connection(const LoadTarget& t) : t_(t), ssl_(asio::ssl::context::tls_client) {
    if (t_.tls) {
      ssl_.set_verify_mode(asio::ssl::verify_peer);
      ssl_.load_verify_file(t_.ca_file);
    }
  }

  // Sends one request and reads its answer; throws beast::system_error on failure (the
  // connection is then dropped, and the next request opens a new one).
  bhttp::response<bhttp::string_body> exchange(bhttp::request<bhttp::string_body>& req) {
    try {
      if (!open_) connect();
      bhttp::response<bhttp::string_body> res;
      beast::flat_buffer buffer;
      if (t_.tls) {
        run(*tls_, [&](auto& s, auto done) { bhttp::async_write(s, req, done); });
        run(*tls_, [&](auto& s, auto done) { bhttp::async_read(s, buffer, res, done); });
      } else {
        run(*plain_, [&](auto& s, auto done) { bhttp::async_write(s, req, done); });
        run(*plain_, [&](auto& s, auto done) { bhttp::async_read(s, buffer, res, done); });
      }
      if (!res.keep_alive()) close();
      return res;
    } catch (...) {
      close();
      throw;
    }
  }

  void close() {
    open_ = false;
    tls_.reset();
    plain_.reset();
  }

 private:
  // Starts one async operation and runs the io_context until it completes (or its
  // deadline cancels it); rethrows its error.
  template <class Stream, class Start>
  void run(Stream& s, Start start) {
    beast::get_lowest_layer(s).expires_after(kTimeout);
    beast::error_code result;
    start(s, [&result](beast::error_code ec, auto&&...) { result = ec; });
    io_.restart();
    io_.run();
    if (result) throw beast::system_error(result);
  }

  void connect() {
    const tcp::endpoint ep(asio::ip::make_address(t_.address), t_.port);
    if (t_.tls) {
      tls_.emplace(io_, ssl_);
      if (!SSL_set_tlsext_host_name(tls_->native_handle(), t_.site_name.c_str())) {
        throw std::runtime_error("TLS: cannot set the server name");
      }
      tls_->set_verify_callback(asio::ssl::host_name_verification(t_.site_name));
      run(*tls_, [&](auto& s, auto done) { beast::get_lowest_layer(s).async_connect(ep, done); });
      run(*tls_,
          [&](auto& s, auto done) { s.async_handshake(asio::ssl::stream_base::client, done); });
    } else {
      plain_.emplace(io_);
      run(*plain_, [&](auto& s, auto done) { s.async_connect(ep, done); });
    }
    open_ = true;
  }

  const LoadTarget& t_;
  asio::io_context io_;
  asio::ssl::context ssl_;
  std::optional<beast::ssl_stream<beast::tcp_stream>> tls_;
  std::optional<beast::tcp_stream> plain_;
  bool open_ = false;
};

// What a visitor does: reads, and now and then a guestbook entry.
struct Step {
  bhttp::verb verb;
  const char* path;
};
constexpr Step kSteps[] = {{bhttp::verb::get, "/db"},
                           {bhttp::verb::get, "/db"},
                           {bhttp::verb::get, "/api/messages"},
                           {bhttp::verb::get, "/db"},
                           {bhttp::verb::post, "/api/messages"}};

}  // namespace

std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

LoadGenerator::LoadGenerator(LoadTarget target) : target_(std::move(target)) {}

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
    r.method = std::string(bhttp::to_string(step.verb));
    r.path = step.path;
    bhttp::request<bhttp::string_body> req{step.verb, step.path, 11};
    req.set(bhttp::field::host, target_.site_name);
    req.set(bhttp::field::user_agent, "webstack-dashboard");
    req.keep_alive(true);
    if (step.verb == bhttp::verb::post) {
      req.set(bhttp::field::content_type, "application/json");
      req.set("Idempotency-Key", fmt::format("\"dashboard-{}-{}\"", run, i));
      req.body() = fmt::format(R"({{"author":"dashboard","text":"request {}"}})", i);
      req.prepare_payload();
    }
    const auto t0 = Clock::now();
    try {
      if (!conn) conn.emplace(target_);
      const auto res = conn->exchange(req);
      r.status = static_cast<int>(res.result_int());
      r.served_by = std::string(res["X-Served-By"]);
      r.db_node = std::string(res["X-DB-Node"]);
      const int want = step.verb == bhttp::verb::post ? 201 : 200;
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
