#include "common/process.hpp"

#include <fmt/format.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;  // NOLINT: POSIX declares it nowhere

namespace webstack {

namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void fail(const std::string& what) {
  throw std::runtime_error(what + ": " + std::strerror(errno));
}

void close_fd(int& fd) {
  if (fd >= 0) {
    ::close(fd);
    fd = -1;
  }
}

// The child's stdin (when there is input), stdout and stderr; [0] reads, [1] writes.
struct Pipes {
  int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
  void open(bool with_input) {
    if ((with_input && ::pipe2(in, O_CLOEXEC) != 0) || ::pipe2(out, O_CLOEXEC) != 0 ||
        ::pipe2(err, O_CLOEXEC) != 0) {
      const int saved = errno;
      close_all();
      errno = saved;
      fail("pipe");
    }
    // The parent writes the input without blocking: a child that does not read it yet
    // must not stop us from reading its output.
    if (in[1] >= 0) ::fcntl(in[1], F_SETFL, O_NONBLOCK);
  }
  void close_all() {
    for (int* fd : {&in[0], &in[1], &out[0], &out[1], &err[0], &err[1]}) close_fd(*fd);
  }
};

// A write to a pipe whose reader has gone: EPIPE for us rather than a SIGPIPE that ends
// the whole program. Blocked in this thread while writing; one raised meanwhile is taken.
class SigpipeBlocked {
 public:
  SigpipeBlocked() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    ::pthread_sigmask(SIG_BLOCK, &pipe_, &old_);
  }
  ~SigpipeBlocked() {
    const timespec zero{};
    while (::sigtimedwait(&pipe_, nullptr, &zero) > 0) {
    }
    ::pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  SigpipeBlocked(const SigpipeBlocked&) = delete;
  SigpipeBlocked& operator=(const SigpipeBlocked&) = delete;

 private:
  sigset_t pipe_{}, old_{};
};

// The child has exited and `status` is its wait status.
bool reaped(pid_t pid, int& status) {
  pid_t r;
  while ((r = ::waitpid(pid, &status, WNOHANG)) < 0 && errno == EINTR) {
  }
  // r < 0: no such child any more (someone reaped it); its status is lost.
  return r == pid || r < 0;
}

// Writes `input` to the child's stdin and reads its stdout and stderr until both close.
// False when the deadline passed first.
bool exchange(Pipes& p, std::string_view input, Clock::time_point deadline, ProcessResult& result) {
  std::optional<SigpipeBlocked> no_sigpipe;
  if (p.in[1] >= 0) no_sigpipe.emplace();
  std::size_t written = 0;
  if (p.in[1] >= 0 && input.empty()) close_fd(p.in[1]);
  std::array<char, 4096> buf{};
  int* fds[2] = {&p.out[0], &p.err[0]};
  std::string* sinks[2] = {&result.out, &result.err};
  // Until both outputs close and the input is written (or refused).
  while (*fds[0] >= 0 || *fds[1] >= 0 || p.in[1] >= 0) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      return false;
    }
    pollfd pfds[3] = {{*fds[0], POLLIN, 0}, {*fds[1], POLLIN, 0}, {p.in[1], POLLOUT, 0}};
    if (::poll(pfds, 3, static_cast<int>(left)) < 0) {
      if (errno == EINTR) {
        continue;
      }
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (*fds[i] < 0 || pfds[i].revents == 0) {
        continue;
      }
      const ssize_t got = ::read(*fds[i], buf.data(), buf.size());
      if (got > 0) {
        sinks[i]->append(buf.data(), static_cast<std::size_t>(got));
      } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
        close_fd(*fds[i]);
      }
    }
    if (p.in[1] >= 0 && pfds[2].revents != 0) {
      const ssize_t put = ::write(p.in[1], input.data() + written, input.size() - written);
      if (put > 0) written += static_cast<std::size_t>(put);
      // All written, or the child closed its stdin (EPIPE): it reads no more.
      if (written == input.size() || (put < 0 && errno != EINTR && errno != EAGAIN)) {
        close_fd(p.in[1]);
      }
    }
  }
  return true;
}

// The forked child's side of run(): its pipes as stdin, stdout and stderr, then exec.
[[noreturn]] void exec_child(const Pipes& p, const std::vector<char*>& args,
                             const std::vector<char*>& envp) {
  // Child: only async-signal-safe calls from here on.
  const int in = p.in[0] >= 0 ? p.in[0] : ::open("/dev/null", O_RDONLY);
  if (in >= 0) {
    ::dup2(in, STDIN_FILENO);
  }
  ::dup2(p.out[1], STDOUT_FILENO);
  ::dup2(p.err[1], STDERR_FILENO);
  // The program starts as from a shell: no signal blocked, SIGPIPE deadly (we may ignore
  // it, and ignored signals are inherited across exec).
  sigset_t none;
  ::sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::signal(SIGPIPE, SIG_DFL);
  // Nothing else of ours: Asio's sockets (a server's listener, its connections) are not
  // close-on-exec, and a child that outlives them would keep them open.
  ::close_range(3, ~0U, 0);
  if (envp.empty()) {
    ::execvp(args[0], args.data());
  } else {
    ::execvpe(args[0], args.data(), envp.data());
  }
  const char msg[] = "exec failed: ";
  (void)!::write(STDERR_FILENO, msg, sizeof msg - 1);
  const char* why = ::strerror(errno);
  (void)!::write(STDERR_FILENO, why, ::strlen(why));
  ::_exit(127);
}

