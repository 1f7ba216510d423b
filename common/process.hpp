// Running a program without a shell: argv goes straight to execvp, so no argument is ever
// interpreted (no quoting, no globbing, no injection). Output is captured whole; input
// (a secret, a script) goes through a pipe, never a file or the command line.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace webstack {

struct ProcessResult {
  int exit_code = -1;  // the exit status; 128 + signal when killed; 127 when exec failed
  std::string out;
  std::string err;
  bool timed_out = false;  // killed at the deadline
};

struct RunOptions {
  std::chrono::milliseconds timeout = std::chrono::seconds(30);
  std::string_view input;  // written to stdin, which is then closed ("": /dev/null)
  std::vector<std::pair<std::string, std::string>> env;  // added to / replacing environ
};

// Runs argv[0] (looked up in PATH) with stdin on /dev/null, stdout and stderr captured.
// Past `timeout` the child is killed (SIGKILL) and the result has exit_code 128 + 9 and
// "timed out after N ms" appended to err. Throws std::runtime_error only when the process
// cannot be started at all (empty argv, pipe or fork failure).
ProcessResult run(const std::vector<std::string>& argv,
                  std::chrono::milliseconds timeout = std::chrono::seconds(30));
// The same with input on stdin and an environment of its own.
ProcessResult run(const std::vector<std::string>& argv, const RunOptions& options);

// run(), and on a non-zero exit throws std::runtime_error
// "`ip netns add x` failed (exit 1): <stderr>". Returns stdout.
std::string run_checked(const std::vector<std::string>& argv,
                        std::chrono::milliseconds timeout = std::chrono::seconds(30));

// Runs argv[0] (looked up in PATH) attached to this process's stdin, stdout and stderr
// (an operator watches it, and may answer its prompts), and waits for it: the exit
// status, 128 + signal when killed. Throws std::runtime_error when it cannot be started
// (not found: "cannot run X: No such file or directory").
int run_attached(const std::vector<std::string>& argv);

// An executable `name` in one of PATH's directories, as execvp would find it (the run
// scripts find programs the same way, through the PATH s6-svscan inherits from us).
bool program_in_path(const std::string& name);
// The same lookup: the executable's path, or "" when there is none.
std::string find_in_path(const std::string& name);

// `n` characters of [A-Za-z0-9] from /dev/urandom: passwords, tokens.
std::string random_token(std::size_t n);

// This process's environment ("NAME=value" strings) with `overrides` added or replacing
// the variables of the same name.
std::vector<std::string> environment_with(
    const std::vector<std::pair<std::string, std::string>>& overrides);

// "ip netns add x": argv joined by spaces, for messages only (never executed).
std::string describe(const std::vector<std::string>& argv);

// The whole file, or "" when it cannot be read (e.g. /proc/<pid>/stat of a gone process).
std::string read_text_or_empty(const std::string& path);
// The state letter of /proc/<pid>/stat ('R', 'S', 'Z'...), 0 if there is no such process.
char proc_state(int pid);
// The process exists and is not a zombie.
bool alive(int pid);
// Nothing listens on 127.0.0.1:`port` (a bind there succeeds).
bool port_free(std::uint16_t port);

}  // namespace webstack
