#include "http_client.hpp"
#include "common/text.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <mutex>

#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

namespace webstack::it {
namespace {

using Clock = std::chrono::steady_clock;

char lower(char c) {
  return static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(),
                                            [](char x, char y) { return lower(x) == lower(y); });
}

// True if the comma-separated header value contains `token` (case-insensitive).
bool has_token(std::string_view value, std::string_view token) {
  while (!value.empty()) {
    const auto comma = value.find(',');
    if (iequals(webstack::text::trim(value.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return false;
}

bool has_field(const HeaderList& headers, std::string_view name) {
  return std::any_of(headers.begin(), headers.end(),
                     [&](const auto& h) { return iequals(h.first, name); });
}

int remaining_ms(Clock::time_point deadline) {
  const auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::max<long long>(left, 0));
}

}  // namespace

bool CaseInsensitiveLess::operator()(std::string_view a, std::string_view b) const {
  return std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end(),
                                      [](char x, char y) { return lower(x) < lower(y); });
}

std::string HttpResponse::header(std::string_view name) const {
  const auto it = headers.find(name);
  return it == headers.end() ? std::string() : it->second;
}

HttpClient::HttpClient(std::uint16_t port, std::chrono::milliseconds timeout, std::string host)
    : port_(port), timeout_(timeout), host_(std::move(host)) {}

HttpClient::~HttpClient() {
  close();
  if (ssl_ctx_ != nullptr) SSL_CTX_free(ssl_ctx_);
}

namespace {
std::string openssl_errors() {
  std::string out;
  for (unsigned long e = ERR_get_error(); e != 0; e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    out += (out.empty() ? "" : "; ") + std::string(buf);
  }
  return out.empty() ? "no OpenSSL error" : out;
}
}  // namespace

void HttpClient::use_tls(TlsOptions tls) {
  // SSL_write() writes with write(2): a server that closed the connection (a killed
  // HAProxy) would raise SIGPIPE and end the whole test binary. With it ignored the write
  // fails with EPIPE, which the caller sees as an error. (Plain sockets use MSG_NOSIGNAL.)
  static std::once_flag sigpipe_ignored;
  std::call_once(sigpipe_ignored, [] { ::signal(SIGPIPE, SIG_IGN); });
  close();
  if (ssl_ctx_ != nullptr) SSL_CTX_free(ssl_ctx_);
  ssl_ctx_ = SSL_CTX_new(TLS_client_method());
  if (ssl_ctx_ == nullptr) throw HttpError("SSL_CTX_new: " + openssl_errors());
  SSL_CTX_set_min_proto_version(ssl_ctx_, TLS1_2_VERSION);
  SSL_CTX_set_verify(ssl_ctx_, SSL_VERIFY_PEER, nullptr);
  if (SSL_CTX_load_verify_locations(ssl_ctx_, tls.ca_file.c_str(), nullptr) != 1) {
    throw HttpError("cannot load CA " + tls.ca_file + ": " + openssl_errors());
  }
  tls_ = std::move(tls);
}

bool HttpClient::wait_io(bool want_read, Clock::time_point deadline) const {
  pollfd p{fd_, static_cast<short>(want_read ? POLLIN : POLLOUT), 0};
  return ::poll(&p, 1, remaining_ms(deadline)) != 0;
}

void HttpClient::tls_handshake() {
  ssl_ = SSL_new(ssl_ctx_);
  if (ssl_ == nullptr) throw HttpError("SSL_new: " + openssl_errors());
  SSL_set_fd(ssl_, fd_);
  SSL_set_tlsext_host_name(ssl_, tls_->server_name.c_str());
  SSL_set1_host(ssl_, tls_->server_name.c_str());  // the certificate must name it
  const auto deadline = Clock::now() + timeout_;
  for (;;) {
    ERR_clear_error();
    const int r = SSL_connect(ssl_);
    if (r == 1) return;
    const int err = SSL_get_error(ssl_, r);
    if ((err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) &&
        wait_io(err == SSL_ERROR_WANT_READ, deadline)) {
      continue;
    }
    const long verify = SSL_get_verify_result(ssl_);
    const std::string why = err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE
                                ? "timed out"
                                : fmt::format("{} (verify: {})", openssl_errors(),
                                              X509_verify_cert_error_string(verify));
    close();
    throw HttpError(fmt::format("TLS handshake with {}:{}: {}", host_, port_, why));
  }
}

void HttpClient::connect() {
  close();
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd_ < 0) throw HttpError(fmt::format("socket: {}", std::strerror(errno)));
  const int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port_);
  if (::inet_pton(AF_INET, host_.c_str(), &addr.sin_addr) != 1) {
    close();
    throw HttpError("not an IPv4 address: " + host_);
  }
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    if (errno != EINPROGRESS) {
      const int e = errno;
      close();
      throw HttpError(fmt::format("connect {}:{}: {}", host_, port_, std::strerror(e)));
    }
    pollfd p{fd_, POLLOUT, 0};
    const int r = ::poll(&p, 1, static_cast<int>(timeout_.count()));
    int err = 0;
    socklen_t len = sizeof err;
    if (r == 0) {
      close();
      throw HttpTimeout(fmt::format("connect {}:{}: timed out", host_, port_));
    }
    ::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
    if (r < 0 || err != 0) {
      close();
      throw HttpError(fmt::format("connect {}:{}: {}", host_, port_, std::strerror(err)));
    }
  }
  buffer_.clear();
  if (tls_) tls_handshake();
}

