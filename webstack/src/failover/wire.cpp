#include "failover/wire.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <vector>

namespace webstack::failover {

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

sockaddr_in ipv4(const std::string& address, int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  if (::inet_pton(AF_INET, address.c_str(), &a.sin_addr) != 1) {
    throw std::runtime_error("not an IPv4 address: " + address);
  }
  return a;
}

struct Client {
  int fd;
  Clock::time_point deadline;
  std::string request;
  std::string peer;
};

// The answer, then the connection closed.
void answer(const Client& cl, const StateServer::Handler& handler) {
  Reply r;
  std::string status = "200 OK";
  try {
    r = handler(cl.request, cl.peer);
  } catch (const std::exception& e) {
    status = "500 Internal Server Error";
    r = {"text/plain", std::string(e.what()) + "\n"};
  }
  const std::string reply = fmt::format(
      "HTTP/1.0 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n"
      "Connection: close\r\n\r\n{}",
      status, r.content_type, r.body.size(), r.body);
  // Best effort, never blocking: a client that does not read gets cut. Whatever it sent
  // unread is drained first: closing with unread bytes resets the connection, and the
  // reset can discard the reply.
  ::send(cl.fd, reply.data(), reply.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  ::shutdown(cl.fd, SHUT_WR);
  char sink[1024];
  for (int i = 0; i < 64 && ::recv(cl.fd, sink, sizeof sink, MSG_DONTWAIT) > 0; ++i) {
  }
  ::close(cl.fd);
}

}  // namespace

StateServer::StateServer(const std::string& address, int port) {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  const int one = 1;
  ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  const sockaddr_in a = ipv4(address, port);
  if (::bind(fd_, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0 ||
      ::listen(fd_, 128) != 0) {
    const std::string why = std::strerror(errno);
    ::close(fd_);
    throw std::runtime_error(fmt::format("cannot listen on {}:{}: {}", address, port, why));
  }
}

StateServer::~StateServer() {
  if (fd_ >= 0) ::close(fd_);
}

void StateServer::run(const Handler& handler, const std::atomic<int>& stop,
                      const std::atomic<bool>& serving) {
  std::vector<Client> clients;
  while (stop == 0 && serving) {
    // Up to 100 ms (stop is looked at this often) for a new connection or a client's bytes.
    std::vector<pollfd> fds{{fd_, POLLIN, 0}};
    auto wait = std::chrono::milliseconds(100);
    const auto now = Clock::now();
    for (const auto& cl : clients) {
      fds.push_back({cl.fd, POLLIN, 0});
      wait = std::min(
          wait, std::chrono::duration_cast<std::chrono::milliseconds>(cl.deadline - now + 1ms));
    }
    if (::poll(fds.data(), fds.size(), static_cast<int>(std::max<long>(0, wait.count()))) < 0) {
      continue;  // EINTR: `stop` is looked at
    }
    for (std::size_t i = clients.size(); i-- > 0;) {  // backwards: erasing keeps fds[i + 1]
      auto& cl = clients[i];
      bool complete = Clock::now() >= cl.deadline;
      if (fds[i + 1].revents != 0) {
        char buf[512];
        const ssize_t n = ::recv(cl.fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) cl.request.append(buf, static_cast<std::size_t>(n));
        // End of stream, an error, or the request's head is here.
        complete = complete || n <= 0 || cl.request.find("\r\n\r\n") != std::string::npos ||
                   cl.request.find("\n\n") != std::string::npos || cl.request.size() >= 8192;
      }
      if (complete) {
        answer(cl, handler);
        clients.erase(clients.begin() + static_cast<std::ptrdiff_t>(i));
      }
    }
    if ((fds[0].revents & POLLIN) != 0) {
      for (;;) {
        sockaddr_in from{};
        socklen_t from_len = sizeof from;
        const int fd = ::accept4(fd_, reinterpret_cast<sockaddr*>(&from), &from_len,
                                 SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) break;
        char peer[INET_ADDRSTRLEN] = "";
        ::inet_ntop(AF_INET, &from.sin_addr, peer, sizeof peer);
        if (clients.size() >= 256) {  // a flood: the oldest is answered now
          answer(clients.front(), handler);
          clients.erase(clients.begin());
        }
        clients.push_back({fd, Clock::now() + 200ms, {}, peer});
      }
    }
  }
  for (auto& cl : clients) ::close(cl.fd);
}

namespace {

// Waits for `events` on `fd` until the deadline; false (with `error` set) on timeout.
bool wait_until(int fd, short events, Clock::time_point deadline, std::chrono::milliseconds timeout,
                std::string& error) {
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      error = fmt::format("no answer within {} ms", timeout.count());
      return false;
    }
    pollfd p{fd, events, 0};
    const int rc = ::poll(&p, 1, static_cast<int>(left.count()));
    if (rc > 0) return true;
    if (rc < 0 && errno != EINTR) {
      error = std::string("poll: ") + std::strerror(errno);
      return false;
    }
  }
}

// Everything the peer sends until it closes (at most 1 MiB), or nullopt with `error`.
std::optional<std::string> read_to_end(int fd, Clock::time_point deadline,
                                       std::chrono::milliseconds timeout, std::string& error) {
  std::string response;
  for (;;) {
    if (!wait_until(fd, POLLIN, deadline, timeout, error)) return std::nullopt;
    char buf[4096];
    const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) {
      response.append(buf, static_cast<std::size_t>(n));
      if (response.size() > (1 << 20)) {
        error = "answer longer than 1 MiB";
        return std::nullopt;
      }
      continue;
    }
    if (n == 0) break;
    if (errno == EAGAIN || errno == EINTR) continue;
    error = std::string("recv: ") + std::strerror(errno);
    return std::nullopt;
  }
  return response;
}