// Waits for the child's exit until `deadline` (killing it past it, or once its output
// timed out), then records its exit code.
void reap_child(pid_t pid, Clock::time_point deadline, std::chrono::milliseconds timeout,
                ProcessResult& result) {
  // Its output closed, the child may still linger (it handed its pipes on): the same
  // deadline holds for its exit.
  int status = 0;
  while (!result.timed_out && !reaped(pid, status)) {
    if (Clock::now() >= deadline) {
      result.timed_out = true;
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  if (result.timed_out) {
    ::kill(pid, SIGKILL);
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  if (WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.exit_code = 128 + WTERMSIG(status);
  }
  if (result.timed_out) {
    result.err += "timed out after " + std::to_string(timeout.count()) + " ms";
  }
}

}  // namespace

std::string describe(const std::vector<std::string>& argv) {
  std::string s;
  for (const auto& a : argv) {
    if (!s.empty()) {
      s += ' ';
    }
    s += a;
  }
  return s;
}

std::vector<std::string> environment_with(
    const std::vector<std::pair<std::string, std::string>>& overrides) {
  std::vector<std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const std::string_view kv(*e);
    const auto name = kv.substr(0, kv.find('='));
    const bool overridden = std::any_of(overrides.begin(), overrides.end(),
                                        [&](const auto& o) { return o.first == name; });
    if (!overridden) env.emplace_back(kv);
  }
  for (const auto& [k, v] : overrides) env.push_back(fmt::format("{}={}", k, v));
  return env;
}

ProcessResult run(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) {
  return run(argv, RunOptions{.timeout = timeout, .input = {}, .env = {}});
}

ProcessResult run(const std::vector<std::string>& argv, const RunOptions& options) {
  if (argv.empty()) {
    throw std::runtime_error("run: empty argv");
  }
  // Everything the child needs is made before fork: after it, only async-signal-safe calls.
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const auto& a : argv) {
    args.push_back(const_cast<char*>(a.c_str()));
  }
  args.push_back(nullptr);
  std::vector<std::string> env_strings;
  std::vector<char*> envp;
  if (!options.env.empty()) {
    env_strings = environment_with(options.env);
    for (auto& e : env_strings) envp.push_back(e.data());
    envp.push_back(nullptr);
  }

  Pipes p;
  p.open(!options.input.empty());
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int saved = errno;
    p.close_all();
    errno = saved;
    fail("fork");
  }
  if (pid == 0) exec_child(p, args, envp);
  close_fd(p.in[0]);
  close_fd(p.out[1]);
  close_fd(p.err[1]);

  ProcessResult result;
  const auto deadline = Clock::now() + options.timeout;
  result.timed_out = !exchange(p, options.input, deadline, result);
  p.close_all();
  reap_child(pid, deadline, options.timeout, result);
  return result;
}

std::string run_checked(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) {
  ProcessResult r = run(argv, timeout);
  if (r.exit_code != 0) {
    std::string err = r.err;
    while (!err.empty() && (err.back() == '\n' || err.back() == ' ')) {
      err.pop_back();
    }
    throw std::runtime_error("`" + describe(argv) + "` failed (exit " +
                             std::to_string(r.exit_code) + "): " + err);
  }
  return std::move(r.out);
}

std::string read_text_or_empty(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

char proc_state(int pid) {
  const auto stat = read_text_or_empty(fmt::format("/proc/{}/stat", pid));
  const auto close = stat.rfind(')');  // the command name may contain anything but ')'
  if (close == std::string::npos || close + 2 >= stat.size()) return 0;
  return stat[close + 2];
}

bool alive(int pid) {
  if (pid <= 0) return false;
  if (::kill(pid, 0) != 0 && errno != EPERM) return false;
  const char s = proc_state(pid);
  return s != 0 && s != 'Z' && s != 'X';
}

bool port_free(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

int run_attached(const std::vector<std::string>& argv) {
  if (argv.empty()) throw std::runtime_error("run_attached: empty argv");
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  // As system(3): while the child runs, a ^C at the terminal is the child's to handle
  // (Ansible stops cleanly); this process waits and then cleans up its own files.
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  struct sigaction old_int {};
  struct sigaction old_quit {};
  ::sigaction(SIGINT, &ignore, &old_int);
  ::sigaction(SIGQUIT, &ignore, &old_quit);
  posix_spawnattr_t attr;
  ::posix_spawnattr_init(&attr);
  sigset_t defaults;
  ::sigemptyset(&defaults);
  ::sigaddset(&defaults, SIGINT);
  ::sigaddset(&defaults, SIGQUIT);
  ::sigaddset(&defaults, SIGPIPE);
  ::posix_spawnattr_setsigdefault(&attr, &defaults);
  ::posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF);
  std::fflush(stdout);
  std::fflush(stderr);
  pid_t pid = -1;
  const int err = ::posix_spawnp(&pid, args[0], nullptr, &attr, args.data(), environ);
  ::posix_spawnattr_destroy(&attr);
  int status = 0;
  if (err == 0) {
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  ::sigaction(SIGINT, &old_int, nullptr);
  ::sigaction(SIGQUIT, &old_quit, nullptr);
  if (err != 0) {
    throw std::runtime_error(fmt::format("cannot run {}: {}", argv[0], std::strerror(err)));
  }
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return WEXITSTATUS(status);
}

std::string find_in_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  const std::string dirs = path != nullptr && *path != '\0'
                               ? path
                               : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  std::stringstream ss(dirs);
  for (std::string d; std::getline(ss, d, ':');) {
    if (d.empty()) continue;
    std::string candidate = d;
    candidate.append("/").append(name);
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

bool program_in_path(const std::string& name) {
  return !find_in_path(name).empty();
}

std::string random_token(std::size_t n) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  std::random_device rd;  // /dev/urandom
  std::uniform_int_distribution<std::size_t> pick(0, sizeof kAlphabet - 2);
  std::string s;
  for (std::size_t i = 0; i < n; ++i) s += kAlphabet[pick(rd)];
  return s;
}

}  // namespace webstack
