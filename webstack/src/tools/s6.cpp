#include "tools/s6.hpp"

#include <pwd.h>

#include <fmt/format.h>

#include <cctype>
#include <chrono>
#include <sstream>
#include <stdexcept>

#include "common/process.hpp"
#include "common/text.hpp"

namespace webstack::tools {

namespace {

using namespace std::chrono_literals;

// The effective user of `pid` per /proc/<pid>/status ("Uid: real effective ..."), by name.
std::string process_user(int pid) {
  std::istringstream in(read_text_or_empty(fmt::format("/proc/{}/status", pid)));
  for (std::string line; std::getline(in, line);) {
    if (!line.starts_with("Uid:")) continue;
    std::istringstream ids(line.substr(4));
    long long real = -1, effective = -1;
    ids >> real >> effective;
    if (effective < 0) return "";
    const passwd* pw = ::getpwuid(static_cast<uid_t>(effective));
    return pw != nullptr ? pw->pw_name : std::to_string(effective);
  }
  return "";
}

}  // namespace

void parse_svstat(const std::string& line, ServiceState& st) {
  st.up = line.starts_with("up ");
  st.pid = -1;
  st.seconds = -1;
  if (const auto p = line.find("(pid "); p != std::string::npos) {
    st.pid = static_cast<int>(text::to_ll(line.substr(p + 5, line.find(')', p) - p - 5), -1));
  }
  // The first "<N> seconds".
  if (const auto s = line.find(" seconds"); s != std::string::npos) {
    auto b = s;
    while (b > 0 && std::isdigit(static_cast<unsigned char>(line[b - 1]))) --b;
    if (b < s) st.seconds = text::to_ll(line.substr(b, s - b), -1);
  }
}

ServiceState service_state(const std::string& name, const std::string& dir) {
  ServiceState st;
  st.name = name;
  const auto r = run({"s6-svstat", dir}, 5s);
  if (r.exit_code != 0) {
    st.text = "unknown: " + text::trim(r.err);
    return st;
  }
  st.known = true;
  st.text = text::trim(r.out);
  parse_svstat(st.text, st);
  if (st.up && st.pid > 0) {
    st.user = process_user(st.pid);
    st.paused = proc_state(st.pid) == 'T';
  }
  return st;
}

void s6_svc(const std::string& dir, const char* flag) {
  const auto r = run({"s6-svc", flag, dir}, 5s);
  if (r.exit_code != 0) {
    throw std::runtime_error(
        fmt::format("s6-svc {} {} failed ({}): {}", flag, dir, r.exit_code, text::trim(r.err)));
  }
}

}  // namespace webstack::tools
