#include "subprocess.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include <fmt/format.h>

extern char** environ;

namespace webstack::it {
namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void throw_errno(const std::string& what) {
  throw std::runtime_error(fmt::format("{}: {}", what, std::strerror(errno)));
}

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    reset(std::exchange(o.fd_, -1));
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  int get() const { return fd_; }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

std::pair<Fd, Fd> make_pipe() {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) throw_errno("pipe2");
  return {Fd(p[0]), Fd(p[1])};
}

// Writing to a pipe whose reader exited must give EPIPE, not kill the test binary. The
// children get SIGPIPE back to its default before exec (see fork_exec).
void ignore_sigpipe_once() {
  static std::once_flag once;
  std::call_once(once, [] { ::signal(SIGPIPE, SIG_IGN); });
}

// Everything the child needs, prepared before fork: between fork and exec the child of a
// multi-threaded process may only make async-signal-safe calls.
struct ExecPlan {
  std::string path;
  std::vector<std::string> args;
  std::vector<std::string> env;
  int in = -1, out = -1, err = -1;  // become fds 0, 1, 2 in the child
  bool own_process_group = false;
};

void child_fd(int from, int to) {
  if (from == to) {
    ::fcntl(to, F_SETFD, 0);
  } else {
    ::dup2(from, to);
  }
}

// fork + exec. Exec failures are reported back through a close-on-exec pipe, so a wrong
// path is an exception here rather than a child that exits 127.
pid_t fork_exec(const ExecPlan& plan) {
  std::vector<char*> argv;
  for (const auto& a : plan.args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (const auto& e : plan.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  auto [status_read, status_write] = make_pipe();
  const pid_t parent = ::getpid();

  const pid_t pid = ::fork();
  if (pid < 0) throw_errno("fork");
  if (pid == 0) {
    // Child: async-signal-safe calls only.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);  // the forking thread is already gone
    if (plan.own_process_group) ::setpgid(0, 0);
    sigset_t none;
    ::sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    ::sigaction(SIGPIPE, &dfl, nullptr);
    child_fd(plan.in, 0);
    child_fd(plan.out, 1);
    child_fd(plan.err, 2);
    // No other descriptor of the test binary (sockets, pipes of other children) leaks.
    if (::syscall(SYS_close_range, 3U, ~0U, 4U /* CLOSE_RANGE_CLOEXEC */) != 0) {
      for (int fd = 3; fd < 4096; ++fd) ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    ::execve(plan.path.c_str(), argv.data(), envp.data());
    const int e = errno;
    [[maybe_unused]] auto n = ::write(status_write.get(), &e, sizeof e);
    ::_exit(127);
  }
  status_write.reset();
  int child_errno = 0;
  ssize_t n;
  do {
    n = ::read(status_read.get(), &child_errno, sizeof child_errno);
  } while (n < 0 && errno == EINTR);
  if (n > 0) {
    int status;
    ::waitpid(pid, &status, 0);
    errno = child_errno;
    throw_errno("cannot execute " + plan.path);
  }
  return pid;
}

// Forks long-lived children from a thread that lives as long as the process: PDEATHSIG
// fires when the *thread* that forked exits, so forking from a short-lived test thread
// would kill the child with it.
class Spawner {
 public:
  static Spawner& instance() {
    static Spawner* s = new Spawner;  // never destroyed: its thread runs until exit
    return *s;
  }

  pid_t run(const std::function<pid_t()>& fork_fn) {
    Job job;
    job.fn = fork_fn;
    {
      std::lock_guard lock(mutex_);
      queue_.push_back(&job);
    }
    cv_.notify_all();
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return job.done; });
    if (job.error) std::rethrow_exception(job.error);
    return job.pid;
  }

 private:
  struct Job {
    std::function<pid_t()> fn;
    pid_t pid = -1;
    std::exception_ptr error;
    bool done = false;
  };

  Spawner() {
    std::thread([this] { loop(); }).detach();
  }

  void loop() {
    for (;;) {
      std::unique_lock lock(mutex_);
      cv_.wait(lock, [&] { return !queue_.empty(); });
      Job* job = queue_.front();
      queue_.pop_front();
      lock.unlock();
      try {
        job->pid = job->fn();
      } catch (...) {
        job->error = std::current_exception();
      }
      lock.lock();
      job->done = true;
      cv_.notify_all();
    }
  }

  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Job*> queue_;
};

bool process_exists(pid_t pid) {
  return ::kill(pid, 0) == 0 || errno == EPERM;
}

}  // namespace