void HttpClient::close() {
  if (ssl_ != nullptr) SSL_free(ssl_);
  ssl_ = nullptr;
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  buffer_.clear();
}

void HttpClient::send_raw(std::string_view bytes) {
  if (!connected()) connect();
  const auto deadline = Clock::now() + timeout_;
  while (ssl_ != nullptr && !bytes.empty()) {
    ERR_clear_error();
    const int n = SSL_write(ssl_, bytes.data(), static_cast<int>(bytes.size()));
    if (n > 0) {
      bytes.remove_prefix(static_cast<std::size_t>(n));
      continue;
    }
    const int err = SSL_get_error(ssl_, n);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
      if (!wait_io(err == SSL_ERROR_WANT_READ, deadline)) throw HttpTimeout("send: timed out");
      continue;
    }
    throw HttpConnectionClosed("TLS send: " + openssl_errors());
  }
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n > 0) {
      bytes.remove_prefix(static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd p{fd_, POLLOUT, 0};
      if (::poll(&p, 1, remaining_ms(deadline)) == 0) throw HttpTimeout("send: timed out");
      continue;
    }
    if (errno == EPIPE || errno == ECONNRESET) {
      throw HttpConnectionClosed(fmt::format("send: {}", std::strerror(errno)));
    }
    throw HttpError(fmt::format("send: {}", std::strerror(errno)));
  }
}

bool HttpClient::fill(std::chrono::milliseconds timeout) {
  if (!connected()) throw HttpConnectionClosed("not connected");
  const auto deadline = Clock::now() + timeout;
  char buf[16384];
  while (ssl_ != nullptr) {
    ERR_clear_error();
    const int n = SSL_read(ssl_, buf, sizeof buf);
    if (n > 0) {
      buffer_.append(buf, static_cast<std::size_t>(n));
      return true;
    }
    const int err = SSL_get_error(ssl_, n);
    if (err == SSL_ERROR_ZERO_RETURN || err == SSL_ERROR_SYSCALL) return false;  // closed
    if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
      throw HttpError("TLS recv: " + openssl_errors());
    }
    if (!wait_io(err == SSL_ERROR_WANT_READ, deadline)) {
      throw HttpTimeout(
          fmt::format("no data from {}:{} within {} ms", host_, port_, timeout.count()));
    }
  }
  for (;;) {
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n > 0) {
      buffer_.append(buf, static_cast<std::size_t>(n));
      return true;
    }
    if (n == 0) return false;
    if (errno == EINTR) continue;
    if (errno == ECONNRESET) return false;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      throw HttpError(fmt::format("recv: {}", std::strerror(errno)));
    }
    pollfd p{fd_, POLLIN, 0};
    const int r = ::poll(&p, 1, remaining_ms(deadline));
    if (r == 0) {
      throw HttpTimeout(
          fmt::format("no data from {}:{} within {} ms", host_, port_, timeout.count()));
    }
  }
}

std::string HttpClient::read_line() {
  for (;;) {
    const auto nl = buffer_.find('\n');
    if (nl != std::string::npos) {
      std::string line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      return line;
    }
    if (!fill(timeout_)) {
      throw HttpConnectionClosed("connection closed in the middle of a line" +
                                 (buffer_.empty() ? std::string() : ": " + buffer_));
    }
  }
}

std::string HttpClient::read_exact(std::size_t n) {
  while (buffer_.size() < n) {
    if (!fill(timeout_)) {
      throw HttpConnectionClosed(
          fmt::format("connection closed after {} of {} body bytes", buffer_.size(), n));
    }
  }
  std::string out = buffer_.substr(0, n);
  buffer_.erase(0, n);
  return out;
}

