#include "topology/topology.hpp"

#include <gtest/gtest.h>

#include <unistd.h>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

namespace {

using namespace webstack::topo;

// Valid host blocks; their line counts matter to the tests below.
// kLb: lines 1-4, kPrimary: 5-9, kClient: 10-13 when concatenated in that order.
const std::string kLb = "[[host]]\nname = \"lb-01\"\naddress = \"10.77.0.10\"\nroles = [\"lb\"]\n";
const std::string kPrimary =
    "[[host]]\nname = \"web-01\"\naddress = \"10.77.0.11\"\nroles = [\"web\", \"db\"]\n"
    "db = \"primary\"\n";
const std::string kClient =
    "[[host]]\nname = \"client\"\naddress = \"10.77.0.100\"\nroles = [\"client\"]\n";
const std::string kValid = kLb + kPrimary + kClient;  // 13 lines

// Parses `text` as "site.toml", expects a TopologyError at `line` with `key`, and returns it.
TopologyError error_of(const std::string& text, int line, const std::string& key) {
  try {
    parse_topology(text, "site.toml");
  } catch (const TopologyError& e) {
    EXPECT_EQ(e.file(), "site.toml") << e.what();
    EXPECT_EQ(e.line(), line) << e.what();
    EXPECT_EQ(e.key(), key) << e.what();
    std::string prefix = "site.toml:";
    if (line > 0) {
      prefix += std::to_string(line) + ":";
    }
    prefix += " ";
    if (!key.empty()) {
      prefix += key + ": ";
    }
    EXPECT_EQ(std::string(e.what()).rfind(prefix, 0), 0u)
        << "what(): " << e.what() << "\nexpected prefix: " << prefix;
    return e;
  }
  ADD_FAILURE() << "no error for:\n" << text;
  return TopologyError("", 0, "", "");
}

bool mentions(const TopologyError& e, const std::string& s) {
  return std::string(e.what()).find(s) != std::string::npos;
}

// ---------------------------------------------------------------------------------------------
// The default and valid files.

TEST(Topology, DefaultIsTheSeedsSite) {
  const Topology t = default_topology();
  EXPECT_EQ(t.source, "<embedded default>");
  EXPECT_EQ(t.name, "webstack");
  EXPECT_EQ(t.subnet, "10.77.0.0/24");
  EXPECT_EQ(t.edge_port, 8080);
  EXPECT_EQ(t.site_name, "www.foobar.test");
  EXPECT_EQ(t.balance, "roundrobin");
  EXPECT_EQ(t.http_port, 80);
  EXPECT_EQ(t.app_port, 8080);
  EXPECT_EQ(t.web_port, 80);
  EXPECT_EQ(t.db_port, 3306);
  EXPECT_EQ(t.prometheus_port, 9090);
  EXPECT_EQ(t.alertmanager_port, 9093);
  ASSERT_EQ(t.hosts.size(), 6u);
  EXPECT_EQ(t.lb_mode, "active-passive");
  EXPECT_EQ(t.virtual_addresses, std::vector<std::string>{"10.77.0.5"});
  EXPECT_EQ(t.site_addresses(), std::vector<std::string>{"10.77.0.5"});

  EXPECT_EQ(t.hosts[0].name, "lb-01");
  EXPECT_EQ(t.hosts[0].address, "10.77.0.10");
  EXPECT_EQ(t.hosts[0].roles, std::vector<Role>{Role::LoadBalancer});
  EXPECT_FALSE(t.hosts[0].db.has_value());
  EXPECT_EQ(t.hosts[1].name, "lb-02");
  EXPECT_EQ(t.hosts[1].address, "10.77.0.14");
  EXPECT_EQ(t.hosts[1].roles, std::vector<Role>{Role::LoadBalancer});

  EXPECT_EQ(t.hosts[2].name, "web-01");
  EXPECT_EQ(t.hosts[2].address, "10.77.0.11");
  EXPECT_EQ(t.hosts[2].roles, (std::vector<Role>{Role::Web, Role::Database}));
  EXPECT_EQ(t.hosts[2].db, DbRole::Primary);

  EXPECT_EQ(t.hosts[3].name, "web-02");
  EXPECT_EQ(t.hosts[3].address, "10.77.0.12");
  EXPECT_EQ(t.hosts[3].roles, (std::vector<Role>{Role::Web, Role::Database}));
  EXPECT_EQ(t.hosts[3].db, DbRole::Replica);

  EXPECT_EQ(t.hosts[4].name, "mon-01");
  EXPECT_EQ(t.hosts[4].address, "10.77.0.20");
  EXPECT_EQ(t.hosts[4].roles, std::vector<Role>{Role::Monitor});
  ASSERT_NE(t.monitor(), nullptr);
  EXPECT_EQ(t.monitor()->name, "mon-01");

  EXPECT_EQ(t.hosts[5].name, "client");
  EXPECT_EQ(t.hosts[5].address, "10.77.0.100");
  EXPECT_EQ(t.hosts[5].roles, std::vector<Role>{Role::Client});

  EXPECT_EQ(t.primary().name, "web-01");
  ASSERT_EQ(t.replicas().size(), 1u);
  EXPECT_EQ(t.replicas()[0]->name, "web-02");
  EXPECT_EQ(t.gateway(), "10.77.0.1");
  EXPECT_EQ(t.prefix_length(), 24);
}

TEST(Topology, DefaultTextIsACommentedValidFile) {
  const std::string text(default_topology_text());
  EXPECT_NE(text.find("# "), std::string::npos);
  EXPECT_NE(text.find("[lab]"), std::string::npos);
  EXPECT_NE(text.find("[site]"), std::string::npos);
  const Topology t = parse_topology(text, "init.toml");
  EXPECT_EQ(t.source, "init.toml");
  ASSERT_EQ(t.hosts.size(), 6u);
  EXPECT_GT(t.hosts[0].line, 0);
  EXPECT_EQ(text.substr(0, 1), "#");
}

// The compiled-in text is src/topology/default.toml, byte for byte.
TEST(Topology, DefaultTextIsTheDefaultTomlFile) {
  const std::string path = WEBSTACK_SOURCE_DIR "/webstack/src/topology/default.toml";
  std::ifstream in(path, std::ios::binary);
  ASSERT_TRUE(in) << path;
  const std::string file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(default_topology_text(), file);
}

TEST(Topology, HelpersFindAndFilter) {
  const Topology t = default_topology();
  ASSERT_NE(t.find("web-02"), nullptr);
  EXPECT_EQ(t.find("web-02")->address, "10.77.0.12");
  EXPECT_EQ(t.find("web-09"), nullptr);
  const auto web = t.with_role(Role::Web);
  ASSERT_EQ(web.size(), 2u);
  EXPECT_EQ(web[0]->name, "web-01");
  EXPECT_EQ(web[1]->name, "web-02");
  EXPECT_EQ(t.with_role(Role::LoadBalancer).size(), 2u);
  EXPECT_EQ(t.with_role(Role::Client).size(), 1u);
  EXPECT_TRUE(t.hosts[2].has(Role::Database));
  EXPECT_FALSE(t.hosts[0].has(Role::Web));
  EXPECT_TRUE(t.hosts[2].is_primary());
  EXPECT_FALSE(t.hosts[2].is_replica());
  EXPECT_TRUE(t.hosts[3].is_replica());
  EXPECT_FALSE(t.hosts[3].is_primary());
  EXPECT_FALSE(t.hosts[0].is_primary());
  EXPECT_FALSE(t.hosts[0].is_replica());
  EXPECT_EQ(role_name(Role::LoadBalancer), "lb");
  EXPECT_EQ(role_name(Role::Web), "web");
  EXPECT_EQ(role_name(Role::Database), "db");
  EXPECT_EQ(role_name(Role::Client), "client");
  EXPECT_EQ(role_name(Role::Monitor), "monitor");
  EXPECT_THROW(Topology{}.primary(), std::logic_error);
}

TEST(Topology, AThirdWebHostNeedsNoCodeChange) {
  std::string text(default_topology_text());
  text +=
      "\n[[host]]\nname = \"web-03\"\naddress = \"10.77.0.13\"\nroles = [\"web\", \"db\"]\n"
      "db = \"replica\"\n";
  const Topology t = parse_topology(text, "site.toml");
  ASSERT_EQ(t.hosts.size(), 7u);
  EXPECT_EQ(t.with_role(Role::Web).size(), 3u);
  ASSERT_EQ(t.replicas().size(), 2u);
  EXPECT_EQ(t.replicas()[1]->name, "web-03");
  EXPECT_EQ(t.primary().name, "web-01");

  // A web host without a database works too.
  const Topology u = parse_topology(
      kValid + "[[host]]\nname = \"web-03\"\naddress = \"10.77.0.13\"\nroles = [\"web\"]\n",
      "site.toml");
  EXPECT_EQ(u.with_role(Role::Web).size(), 2u);
  EXPECT_FALSE(u.find("web-03")->db.has_value());
  EXPECT_EQ(u.find("web-03")->line, 14);
}

TEST(Topology, LabAndSiteAreOptionalAndCustomisable) {
  const Topology d = parse_topology(kValid, "site.toml");
  EXPECT_EQ(d.name, "webstack");
  EXPECT_EQ(d.subnet, "10.77.0.0/24");
  EXPECT_EQ(d.balance, "roundrobin");
  EXPECT_EQ(d.hosts.size(), 3u);

  const Topology t = parse_topology(
      "[lab]\nname = \"ws2\"\nsubnet = \"192.168.8.0/22\"\nedge_port = 9000\n"
      "[site]\nname = \"shop.example\"\nbalance = \"leastconn\"\nhttp_port = 81\n"
      "app_port = 9090\nweb_port = 8081\ndb_port = 3307\n"
      "[[host]]\nname = \"lb\"\naddress = \"192.168.11.254\"\nroles = [\"lb\", \"web\"]\n"
      "[[host]]\nname = \"db\"\naddress = \"192.168.8.2\"\nroles = [\"db\"]\ndb = \"primary\"\n"
      "[[host]]\nname = \"outside\"\naddress = \"192.168.9.0\"\nroles = [\"client\"]\n",
      "site.toml");
  EXPECT_EQ(t.name, "ws2");
  EXPECT_EQ(t.edge_port, 9000);
  EXPECT_EQ(t.site_name, "shop.example");
  EXPECT_EQ(t.balance, "leastconn");
  EXPECT_EQ(t.http_port, 81);
  EXPECT_EQ(t.app_port, 9090);
  EXPECT_EQ(t.web_port, 8081);
  EXPECT_EQ(t.db_port, 3307);
  EXPECT_EQ(t.gateway(), "192.168.8.1");
  EXPECT_EQ(t.prefix_length(), 22);
  EXPECT_EQ(t.primary().name, "db");
  EXPECT_TRUE(t.replicas().empty());
}

TEST(Topology, LoadsAFileWithItsPathAsSource) {
  const std::string path =
      ::testing::TempDir() + "topology_test_" + std::to_string(::getpid()) + ".toml";
  std::ofstream(path) << kValid;
  const Topology t = load_topology_file(path);
  EXPECT_EQ(t.source, path);
  EXPECT_EQ(t.hosts.size(), 3u);

  std::ofstream(path) << kValid << "[[host]]\nname = \"lb-01\"\n";
  try {
    load_topology_file(path);
    ADD_FAILURE() << "no error";
  } catch (const TopologyError& e) {
    EXPECT_EQ(std::string(e.what()).rfind(path + ":15: host[4].name: ", 0), 0u) << e.what();
  }
  std::remove(path.c_str());
}

TEST(Topology, AMissingFileIsNamed) {
  try {
    load_topology_file("/nonexistent/site.toml");
    ADD_FAILURE() << "no error";
  } catch (const TopologyError& e) {
    EXPECT_EQ(e.file(), "/nonexistent/site.toml");
    EXPECT_EQ(e.line(), 0);
    EXPECT_EQ(std::string(e.what()).rfind("/nonexistent/site.toml: ", 0), 0u) << e.what();
    EXPECT_NE(std::string(e.what()).find("No such file"), std::string::npos) << e.what();
  }
}

TEST(Topology, ErrorMessageFormat) {
  EXPECT_STREQ(TopologyError("f.toml", 3, "lab.name", "bad").what(), "f.toml:3: lab.name: bad");
  EXPECT_STREQ(TopologyError("f.toml", 0, "host", "bad").what(), "f.toml: host: bad");
  EXPECT_STREQ(TopologyError("f.toml", 3, "", "bad").what(), "f.toml:3: bad");
}

// ---------------------------------------------------------------------------------------------
// TOML and the shape of the file.

TEST(TopologyErrors, TomlSyntax) {
  const auto e = error_of("[lab]\nname = \"webstack\"\nsubnet = = 1\n", 3, "");
  EXPECT_TRUE(mentions(e, "invalid TOML")) << e.what();
  error_of(kValid + "[lab]\nname = \"a\"\nname = \"b\"\n", 16, "");  // duplicate key
}

TEST(Topology, DatabaseFailoverIsAutomaticWithAMonitorHost) {
  const auto t = parse_topology(std::string(default_topology_text()), "default");
  EXPECT_EQ(t.failover, "automatic");
  EXPECT_EQ(t.failover_after, 0);
  EXPECT_TRUE(t.automatic_failover());
  std::string text(default_topology_text());
  const std::string line = "failover = \"automatic\"";
  text.replace(text.find(line), line.size(), "failover = \"manual\"\nfailover_after = 10");
  const auto manual = parse_topology(text, "manual");
  EXPECT_FALSE(manual.automatic_failover());
  EXPECT_EQ(manual.failover_after, 10);
  // No monitor host: the default is simply off; asking for it is an error.
  EXPECT_FALSE(parse_topology(kValid, "valid").automatic_failover());
  auto e = error_of("[db]\nfailover = \"automatic\"\n" + kValid, 2, "db.failover");
  EXPECT_TRUE(mentions(e, "monitor")) << e.what();
  e = error_of("[db]\nfailover = \"sometimes\"\n" + kValid, 2, "db.failover");
  EXPECT_TRUE(mentions(e, "\"automatic\" or \"manual\"")) << e.what();
  error_of("[db]\nfailover_after = 0\n" + kValid, 2, "db.failover_after");
  error_of("[db]\nfailover_after = \"3\"\n" + kValid, 2, "db.failover_after");
  e = error_of("[db]\nretries = 3\n" + kValid, 2, "db.retries");
  EXPECT_TRUE(mentions(e, "failover, failover_after")) << e.what();
}

TEST(TopologyErrors, UnknownTopLevelTableAndKey) {
  auto e = error_of(kValid + "[network]\nmtu = 1500\n", 14, "network");
  EXPECT_TRUE(mentions(e, "[lab], [site], [lb], [db], [deploy], [[host]]")) << e.what();
  error_of("title = \"x\"\n" + kValid, 1, "title");
  error_of(kValid + "[[hosts]]\nname = \"x\"\n", 14, "hosts");
}

TEST(TopologyErrors, UnknownKeysNameTheKnownOnes) {
  auto e =
      error_of("[lab]\nname = \"webstack\"\nsubnet = \"10.77.0.0/24\"\nfoo = 1\n", 4, "lab.foo");
  EXPECT_TRUE(mentions(e, "name, subnet, edge_port")) << e.what();
  e = error_of("[site]\nport = 80\n" + kValid, 2, "site.port");
  EXPECT_TRUE(mentions(e, "http_port")) << e.what();
  e = error_of(kLb + kPrimary + "ip = \"10.77.0.12\"\n" + kClient, 10, "host[2].ip");
  EXPECT_TRUE(mentions(e, "name, address, roles, db")) << e.what();
  // The first in the file, though a table iterates in key order.
  error_of("[lab]\nzz = 1\naa = 2\n" + kValid, 2, "lab.zz");
}

TEST(TopologyErrors, WrongTypes) {
  error_of("lab = 5\n" + kValid, 1, "lab");
  error_of("[lab]\nname = 5\n" + kValid, 2, "lab.name");
  auto e = error_of("[site]\nhttp_port = \"80\"\n" + kValid, 2, "site.http_port");
  EXPECT_TRUE(mentions(e, "the string \"80\"")) << e.what();
  error_of("[site]\ndb_port = 3306.0\n" + kValid, 2, "site.db_port");
  error_of(kLb + "[[host]]\nname = \"web-01\"\naddress = \"10.77.0.11\"\nroles = \"web\"\n", 8,
           "host[2].roles");
  error_of(kLb + "[[host]]\nname = \"web-01\"\naddress = \"10.77.0.11\"\nroles = [\"web\", 1]\n", 8,
           "host[2].roles");
  error_of("[host]\nname = \"x\"\n", 1, "host");
  error_of(kValid + "[[host]]\nname = \"x\"\naddress = 10\n", 16, "host[4].address");
}

TEST(TopologyErrors, OutOfRangeValues) {
  error_of("[lab]\nedge_port = 0\n" + kValid, 2, "lab.edge_port");
  error_of("[lab]\nedge_port = 65536\n" + kValid, 2, "lab.edge_port");
  error_of("[site]\n\nhttp_port = -1\n" + kValid, 3, "site.http_port");
  error_of("[lab]\nname = \"webstack1\"\n" + kValid, 2, "lab.name");  // 9 characters
  error_of("[lab]\nname = \"Web\"\n" + kValid, 2, "lab.name");
  error_of("[lab]\nname = \"1ab\"\n" + kValid, 2, "lab.name");
  error_of("[lab]\nname = \"a_b\"\n" + kValid, 2, "lab.name");
  error_of("[lab]\nname = \"\"\n" + kValid, 2, "lab.name");
  error_of("[site]\nname = \"www.Foo.test\"\n" + kValid, 2, "site.name");
  error_of("[site]\nname = \"www..test\"\n" + kValid, 2, "site.name");
  error_of("[site]\nname = \"" + std::string(254, 'a') + "\"\n" + kValid, 2, "site.name");
  auto e = error_of("[site]\nbalance = \"random\"\n" + kValid, 2, "site.balance");
  EXPECT_TRUE(mentions(e, "roundrobin, leastconn, source")) << e.what();
  error_of(kValid + "[[host]]\nname = \"web-0123456789\"\n", 15, "host[4].name");  // 14 chars
  error_of(kValid + "[[host]]\nname = \"Web\"\n", 15, "host[4].name");
}

TEST(TopologyErrors, Subnet) {
  error_of("[lab]\nsubnet = \"10.77.0.0\"\n" + kValid, 2, "lab.subnet");
  error_of("[lab]\nsubnet = \"10.77.0.256/24\"\n" + kValid, 2, "lab.subnet");
  error_of("[lab]\nsubnet = \"10.77.0.0/33\"\n" + kValid, 2, "lab.subnet");
  error_of("[lab]\nsubnet = \"10.77.0.0/15\"\n" + kValid, 2, "lab.subnet");
  error_of("[lab]\nsubnet = \"10.77.0.0/30\"\n" + kValid, 2, "lab.subnet");
  auto e = error_of("[lab]\nsubnet = \"10.77.0.5/24\"\n" + kValid, 2, "lab.subnet");
  EXPECT_TRUE(mentions(e, "10.77.0.0/24")) << e.what();
}

TEST(TopologyErrors, NoHosts) {
  auto e = error_of("[lab]\nname = \"webstack\"\n", 0, "host");
  EXPECT_TRUE(mentions(e, "[[host]]")) << e.what();
  error_of("", 0, "host");
}

TEST(TopologyErrors, MissingHostKeysPointAtTheHostTable) {
  error_of(kLb + "[[host]]\naddress = \"10.77.0.11\"\nroles = [\"web\"]\n", 5, "host[2].name");
  error_of(kLb + "[[host]]\nname = \"web-01\"\nroles = [\"web\"]\n", 5, "host[2].address");
  error_of(kLb + "\n[[host]]\nname = \"web-01\"\naddress = \"10.77.0.11\"\n", 6, "host[2].roles");
}

// ---------------------------------------------------------------------------------------------
// Names and addresses.

TEST(TopologyErrors, DuplicateHostName) {
  auto e = error_of(kValid + "[[host]]\nname = \"web-01\"\n", 15, "host[4].name");
  EXPECT_TRUE(mentions(e, "host[2]")) << e.what();
}

TEST(TopologyErrors, DuplicateAddress) {
  // The address of the third host, on line 12.
  auto e =
      error_of(kLb + kPrimary +
                   "[[host]]\nname = \"client\"\naddress = \"10.77.0.10\"\nroles = [\"client\"]\n",
               12, "host[3].address");
  EXPECT_TRUE(mentions(e, "lb-01")) << e.what();
}

TEST(TopologyErrors, AddressesOutsideOrReserved) {
  const auto with_address = [](const std::string& address) {
    return kValid + "[[host]]\nname = \"web-03\"\naddress = \"" + address + "\"\n";
  };
  auto e = error_of(with_address("10.78.0.13"), 16, "host[4].address");
  EXPECT_TRUE(mentions(e, "outside")) << e.what();
  e = error_of(with_address("10.77.0.0"), 16, "host[4].address");
  EXPECT_TRUE(mentions(e, "network")) << e.what();
  e = error_of(with_address("10.77.0.255"), 16, "host[4].address");
  EXPECT_TRUE(mentions(e, "broadcast")) << e.what();
  e = error_of(with_address("10.77.0.1"), 16, "host[4].address");
  EXPECT_TRUE(mentions(e, "gateway")) << e.what();
  error_of(with_address("10.77.0"), 16, "host[4].address");
  error_of(with_address("10.77.0.013"), 16, "host[4].address");
  error_of(with_address("10.77.0.13 "), 16, "host[4].address");
  // Inside a custom subnet, checked against it.
  error_of("[lab]\nsubnet = \"10.1.2.0/29\"\n" + kValid, 5, "host[1].address");
}

// ---------------------------------------------------------------------------------------------
// Roles.

TEST(TopologyErrors, Roles) {
  const auto with_roles = [](const std::string& roles) {
    return kValid + "[[host]]\nname = \"web-03\"\naddress = \"10.77.0.13\"\nroles = " + roles +
           "\n";
  };
  auto e = error_of(with_roles("[\"web\", \"cache\"]"), 17, "host[4].roles");
  EXPECT_TRUE(mentions(e, "unknown role \"cache\"")) << e.what();
  e = error_of(with_roles("[\"web\", \"web\"]"), 17, "host[4].roles");
  EXPECT_TRUE(mentions(e, "duplicate role")) << e.what();
  error_of(with_roles("[]"), 17, "host[4].roles");
  // A role on its own line: that line.
  error_of(with_roles("[\n  \"web\",\n  \"bd\",\n]"), 19, "host[4].roles");
}

TEST(TopologyErrors, DbKeyWithoutDbRole) {
  auto e = error_of(kValid +
                        "[[host]]\nname = \"web-03\"\naddress = \"10.77.0.13\"\n"
                        "db = \"replica\"\nroles = [\"web\"]\n",
                    17, "host[4].db");
  EXPECT_TRUE(mentions(e, "role \"db\"")) << e.what();
}

TEST(TopologyErrors, DbRoleWithoutDbKey) {
  error_of(kValid + "\n[[host]]\nname = \"web-03\"\naddress = \"10.77.0.13\"\nroles = [\"db\"]\n",
           15, "host[4].db");
}

TEST(TopologyErrors, DbValue) {
  error_of(kLb + kPrimary + kClient +
               "[[host]]\nname = \"web-02\"\naddress = \"10.77.0.12\"\nroles = [\"db\"]\n"
               "db = \"secondary\"\n",
           18, "host[4].db");
}

TEST(TopologyErrors, TwoPrimaries) {
  auto e = error_of(
      kValid +
          "[[host]]\nname = \"web-02\"\naddress = \"10.77.0.12\"\nroles = [\"web\", \"db\"]\n"
          "db = \"primary\"\n",
      18, "host[4].db");
  EXPECT_TRUE(mentions(e, "two primaries")) << e.what();
  EXPECT_TRUE(mentions(e, "web-01")) << e.what();
  EXPECT_TRUE(mentions(e, "web-02")) << e.what();
}

TEST(TopologyErrors, ReplicaWithoutPrimary) {
  auto e = error_of(kLb +
                        "[[host]]\nname = \"web-01\"\naddress = \"10.77.0.11\"\n"
                        "roles = [\"web\", \"db\"]\ndb = \"replica\"\n" +
                        kClient,
                    9, "host[2].db");
  EXPECT_TRUE(mentions(e, "primary")) << e.what();
}

TEST(TopologyErrors, NoDatabase) {
  auto e = error_of(
      kLb + "[[host]]\nname = \"web-01\"\naddress = \"10.77.0.11\"\nroles = [\"web\"]\n" + kClient,
      0, "host");
  EXPECT_TRUE(mentions(e, "the site needs a database primary")) << e.what();
}

TEST(TopologyErrors, NeedsALoadBalancer) {
  auto e = error_of(kPrimary + kClient, 0, "host");
  EXPECT_TRUE(mentions(e, "load balancer")) << e.what();
}

TEST(TopologyErrors, NeedsAWebHost) {
  auto e = error_of(kLb +
                        "[[host]]\nname = \"db-01\"\naddress = \"10.77.0.11\"\nroles = [\"db\"]\n"
                        "db = \"primary\"\n" +
                        kClient,
                    0, "host");
  EXPECT_TRUE(mentions(e, "web host")) << e.what();
}

TEST(TopologyErrors, NeedsExactlyOneClient) {
  auto e = error_of(kLb + kPrimary, 0, "host");
  EXPECT_TRUE(mentions(e, "client")) << e.what();
  e = error_of(kValid +
                   "[[host]]\nname = \"client-2\"\naddress = \"10.77.0.101\"\n"
                   "roles = [\"client\"]\n",
               17, "host[4].roles");
  EXPECT_TRUE(mentions(e, "second client")) << e.what();
}

TEST(TopologyErrors, AtMostOneMonitorAndDistinctEdgePorts) {
  const std::string mon =
      "[[host]]\nname = \"mon-01\"\naddress = \"10.77.0.20\"\nroles = [\"monitor\"]\n";
  const Topology t = parse_topology(kValid + mon, "site.toml");
  ASSERT_NE(t.monitor(), nullptr);
  EXPECT_EQ(t.monitor()->name, "mon-01");
  EXPECT_EQ(parse_topology(kValid, "site.toml").monitor(), nullptr);
  auto e = error_of(kValid + mon +
                        "[[host]]\nname = \"mon-02\"\naddress = \"10.77.0.21\"\n"
                        "roles = [\"monitor\"]\n",
                    21, "host[5].roles");
  EXPECT_TRUE(mentions(e, "second monitor")) << e.what();
  e = error_of("[lab]\nprometheus_port = 8080\n" + kValid + mon, 0, "lab.prometheus_port");
  EXPECT_TRUE(mentions(e, "127.0.0.1:8080")) << e.what();
  // Without a monitor host the edge publishes no Prometheus: no clash.
  EXPECT_NO_THROW(parse_topology("[lab]\nprometheus_port = 8080\n" + kValid, "site.toml"));
}

TEST(TopologyErrors, LoadBalancerPairAndVirtualAddresses) {
  const std::string lb2 =
      "[[host]]\nname = \"lb-02\"\naddress = \"10.77.0.13\"\nroles = [\"lb\"]\n";
  // Two balancers and no shared address: clients would not know where to go.
  auto e = error_of(kValid + lb2, 0, "lb.virtual_addresses");
  EXPECT_TRUE(mentions(e, "2 load balancers")) << e.what();
  const std::string ap = "[lb]\nvirtual_addresses = [\"10.77.0.5\"]\n";
  const Topology t = parse_topology(ap + kValid + lb2, "site.toml");
  EXPECT_EQ(t.lb_mode, "active-passive");
  EXPECT_EQ(t.site_addresses(), std::vector<std::string>{"10.77.0.5"});
  // A host's own address, outside the subnet, the wrong count for the mode.
  e = error_of("[lb]\nvirtual_addresses = [\"10.77.0.10\"]\n" + kValid + lb2, 2,
               "lb.virtual_addresses");
  EXPECT_TRUE(mentions(e, "lb-01")) << e.what();
  e = error_of("[lb]\nvirtual_addresses = [\"10.78.0.5\"]\n" + kValid + lb2, 2,
               "lb.virtual_addresses");
  EXPECT_TRUE(mentions(e, "outside")) << e.what();
  e = error_of(
      "[lb]\nmode = \"active-active\"\nvirtual_addresses = [\"10.77.0.5\"]\n" + kValid + lb2, 3,
      "lb.virtual_addresses");
  EXPECT_TRUE(mentions(e, "active-active needs 2")) << e.what();
  e = error_of("[lb]\nmode = \"both\"\n" + kValid, 2, "lb.mode");
  EXPECT_TRUE(mentions(e, "active-passive")) << e.what();
  // Active-active: two addresses, exactly two balancers.
  const Topology aa = parse_topology(
      "[lb]\nmode = \"active-active\"\nvirtual_addresses = [\"10.77.0.5\", \"10.77.0.6\"]\n" +
          kValid + lb2,
      "site.toml");
  EXPECT_EQ(aa.site_addresses(), (std::vector<std::string>{"10.77.0.5", "10.77.0.6"}));
}

TEST(TopologyErrors, ClientHasNoOtherRole) {
  auto e = error_of(kLb + kPrimary +
                        "[[host]]\nname = \"client\"\naddress = \"10.77.0.100\"\n"
                        "roles = [\"client\", \"web\"]\n",
                    13, "host[3].roles");
  EXPECT_TRUE(mentions(e, "client")) << e.what();
}

// ---------------------------------------------------------------------------------------------
// Ports on one host.

TEST(TopologyErrors, WebPortEqualsAppPort) {
  auto e = error_of("[site]\nweb_port = 8080\n" + kValid, 2, "site.web_port");
  EXPECT_TRUE(mentions(e, "web-01")) << e.what();
  EXPECT_TRUE(mentions(e, "8080")) << e.what();
  error_of("[site]\nweb_port = 8000\napp_port = 8000\n" + kValid, 3, "site.app_port");
}

TEST(TopologyErrors, LoadBalancerAndWebOnOneHostNeedDistinctPorts) {
  const std::string lb_web =
      "[[host]]\nname = \"lb-01\"\naddress = \"10.77.0.10\"\nroles = [\"lb\", \"web\"]\n";
  auto e = error_of(lb_web + kPrimary + kClient, 4, "host[1].roles");
  EXPECT_TRUE(mentions(e, "site.http_port")) << e.what();
  EXPECT_TRUE(mentions(e, "site.web_port")) << e.what();
  // With distinct ports, fine.
  const Topology t =
      parse_topology("[site]\nhttp_port = 8000\n" + lb_web + kPrimary + kClient, "site.toml");
  EXPECT_TRUE(t.hosts[0].has(Role::Web));
}

TEST(TopologyErrors, DbPortOnAWebAndDbHost) {
  auto e = error_of("[site]\ndb_port = 8080\n" + kValid, 10, "host[2].roles");
  EXPECT_TRUE(mentions(e, "site.db_port")) << e.what();
  // On hosts without both roles, the ports may coincide.
  const Topology t = parse_topology(
      "[site]\ndb_port = 8080\n" + kLb +
          "[[host]]\nname = \"web-01\"\naddress = \"10.77.0.11\"\nroles = [\"web\"]\n"
          "[[host]]\nname = \"db-01\"\naddress = \"10.77.0.12\"\nroles = [\"db\"]\n"
          "db = \"primary\"\n" +
          kClient,
      "site.toml");
  EXPECT_EQ(t.db_port, 8080);
}

TEST(TopologyReserved, EdgeS6AndNetAreNotHostNames) {
  for (const std::string reserved : {"edge", "s6", "net"}) {
    std::string text(default_topology_text());
    const std::string lb = "name = \"lb-01\"";
    const auto at = text.find(lb);
    ASSERT_NE(at, std::string::npos);
    text.replace(at, lb.size(), "name = \"" + reserved + "\"");
    try {
      parse_topology(text, "site.toml");
      ADD_FAILURE() << "accepted a host named " << reserved;
    } catch (const TopologyError& e) {
      EXPECT_NE(std::string(e.what()).find("reserved"), std::string::npos) << e.what();
      EXPECT_EQ(e.file(), "site.toml");
    }
  }
}

// Real servers: who administers them ([deploy]), how SSH reaches each host and which
// interface carries its address.
TEST(TopologyDeploy, AdminAddressesSshAndInterface) {
  const Topology t = parse_topology(
      kLb + "ssh = \"lb-01.example.com\"\ninterface = \"ens3\"\n" + kPrimary + kClient +
          "[deploy]\nadmin_addresses = [\"192.0.2.10\", \"198.51.100.0/24\"]\nssh_user = \"ops\"\n",
      "site.toml");
  EXPECT_EQ(t.admin_addresses, (std::vector<std::string>{"192.0.2.10", "198.51.100.0/24"}));
  EXPECT_EQ(t.ssh_user, "ops");
  EXPECT_EQ(t.find("lb-01")->ssh, "lb-01.example.com");
  EXPECT_EQ(t.find("lb-01")->interface, "ens3");
  EXPECT_EQ(t.find("web-01")->ssh, "");
  EXPECT_EQ(t.find("web-01")->interface, "eth0");
  EXPECT_TRUE(default_topology().admin_addresses.empty());

  auto e = error_of(kValid + "[deploy]\nadmin_addresses = [\"everyone\"]\n", 15,
                    "deploy.admin_addresses");
  EXPECT_TRUE(mentions(e, "\"everyone\"")) << e.what();
  error_of(kValid + "[deploy]\nadmin_addresses = []\n", 15, "deploy.admin_addresses");
  error_of(kValid + "[deploy]\nport = 22\n", 15, "deploy.port");
  e = error_of(kLb + "interface = \"eth0; rm\"\n" + kPrimary + kClient, 5, "host[1].interface");
  EXPECT_TRUE(mentions(e, "interface name")) << e.what();
  error_of(kLb + "ssh = \"a b\"\n" + kPrimary + kClient, 5, "host[1].ssh");
}

}  // namespace