// The body of a 200 answer, or nullopt with `error`.
std::optional<std::string> body_of(const std::string& response, std::string& error) {
  const auto head_end = response.find("\r\n\r\n");
  if (head_end == std::string::npos || !response.starts_with("HTTP/1.")) {
    error = "not an HTTP answer";
    return std::nullopt;
  }
  const auto status = response.substr(9, 3);
  if (status != "200") {
    error = "HTTP " + response.substr(9, response.find("\r\n") - 9);
    return std::nullopt;
  }
  return response.substr(head_end + 4);
}

}  // namespace

std::optional<std::string> http_get(const std::string& address, int port, const std::string& path,
                                    std::chrono::milliseconds timeout, std::string& error) {
  const auto deadline = Clock::now() + timeout;
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error = std::string("socket: ") + std::strerror(errno);
    return std::nullopt;
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  sockaddr_in a{};
  try {
    a = ipv4(address, port);
  } catch (const std::exception& e) {
    error = e.what();
    return std::nullopt;
  }
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0 && errno != EINPROGRESS) {
    error = std::string("connect: ") + std::strerror(errno);
    return std::nullopt;
  }
  if (!wait_until(fd, POLLOUT, deadline, timeout, error)) return std::nullopt;
  int err = 0;
  socklen_t len = sizeof err;
  ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) {
    error = std::string("connect: ") + std::strerror(err);
    return std::nullopt;
  }
  const std::string request = "GET " + path + " HTTP/1.0\r\n\r\n";
  if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size())) {
    error = std::string("send: ") + std::strerror(errno);
    return std::nullopt;
  }
  const std::optional<std::string> response = read_to_end(fd, deadline, timeout, error);
  if (!response) return std::nullopt;
  return body_of(*response, error);
}

std::string query_value(const std::string& request, const std::string& key) {
  const auto line_end = std::min(request.find('\r'), request.find('\n'));
  const std::string line = request.substr(0, line_end);
  const auto q = line.find('?');
  if (q == std::string::npos) return "";
  const auto end = line.find(' ', q);
  const std::string query = line.substr(q + 1, end == std::string::npos ? end : end - q - 1);
  std::size_t start = 0;
  while (start <= query.size()) {
    const auto amp = std::min(query.find('&', start), query.size());
    const std::string pair = query.substr(start, amp - start);
    const auto eq = pair.find('=');
    if (eq != std::string::npos && pair.substr(0, eq) == key) return pair.substr(eq + 1);
    start = amp + 1;
  }
  return "";
}

}  // namespace webstack::failover