HttpResponse HttpClient::read_response(bool head_request) {
  HttpResponse r;
  std::string status_line;
  try {
    status_line = read_line();
  } catch (const HttpConnectionClosed& e) {
    throw HttpConnectionClosed(std::string("connection closed before a response: ") + e.what());
  }
  // "HTTP/1.1 200 OK"
  const auto sp1 = status_line.find(' ');
  if (status_line.rfind("HTTP/", 0) != 0 || sp1 == std::string::npos ||
      status_line.size() < sp1 + 4) {
    throw HttpProtocolError("bad status line: " + status_line);
  }
  r.version = status_line.substr(0, sp1);
  const std::string code = status_line.substr(sp1 + 1, 3);
  if (!std::all_of(code.begin(), code.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    throw HttpProtocolError("bad status code: " + status_line);
  }
  r.status = std::stoi(code);
  r.reason = status_line.size() > sp1 + 5 ? status_line.substr(sp1 + 5) : "";

  for (std::string line = read_line(); !line.empty(); line = read_line()) {
    const auto colon = line.find(':');
    if (colon == std::string::npos || colon == 0) {
      throw HttpProtocolError("bad header line: " + line);
    }
    std::string name = line.substr(0, colon);
    std::string value(webstack::text::trim(std::string_view(line).substr(colon + 1)));
    auto [it, inserted] = r.headers.emplace(name, value);
    if (!inserted) it->second += ", " + value;
    r.header_list.emplace_back(std::move(name), std::move(value));
  }

  if (head_request || r.status / 100 == 1 || r.status == 204 || r.status == 304) return r;
  if (has_token(r.header("transfer-encoding"), "chunked")) {
    r.chunked = true;
    for (;;) {
      const std::string size_line = read_line();
      std::size_t size = 0;
      try {
        size = std::stoul(size_line.substr(0, size_line.find(';')), nullptr, 16);
      } catch (const std::exception&) {
        throw HttpProtocolError("bad chunk size line: " + size_line);
      }
      if (size == 0) {
        while (!read_line().empty()) {
        }  // trailers
        break;
      }
      r.body += read_exact(size);
      if (!read_line().empty()) throw HttpProtocolError("chunk not followed by CRLF");
    }
  } else if (r.has_header("content-length")) {
    std::size_t length = 0;
    try {
      length = std::stoul(r.header("content-length"));
    } catch (const std::exception&) {
      throw HttpProtocolError("bad Content-Length: " + r.header("content-length"));
    }
    r.body = read_exact(length);
  } else {
    while (fill(timeout_)) {
    }
    r.body = std::move(buffer_);
    close();
  }
  return r;
}

HttpResponse HttpClient::request(std::string_view method, std::string_view target,
                                 const HeaderList& headers, std::string_view body) {
  std::string req = fmt::format("{} {} HTTP/1.1\r\n", method, target);
  if (!has_field(headers, "host")) req += fmt::format("Host: {}:{}\r\n", host_, port_);
  const bool body_method = method == "POST" || method == "PUT" || method == "PATCH";
  if ((!body.empty() || body_method) && !has_field(headers, "content-length") &&
      !has_field(headers, "transfer-encoding")) {
    req += fmt::format("Content-Length: {}\r\n", body.size());
  }
  for (const auto& [name, value] : headers) {
    req += name;
    req += ": ";
    req += value;
    req += "\r\n";
  }
  req += "\r\n";
  req += body;

  send_raw(req);
  HttpResponse r = read_response(method == "HEAD");
  const std::string connection = r.header("connection");
  if (has_token(connection, "close") ||
      (r.version == "HTTP/1.0" && !has_token(connection, "keep-alive"))) {
    close();
  }
  return r;
}

HttpResponse HttpClient::get(std::string_view target, const HeaderList& headers) {
  return request("GET", target, headers);
}

HttpResponse HttpClient::post(std::string_view target, std::string_view body,
                              std::string_view content_type, const HeaderList& headers) {
  HeaderList all = headers;
  if (!has_field(all, "content-type")) all.emplace_back("Content-Type", content_type);
  return request("POST", target, all, body);
}

std::string HttpClient::read_until_close(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  try {
    while (connected() && fill(std::chrono::milliseconds(remaining_ms(deadline)))) {
    }
    close();  // EOF
  } catch (const HttpTimeout&) {
  }
  return std::exchange(buffer_, std::string());
}

bool HttpClient::wait_closed(std::chrono::milliseconds timeout) {
  if (!connected()) return true;
  if (!buffer_.empty()) throw HttpProtocolError("unread bytes before close: " + buffer_);
  try {
    if (fill(timeout)) throw HttpProtocolError("bytes arrived instead of a close: " + buffer_);
  } catch (const HttpTimeout&) {
    return false;
  }
  close();
  return true;
}

}  // namespace webstack::it