TEST(TopologyTls, HttpsPortAndAGivenCertificate) {
  namespace fs = std::filesystem;
  const auto dir = fs::temp_directory_path() / ("webstack-topo-tls-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "site.crt") << "cert\n";
  std::ofstream(dir / "site.key") << "key\n";
  const auto file = (dir / "site.toml").string();
  std::ofstream(file) << "[site]\nhttps_port = 8443\ntls_certificate = \"site.crt\"\n"
                      << "tls_key = \"" << (dir / "site.key").string() << "\"\n"
                      << kValid;
  const Topology t = load_topology_file(file);
  EXPECT_EQ(t.https_port, 8443);
  // Relative to the topology file's directory; absolute as given.
  EXPECT_EQ(t.tls_certificate, (dir / "site.crt").string());
  EXPECT_EQ(t.tls_key, (dir / "site.key").string());
  fs::remove_all(dir);
}

TEST(TopologyErrors, TlsCertificateAndKeyGoTogetherAndMustExist) {
  auto e =
      error_of("[site]\ntls_certificate = \"/etc/hostname\"\n" + kValid, 2, "site.tls_certificate");
  EXPECT_TRUE(mentions(e, "give both or neither")) << e.what();
  e = error_of("[site]\ntls_certificate = \"/no/such.crt\"\ntls_key = \"/no/such.key\"\n" + kValid,
               2, "site.tls_certificate");
  EXPECT_TRUE(mentions(e, "no such file: /no/such.crt")) << e.what();
  error_of("[site]\nhttps_port = 80\n" + kValid, 2, "site.https_port");
}

TEST(TopologyApp, EachWebHostChoosesItsApplicationServer) {
  const Topology t = parse_topology(kLb + kPrimary + "app = \"php\"\n" + kClient, "site.toml");
  EXPECT_EQ(t.find("web-01")->app, "php");
  EXPECT_EQ(t.find("lb-01")->app, "webstack");  // the default, unused off web hosts
  auto e = error_of(kLb + kPrimary + "app = \"ruby\"\n" + kClient, 10, "host[2].app");
  EXPECT_TRUE(mentions(e, "webstack, php, node")) << e.what();
  error_of(kLb + "app = \"node\"\n" + kPrimary + kClient, 5, "host[1].app");
}
