// HttpClient: a tiny blocking HTTP/1.1 client over a POSIX socket, for the integration tests.
//
//   webstack::it::HttpClient c(app.port());           // connects lazily to 127.0.0.1:port
//   auto r = c.get("/json");
//   EXPECT_EQ(r.status, 200);
//   EXPECT_EQ(r.header("content-type"), "application/json");   // case-insensitive
//   auto p = c.post("/messages", R"({"author":"a","body":"b"})", "application/json");
//
//   // Same connection (keep-alive), pipelined and malformed input:
//   c.send_raw("GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\nGET /json HTTP/1.1\r\nHost: x\r\n\r\n");
//   auto first = c.read_response(), second = c.read_response();
//   c.send_raw("GARBAGE\r\n\r\n");
//   EXPECT_EQ(c.read_response().status, 400);
//   EXPECT_TRUE(c.wait_closed(2s));                   // the server closed the connection
//
// request()/get()/post() add Host (and Content-Length when there is a body) unless given,
// connect if not connected, and close the client side after a response that ends the
// connection ("Connection: close", or HTTP/1.0 without keep-alive), so the next call
// reconnects. send_raw()/read_response() do nothing implicit.
//
// Bodies are read by Content-Length, chunked transfer coding (decoded; trailers dropped), or
// until EOF when the response has neither; HEAD requests and 1xx/204/304 responses have no
// body. Every read waits at most timeout() for more bytes: HttpTimeout. The server closing
// the connection before a complete response: HttpConnectionClosed.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

struct ssl_ctx_st;
struct ssl_st;

namespace webstack::it {

using namespace std::chrono_literals;

struct CaseInsensitiveLess {
  using is_transparent = void;
  bool operator()(std::string_view a, std::string_view b) const;
};

using HeaderMap = std::map<std::string, std::string, CaseInsensitiveLess>;
using HeaderList = std::vector<std::pair<std::string, std::string>>;

struct HttpResponse {
  std::string version;  // "HTTP/1.1"
  int status = 0;
  std::string reason;
  HeaderMap headers;       // case-insensitive; repeated fields joined with ", "
  HeaderList header_list;  // every field in order received, names as sent
  std::string body;        // decoded (chunked coding removed)
  bool chunked = false;    // the body came chunked

  bool has_header(std::string_view name) const { return headers.find(name) != headers.end(); }
  // The field's value, "" if absent.
  std::string header(std::string_view name) const;
};

class HttpError : public std::runtime_error {
  using std::runtime_error::runtime_error;
};
class HttpTimeout : public HttpError {
  using HttpError::HttpError;
};
class HttpConnectionClosed : public HttpError {
  using HttpError::HttpError;
};
class HttpProtocolError : public HttpError {
  using HttpError::HttpError;
};

// HTTPS: the server's chain is verified against `ca_file` and its certificate must name
// `server_name` (also sent as SNI); TLS 1.2 or later, HTTP/1.1 inside.
struct TlsOptions {
  std::string ca_file;
  std::string server_name;
};

class HttpClient {
 public:
  explicit HttpClient(std::uint16_t port, std::chrono::milliseconds timeout = 10s,
                      std::string host = "127.0.0.1");
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Speak TLS on every connection from now on (call before the first request).
  void use_tls(TlsOptions tls);
  void connect();  // throws HttpError if the connection is refused or times out, or TLS fails
  void close();    // no-op when not connected
  bool connected() const { return fd_ >= 0; }
  std::uint16_t port() const { return port_; }
  void set_timeout(std::chrono::milliseconds t) { timeout_ = t; }
  std::chrono::milliseconds timeout() const { return timeout_; }

  HttpResponse request(std::string_view method, std::string_view target,
                       const HeaderList& headers = {}, std::string_view body = {});
  HttpResponse get(std::string_view target, const HeaderList& headers = {});
  HttpResponse post(std::string_view target, std::string_view body,
                    std::string_view content_type = "application/json",
                    const HeaderList& headers = {});

  // Sends bytes as they are (connects first if needed).
  void send_raw(std::string_view bytes);
  // Reads one response from the connection (after send_raw, or the next pipelined one).
  HttpResponse read_response(bool head_request = false);
  // Whatever arrives until the server closes the connection or `timeout` passes; for
  // responses that are not valid HTTP.
  std::string read_until_close(std::chrono::milliseconds timeout);
  // True if the server closes the connection (EOF or reset) within `timeout` without
  // sending anything more; false on timeout. Throws HttpProtocolError if bytes arrive.
  bool wait_closed(std::chrono::milliseconds timeout);

 private:
  // Appends received bytes to buffer_; false on EOF. Throws HttpTimeout / HttpError.
  bool fill(std::chrono::milliseconds timeout);
  std::string read_line();  // up to CRLF (or LF), without it
  std::string read_exact(std::size_t n);

  std::uint16_t port_;
  std::chrono::milliseconds timeout_;
  std::string host_;
  int fd_ = -1;
  std::string buffer_;  // received, not yet consumed
  std::optional<TlsOptions> tls_;
  ssl_ctx_st* ssl_ctx_ = nullptr;  // OpenSSL's SSL_CTX / SSL, kept out of this header
  ssl_st* ssl_ = nullptr;

  // Waits until the socket is readable (want_read) or writable; false on timeout.
  bool wait_io(bool want_read, std::chrono::steady_clock::time_point deadline) const;
  void tls_handshake();
};

}  // namespace webstack::it
