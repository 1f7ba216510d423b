// The webstack command as a user runs it: exit codes, messages, files written.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

namespace {

namespace fs = std::filesystem;

struct CliRun {
  int status = -1;
  std::string output;  // stdout and stderr
};

CliRun webstack(const std::string& args) {
  CliRun r;
  std::string cmd = std::string(WEBSTACK_CLI_PATH) + " " + args + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  std::array<char, 4096> buf{};
  std::size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
  int raw = ::pclose(p);
  r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  return r;
}

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "webstack-cli-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() { fs::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(Cli, ValidatesTheDefaultSite) {
  CliRun r = webstack("validate");
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("<embedded default>: valid"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("web-02"), std::string::npos);
}

TEST(Cli, InitPrintsAFileThatValidates) {
  TempDir dir;
  CliRun init = webstack("init");
  ASSERT_EQ(init.status, 0);
  const std::string file = dir.path() + "/site.toml";
  std::ofstream(file) << init.output;
  CliRun r = webstack("validate -f " + file);
  EXPECT_EQ(r.status, 0) << r.output;
}

TEST(Cli, ABadFileNamesFileLineAndKeyAndWritesNothing) {
  TempDir dir;
  const std::string file = dir.path() + "/bad.toml";
  std::ofstream(file) << "[lab]\nname = \"webstack\"\nsubnet = \"10.77.0.0/24\"\nfoo = 1\n";
  CliRun r = webstack("render -f " + file + " -o " + dir.path() + "/out");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find(file + ":4:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("foo"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir.path() + "/out"));
}

TEST(Cli, AMissingFileIsNamed) {
  CliRun r = webstack("validate -f /nonexistent/site.toml");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("/nonexistent/site.toml"), std::string::npos) << r.output;
}

TEST(Cli, RenderWritesEveryHostsConfigs) {
  TempDir dir;
  CliRun r = webstack("render -o " + dir.path() + " --state-dir /var/lib/webstack/test");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(fs::exists(dir.path() + "/lb-01/haproxy/haproxy.cfg")) << r.output;
  EXPECT_TRUE(fs::exists(dir.path() + "/web-01/nginx/nginx.conf"));
  EXPECT_TRUE(fs::exists(dir.path() + "/web-02/mariadb/my.cnf"));
}

TEST(Cli, NoSubcommandIsAnError) {
  CliRun r = webstack("");
  EXPECT_NE(r.status, 0);
}

// `deploy --target hosts` refuses wrong inputs before anything is rendered or reaches a
// server: each message names what is wrong, and no bundle or vault is left behind.
TEST(Cli, DeployToHostsRefusesWrongInputsAndLeavesNothing) {
  TempDir dir;
  const std::string site = dir.path() + "/site.toml";
  {
    std::string text = webstack("init").output;
    std::ofstream(site) << text << "\n[deploy]\nadmin_addresses = [\"10.0.0.100\"]\n";
  }
  const std::string bundle = dir.path() + "/bundle";
  const std::string vault = dir.path() + "/vault.yml";

  CliRun r = webstack("deploy --target hosts -f " + site);
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("--vault FILE is required"), std::string::npos) << r.output;

  // No vault yet and nothing to encrypt a new one with.
  r = webstack("deploy --target hosts -f " + site + " --vault " + vault + " --bundle " + bundle);
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("give --vault-password-file"), std::string::npos) << r.output;
  r = webstack("deploy --target hosts -f " + site + " --vault " + vault + " --check");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("--check changes nothing"), std::string::npos) << r.output;
  r = webstack("deploy --target hosts -f " + site + " --vault " + vault +
               " --vault-password-file " + dir.path() + "/nonexistent");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find(dir.path() + "/nonexistent: no such file"), std::string::npos)
      << r.output;

  // A topology real servers cannot take (no admin addresses): the topology error, exit 2.
  std::ofstream(vault) << "vault_db_app_password: x\n";
  r = webstack("deploy --target hosts --vault " + vault + " --bundle " + bundle);
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("deploy.admin_addresses: missing"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(bundle));

  // A --bundle directory that holds something else is not ours to replace.
  fs::create_directories(bundle);
  std::ofstream(bundle + "/notes.txt") << "mine\n";
  r = webstack("deploy --target hosts -f " + site + " --vault " + vault + " --bundle " + bundle);
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("holds files but no bundle of an earlier deploy"), std::string::npos)
      << r.output;
  EXPECT_TRUE(fs::exists(bundle + "/notes.txt"));

  // Options of the hosts target are refused for the lab's rolling deploy.
  r = webstack("deploy --check");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("--check is for --target hosts"), std::string::npos) << r.output;
  std::size_t entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir.path())) ++entries;
  EXPECT_EQ(entries, 3u) << "site.toml, vault.yml and bundle only";
}

}  // namespace
