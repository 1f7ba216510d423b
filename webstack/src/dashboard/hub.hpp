// The dashboard's state, apart from HTTP: the lab's status sampled every second (the same
// report as `webstack status --json`), the events of the actions it ran, the one
// state-changing action at a time (each runs this webstack binary as a child process:
// the same code paths, output and checks as the CLI, and a failing action cannot take
// the dashboard down), and the client host's load generator with the requests it sent.
// state_json and requests_json only read under a mutex (the HTTP server's I/O thread
// calls them); act may wait for the load generator's thread to stop (a few seconds at
// worst), so the server calls it from a worker. Sampling, actions and load run on
// threads of their own.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "dashboard/load.hpp"
#include "topology/topology.hpp"

namespace webstack::dashboard {

struct HubOptions {
  std::string state_dir;      // the lab's
  std::string topology_file;  // passed to the CLI with -f ("" : the embedded default)
  std::string cli_path;       // the webstack binary actions run
};

// {"error": why}, as JSON.
std::string error_json(const std::string& why);

// An answer to the HTTP layer: status code and a JSON body.
struct Reply {
  unsigned status = 200;
  std::string json;
};

class Hub {
 public:
  Hub(topo::Topology topology, HubOptions options);
  ~Hub();  // stops sampling and load; waits for a running action
  Hub(const Hub&) = delete;
  Hub& operator=(const Hub&) = delete;

  std::string state_json() const;
  std::string requests_json(std::uint64_t after) const;
  // A JSON request {"action": ..., "target": ..., "state": ..., "rate": ...}: 202 when
  // started, 400 naming what is wrong, 409 while another action runs.
  Reply act(const std::string& body);

 private:
  struct Event {
    std::uint64_t seq;
    std::int64_t time_ms;
    std::string level, text;
  };
  void sample_loop();
  void event(const std::string& level, const std::string& text);
  Reply start_action(std::vector<std::string> argv, std::string label);
  void start_thread(std::vector<std::string> argv, const std::string& label);

  const topo::Topology topology_;
  const HubOptions options_;
  LoadGenerator load_;

  std::mutex act_m_;  // one act() at a time (it starts and joins threads)
  mutable std::mutex m_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::string status_json_ = "{}";
  std::string status_error_;
  std::deque<Event> events_;
  std::uint64_t next_event_ = 1;
  std::string action_label_;  // "" when none runs
  std::thread action_;
  std::thread sampler_;
};

}  // namespace webstack::dashboard
