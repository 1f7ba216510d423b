// Checks the test HttpClient itself against a scripted in-process server.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include "http_client.hpp"

namespace webstack::it {
namespace {

// Accepts one connection; for each entry of `replies`, reads one request head (up to the
// blank line) and writes the reply. Closes the connection afterwards unless `linger`.
class ScriptedServer {
 public:
  explicit ScriptedServer(std::vector<std::string> replies, bool linger = false)
      : replies_(std::move(replies)), linger_(linger) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    EXPECT_EQ(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_EQ(::listen(listen_fd_, 4), 0);
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~ScriptedServer() {
    ::shutdown(listen_fd_, SHUT_RDWR);
    thread_.join();
    ::close(listen_fd_);
  }
  std::uint16_t port() const { return port_; }
  const std::vector<std::string>& requests() const { return requests_; }  // after join

 private:
  void serve() {
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) return;
    std::string in;
    char buf[4096];
    for (const auto& reply : replies_) {
      std::size_t end;
      while ((end = in.find("\r\n\r\n")) == std::string::npos) {
        const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) {
          ::close(fd);
          return;
        }
        in.append(buf, static_cast<std::size_t>(n));
      }
      requests_.push_back(in.substr(0, end + 4));
      in.erase(0, end + 4);
      ::send(fd, reply.data(), reply.size(), MSG_NOSIGNAL);
    }
    if (linger_) {
      while (::recv(fd, buf, sizeof buf, 0) > 0) {
      }
    }
    ::close(fd);
  }

  std::vector<std::string> replies_;
  bool linger_;
  int listen_fd_ = -1;
  std::uint16_t port_ = 0;
  std::thread thread_;
  std::vector<std::string> requests_;
};

TEST(HttpClientTest, KeepAliveContentLengthAndCaseInsensitiveHeaders) {
  std::vector<std::string> requests;
  {
    ScriptedServer server(
        {"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n"
         "X-A: 1\r\nx-a: 2\r\n\r\nHello, World!",
         "HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}"});
    HttpClient c(server.port(), 2s);
    const auto r = c.get("/plaintext", {{"Accept", "*/*"}});
    EXPECT_EQ(r.version, "HTTP/1.1");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.reason, "OK");
    EXPECT_EQ(r.body, "Hello, World!");
    EXPECT_EQ(r.header("CONTENT-TYPE"), "text/plain");
    EXPECT_EQ(r.header("x-A"), "1, 2");
    EXPECT_EQ(r.header_list.size(), 4u);
    EXPECT_FALSE(r.has_header("date"));
    EXPECT_TRUE(c.connected());
    const auto p = c.post("/messages", R"({"a":1})");
    EXPECT_EQ(p.status, 201);
    EXPECT_EQ(p.body, "{}");
    c.close();
    requests = server.requests();
  }
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].rfind("GET /plaintext HTTP/1.1\r\n", 0), 0u) << requests[0];
  EXPECT_NE(requests[0].find("\r\nAccept: */*\r\n"), std::string::npos);
  EXPECT_NE(requests[1].find("\r\nContent-Length: 7\r\n"), std::string::npos) << requests[1];
  EXPECT_NE(requests[1].find("\r\nContent-Type: application/json\r\n"), std::string::npos);
}

TEST(HttpClientTest, ChunkedAndPipelinedResponses) {
  ScriptedServer server({"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                         "5\r\nHello\r\n8;ext=1\r\n, World!\r\n0\r\n\r\n"
                         "HTTP/1.1 204 No Content\r\n\r\n"},
                        /*linger=*/true);
  HttpClient c(server.port(), 2s);
  c.send_raw("GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n");
  const auto a = c.read_response();
  EXPECT_TRUE(a.chunked);
  EXPECT_EQ(a.body, "Hello, World!");
  const auto b = c.read_response();
  EXPECT_EQ(b.status, 204);
  EXPECT_EQ(b.body, "");
  c.close();
}

TEST(HttpClientTest, ConnectionCloseIsHonouredAndDetected) {
  ScriptedServer server(
      {"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"});
  HttpClient c(server.port(), 2s);
  c.send_raw("BAD\r\n\r\n");
  EXPECT_EQ(c.read_response().status, 400);
  EXPECT_TRUE(c.wait_closed(2s));
  EXPECT_FALSE(c.connected());
}

TEST(HttpClientTest, ReadTimesOutWhenTheServerIsSilent) {
  ScriptedServer server({}, /*linger=*/true);
  HttpClient c(server.port(), 200ms);
  c.send_raw("GET / HTTP/1.1\r\n\r\n");
  EXPECT_THROW(c.read_response(), HttpTimeout);
  EXPECT_FALSE(c.wait_closed(100ms));
  c.close();
}

TEST(HttpClientTest, ClosedBeforeResponseAndRefusedConnection) {
  {
    ScriptedServer server({});  // accepts, closes
    HttpClient c(server.port(), 2s);
    EXPECT_THROW(c.get("/"), HttpConnectionClosed);
  }
  // A port nobody listens on: bind without listen.
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  HttpClient c(ntohs(addr.sin_port), 1s);
  EXPECT_THROW(c.connect(), HttpError);
  ::close(fd);
}

}  // namespace
}  // namespace webstack::it
