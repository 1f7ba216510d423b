#include "tools/haproxy.hpp"

#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <sstream>
#include <stdexcept>

#include "common/text.hpp"

namespace webstack::tools {

// The servers of `backend` in a "show stat" CSV.
std::vector<LbServer> parse_show_stat(const std::string& csv, const std::string& backend) {
  std::istringstream in(csv);
  std::map<std::string, std::size_t> col;
  std::vector<LbServer> out;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.starts_with("# ")) {
      const auto names = text::split(line.substr(2), ',');
      for (std::size_t i = 0; i < names.size(); ++i) col[names[i]] = i;
      continue;
    }
    if (line.empty() || col.empty()) continue;
    const auto f = text::split(line, ',');
    auto field = [&](const char* name) -> std::string {
      const auto it = col.find(name);
      return it != col.end() && it->second < f.size() ? f[it->second] : std::string();
    };
    if (field("pxname") != backend) continue;
    const auto sv = field("svname");
    if (sv == "BACKEND" || sv == "FRONTEND") continue;
    out.push_back({sv, field("status"), field("check_status"), text::to_ll(field("scur"), 0),
                   text::to_ll(field("stot"), 0)});
  }
  if (col.empty()) throw std::runtime_error("no CSV header in the answer to show stat");
  return out;
}

// Sends `command` to an HAProxy stats socket and returns everything it answers (HAProxy
// closes the connection after a non-interactive command).
std::string haproxy_command(const std::string& socket_path, const std::string& command) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof a.sun_path)
    throw std::runtime_error("socket path too long: " + socket_path);
  std::memcpy(a.sun_path, socket_path.c_str(), socket_path.size() + 1);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error(fmt::format("socket: {}", std::strerror(errno)));
  timeval tv{};
  tv.tv_sec = 3;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    const int e = errno;
    ::close(fd);
    throw std::runtime_error(
        fmt::format("cannot connect to {}: {}", socket_path, std::strerror(e)));
  }
  std::size_t sent = 0;
  while (sent < command.size()) {
    const auto n = ::send(fd, command.data() + sent, command.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) {
      const int e = errno;
      ::close(fd);
      throw std::runtime_error(
          fmt::format("cannot write to {}: {}", socket_path, std::strerror(e)));
    }
    sent += static_cast<std::size_t>(n);
  }
  std::string out;
  char buf[8192];
  for (;;) {
    const auto n = ::recv(fd, buf, sizeof buf, 0);
    if (n > 0) {
      out.append(buf, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int e = errno;
      ::close(fd);
      throw std::runtime_error(fmt::format("reading {}: {}", socket_path, std::strerror(e)));
    }
    break;
  }
  ::close(fd);
  return out;
}

std::vector<LbServer> haproxy_servers(const std::string& socket_path, const std::string& backend) {
  return parse_show_stat(haproxy_command(socket_path, "show stat\n"), backend);
}

void set_server_state(const std::string& socket_path, const std::string& server,
                      const std::string& state) {
  const auto answer = text::trim(
      haproxy_command(socket_path, fmt::format("set server {} state {}\n", server, state)));
  if (!answer.empty()) {
    throw std::runtime_error(fmt::format("HAProxy at {} refused `set server {} state {}`: {}",
                                         socket_path, server, state, answer));
  }
}

}  // namespace webstack::tools
