// webstack-failover: the database failover manager and fencing agent (failover/manager.hpp).
//   webstack-failover manager CONFIG   (on the monitor host)
//   webstack-failover agent CONFIG     (on each database host)
//   webstack-failover check manager|agent CONFIG   (parse the config, print nothing, exit 0)
#include <cstdio>
#include <exception>
#include <string>

#include "failover/manager.hpp"

int main(int argc, char** argv) {
  using namespace webstack::failover;
  const std::string usage =
      "usage: webstack-failover manager CONFIG | agent CONFIG | check manager|agent CONFIG\n";
  try {
    const std::string cmd = argc > 1 ? argv[1] : "";
    if (cmd == "manager" && argc == 3) return run_manager(load_manager_config(argv[2]));
    if (cmd == "agent" && argc == 3) return run_agent(load_agent_config(argv[2]));
    if (cmd == "check" && argc == 4) {
      const std::string kind = argv[2];
      if (kind == "manager") {
        load_manager_config(argv[3]);
        return 0;
      }
      if (kind == "agent") {
        load_agent_config(argv[3]);
        return 0;
      }
    }
    std::fputs(usage.c_str(), stderr);
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "webstack-failover: %s\n", e.what());
    return 1;
  }
}