std::string find_executable(const std::string& name) {
  if (name.find('/') != std::string::npos) return name;
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin";
  dirs += ":/usr/local/sbin:/usr/sbin:/sbin";  // mariadbd and nginx live in sbin
  std::stringstream ss(dirs);
  for (std::string dir; std::getline(ss, dir, ':');) {
    if (dir.empty()) continue;
    std::string candidate = dir;
    candidate.append("/").append(name);
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  throw std::runtime_error("executable not found in PATH: " + name);
}

CommandResult run_command(const std::vector<std::string>& argv, std::string_view input,
                          std::chrono::milliseconds timeout,
                          const std::vector<std::pair<std::string, std::string>>& env) {
  if (argv.empty()) throw std::invalid_argument("run_command: empty argv");
  // Found here (PATH and the sbin directories): a wrong name is an exception, not a child
  // exiting 127.
  auto found = argv;
  found[0] = find_executable(argv[0]);
  auto r =
      webstack::run(found, webstack::RunOptions{.timeout = timeout, .input = input, .env = env});
  if (r.timed_out) throw std::runtime_error(fmt::format("{}: {}", argv[0], r.err));
  return r;
}

pid_t spawn_daemon(const SpawnOptions& options) {
  if (options.argv.empty()) throw std::invalid_argument("spawn_daemon: empty argv");
  ignore_sigpipe_once();
  Fd devnull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (devnull.get() < 0) throw_errno("open /dev/null");
  const std::string out_path = options.output_path.empty() ? "/dev/null" : options.output_path;
  Fd out(::open(out_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  if (out.get() < 0) throw_errno("open " + out_path);
  ExecPlan plan{find_executable(options.argv[0]),
                options.argv,
                webstack::environment_with(options.env),
                devnull.get(),
                out.get(),
                out.get(),
                true};
  return Spawner::instance().run([&] { return fork_exec(plan); });
}

std::optional<int> wait_for_exit(pid_t pid, std::chrono::milliseconds timeout) {
  int status = 0;
  pid_t r;
  do {
    r = ::waitpid(pid, &status, WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == pid) return status;
  if (r < 0) throw_errno(fmt::format("waitpid({})", pid));
  if (timeout <= 0ms) return std::nullopt;

  // Sleep until the exit without polling: a pidfd becomes readable when the process exits.
  Fd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (pidfd.get() >= 0) {
      pollfd p{pidfd.get(), POLLIN, 0};
      ::poll(&p, 1, static_cast<int>(std::max<long>(left, 0)));
    } else {
      ::usleep(10'000);  // no pidfd (old kernel): poll every 10 ms
    }
    do {
      r = ::waitpid(pid, &status, WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r == pid) return status;
    if (r < 0) throw_errno(fmt::format("waitpid({})", pid));
    if (Clock::now() >= deadline) return std::nullopt;
  }
}

int terminate_process(pid_t pid, std::chrono::milliseconds grace) {
  if (auto st = wait_for_exit(pid, 0ms)) return *st;
  ::kill(pid, SIGTERM);
  if (auto st = wait_for_exit(pid, grace)) return *st;
  ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

std::string describe_wait_status(int status) {
  if (WIFEXITED(status)) return fmt::format("exit code {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return fmt::format("killed by signal {} ({})", WTERMSIG(status), ::strsignal(WTERMSIG(status)));
  }
  return fmt::format("wait status {}", status);
}

std::uint16_t free_tcp_port() {
  // Hand out each port once per process, so that two nodes chosen back to back differ.
  static std::mutex mutex;
  static std::set<std::uint16_t> given;
  std::lock_guard lock(mutex);
  for (int attempt = 0; attempt < 100; ++attempt) {
    Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (s.get() < 0) throw_errno("socket");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    if (::bind(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      throw_errno("bind 127.0.0.1:0");
    }
    socklen_t len = sizeof addr;
    if (::getsockname(s.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      throw_errno("getsockname");
    }
    const auto port = ntohs(addr.sin_port);
    if (given.insert(port).second) return port;
  }
  throw std::runtime_error("free_tcp_port: no new free port found");
}

std::string make_temp_dir(std::string_view tag) {
  std::string tmpl = fmt::format("/tmp/webstack-it-{}-{}-XXXXXX", ::getpid(), tag);
  if (::mkdtemp(tmpl.data()) == nullptr) throw_errno("mkdtemp " + tmpl);
  return tmpl;
}

void remove_tree(const std::string& path) noexcept {
  if (path.empty() || path == "/") return;
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
}

void sweep_stale_temp_dirs() noexcept {
  std::error_code ec;
  constexpr std::string_view prefix = "webstack-it-";
  for (const auto& entry : std::filesystem::directory_iterator("/tmp", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    const auto rest = name.substr(prefix.size());
    const auto dash = rest.find('-');
    if (dash == std::string::npos) continue;
    char* end = nullptr;
    const long pid = std::strtol(rest.c_str(), &end, 10);
    if (end != rest.c_str() + dash || pid <= 0) continue;
    struct stat st {};
    if (::lstat(entry.path().c_str(), &st) != 0 || st.st_uid != ::getuid()) continue;
    if (pid == ::getpid() || process_exists(static_cast<pid_t>(pid))) continue;
    remove_tree(entry.path().string());
  }
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const std::string& path, std::string_view content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
  if (!out) throw std::runtime_error("cannot write " + path);
}

std::string tail_file(const std::string& path, std::size_t max_bytes) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return {};
  const auto size = static_cast<std::size_t>(in.tellg());
  const auto start = size > max_bytes ? size - max_bytes : 0;
  in.seekg(static_cast<std::streamoff>(start));
  std::string out(size - start, '\0');
  in.read(out.data(), static_cast<std::streamsize>(out.size()));
  return out;
}

Paused::Paused(pid_t pid) : pid_(pid) {
  if (::kill(pid_, SIGSTOP) != 0) {
    throw std::runtime_error(fmt::format("SIGSTOP to {}: {}", pid_, std::strerror(errno)));
  }
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!is_stopped(pid_)) {
    if (std::chrono::steady_clock::now() >= deadline) {
      resume();
      throw std::runtime_error(fmt::format("process {} did not stop within 5 s", pid_));
    }
    std::this_thread::sleep_for(10ms);  // poll interval
  }
}

void Paused::resume() {
  if (paused_) ::kill(pid_, SIGCONT);
  paused_ = false;
}

bool is_stopped(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string all((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const auto close = all.rfind(')');
  return close != std::string::npos && close + 2 < all.size() && all[close + 2] == 'T';
}

}  // namespace webstack::it
