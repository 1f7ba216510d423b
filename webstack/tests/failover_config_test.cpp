// The fencing agent's and the manager's configs (failover/config.hpp): what a bad one is
// told, naming the file and the key.
#include "failover/config.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

namespace webstack::failover {
namespace {

class FailoverConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ =
        std::filesystem::temp_directory_path() / ("failover-config-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // The agent's config with `agent_extra` in [agent] and `peers` as its [[peer]] tables.
  std::string agent(const std::string& agent_extra, const std::string& peers) {
    auto path = (dir_ / "agent.toml").string();
    std::ofstream(path) << "[agent]\nhost = \"web-01\"\nlisten = \"10.0.0.11\"\n"
                        << "socket = \"/run/mysqld.sock\"\npid_file = \"/run/mysqld.pid\"\n"
                        << agent_extra << "\n[[manager]]\nname = \"mon-01\"\n"
                        << "address = \"10.0.0.20\"\nport = 9096\n"
                        << peers;
    return path;
  }
  // The error load_agent_config throws ("" when it loads).
  static std::string agent_error(const std::string& path) {
    try {
      load_agent_config(path);
      return "";
    } catch (const std::runtime_error& e) {
      return e.what();
    }
  }

  std::filesystem::path dir_;
};

const std::string kPeer = "[[peer]]\nname = \"web-02\"\naddress = \"10.0.0.12\"\nport = 9097\n";

TEST_F(FailoverConfigTest, AGoodAgentConfigLoads) {
  const auto c = load_agent_config(agent("lease_ms = 1000", kPeer));
  EXPECT_EQ(c.lease, std::chrono::milliseconds(1000));
  ASSERT_EQ(c.peers.size(), 1u);
  EXPECT_EQ(c.peers[0].port, 9097);
  EXPECT_EQ(c.manager.name, "mon-01");
  EXPECT_TRUE(c.gate);
}

TEST_F(FailoverConfigTest, BadTomlNamesTheFileAndLineAsEveryConfigDoes) {
  const auto path = agent("lease_ms = = 1", kPeer);
  const auto e = agent_error(path);
  EXPECT_EQ(e.rfind(path + ":6: invalid TOML: ", 0), 0u) << e;  // the sixth line
}

TEST_F(FailoverConfigTest, TheLeaseIsNeverDefaulted) {
  const auto path = agent("", kPeer);
  EXPECT_EQ(agent_error(path), path + ": agent.lease_ms: missing (the lease, in ms)");
}

TEST_F(FailoverConfigTest, ALeaseTooShortForItsRenewalsIsRefused) {
  const auto path = agent("lease_ms = 600\ninterval_ms = 250\ntimeout_ms = 250", kPeer);
  EXPECT_EQ(agent_error(path), path +
                                   ": agent.lease_ms: must be at least 2 x agent.interval_ms + "
                                   "agent.timeout_ms");
}

TEST_F(FailoverConfigTest, AVoterCountsOnce) {
  auto path = agent("lease_ms = 1000", kPeer + kPeer);
  EXPECT_EQ(agent_error(path), path + ": peer[1]: repeats peer[0]");
  path = agent("lease_ms = 1000",
               "[[peer]]\nname = \"web-01\"\naddress = \"10.0.0.11\"\nport = 9097\n");
  EXPECT_EQ(agent_error(path), path + ": peer[0]: is this host itself (web-01)");
  path = agent("lease_ms = 1000", "");
  EXPECT_EQ(agent_error(path),
            path + ": peer: needs at least one [[peer]] (another database host)");
}

}  // namespace
}  // namespace webstack::failover
