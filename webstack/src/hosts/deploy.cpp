#include "hosts/deploy.hpp"

#include <fmt/format.h>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>
#include <system_error>

#include "common/process.hpp"
#include "common/text.hpp"

namespace webstack::hosts {

namespace {

namespace fs = std::filesystem;

constexpr std::string_view kVaultHeader = "$ANSIBLE_VAULT;";
constexpr const char* kBundleMarker = ".webstack-bundle";  // a directory this command made

// The directory the bundle is rendered into, and removed again when it was temporary.
class BundleDir {
 public:
  explicit BundleDir(const std::string& wanted) {
    if (wanted.empty()) {
      std::string tmpl = (fs::temp_directory_path() / "webstack-bundle.XXXXXX").string();
      if (::mkdtemp(tmpl.data()) == nullptr) {
        throw std::runtime_error(fmt::format("cannot make a directory like {}", tmpl));
      }
      path_ = tmpl;
      temporary_ = true;
      return;
    }
    path_ = wanted;
    // A bundle of an earlier run is replaced whole (a server that left the topology
    // must not keep its directory); anything else is not ours to remove.
    std::error_code ec;
    if (fs::exists(path_, ec) && !fs::is_empty(path_, ec)) {
      if (!fs::exists(fs::path(path_) / kBundleMarker)) {
        throw std::runtime_error(
            fmt::format("--bundle {}: the directory holds files but no bundle of an earlier "
                        "deploy (no {}): name an empty or new directory",
                        path_, kBundleMarker));
      }
      fs::remove_all(path_);
    }
    fs::create_directories(path_);
    std::ofstream(fs::path(path_) / kBundleMarker)
        << "written by webstack deploy --target hosts; replaced whole by the next one\n";
  }
  ~BundleDir() {
    if (!temporary_) return;
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  BundleDir(const BundleDir&) = delete;
  BundleDir& operator=(const BundleDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  bool temporary_ = false;
};

void require_programs(const DeployOptions& o) {
  for (const char* prog : {"ansible-playbook", "ansible-vault", "ansible-inventory"}) {
    if (!program_in_path(prog)) {
      throw std::runtime_error(fmt::format(
          "{} not found in PATH: install the Debian package ansible on this machine (the "
          "controller)",
          prog));
    }
  }
  // ansible.cfg runs the play with Mitogen's strategy: the Python that runs
  // ansible-playbook (its #! line) must find ansible_mitogen.
  const std::string script = read_text_or_empty(find_in_path("ansible-playbook"));
  std::istringstream shebang(script.starts_with("#!") ? script.substr(2, script.find('\n') - 2)
                                                      : std::string());
  std::vector<std::string> python;
  for (std::string word; shebang >> word;) python.push_back(word);
  if (python.empty()) python = {"python3"};
  python.insert(python.end(), {"-c", "import ansible_mitogen"});
  if (run(python).exit_code != 0) {
    throw std::runtime_error(fmt::format(
        "{} cannot import ansible_mitogen, which ansible.cfg's strategy needs: install the Debian "
        "package ansible-mitogen on this machine (the controller)",
        python.front()));
  }
  for (const char* file : {"site.yml", "ansible.cfg", "make-vault.py"}) {
    if (!fs::is_regular_file(fs::path(o.ansible_dir) / file)) {
      throw std::runtime_error(
          fmt::format("{}/{} is missing: the playbook directory is deploy/ansible of webstack's "
                      "sources (env WEBSTACK_ANSIBLE)",
                      o.ansible_dir, file));
    }
  }
}

// What a run needs of the vault, checked before anything is rendered.
void check_vault_inputs(const DeployOptions& o) {
  if (!o.vault_password_file.empty() && !fs::is_regular_file(o.vault_password_file)) {
    throw std::runtime_error(
        fmt::format("--vault-password-file {}: no such file", o.vault_password_file));
  }
  if (fs::exists(o.vault)) {
    if (!fs::is_regular_file(o.vault) || ::access(o.vault.c_str(), R_OK) != 0) {
      throw std::runtime_error(fmt::format("--vault {}: not a readable file", o.vault));
    }
    return;
  }
  if (o.check) {
    throw std::runtime_error(fmt::format(
        "--vault {}: no such file (--check changes nothing, so it makes no vault either: "
        "deploy once without --check)",
        o.vault));
  }
  if (o.vault_password_file.empty()) {
    throw std::runtime_error(fmt::format(
        "--vault {}: no such file; to make a new one, give --vault-password-file FILE (the "
        "password it is encrypted with)",
        o.vault));
  }
  const fs::path vault(o.vault);
  if (!vault.parent_path().empty() && !fs::is_directory(vault.parent_path())) {
    throw std::runtime_error(
        fmt::format("--vault {}: no directory {}", o.vault, vault.parent_path().string()));
  }
}

// A new vault: make-vault.py's plain text piped into ansible-vault, which writes it
// encrypted next to the final path; renamed into place only when both succeeded.
void make_vault(const topo::Topology& t, const DeployOptions& o, const std::string& inventory) {
  const std::string partial = o.vault + ".partial";
  // Positional parameters, never spliced into the script: no path is shell-parsed.
  std::string script =
      "umask 077 && python3 \"$1\" -i \"$2\" --ca-dir \"$3\" \"${@:6}\" | ansible-vault encrypt "
      "--vault-password-file \"$4\" --output \"$5\"";
  std::vector<std::string> argv = {"bash",
                                   "-o",
                                   "pipefail",
                                   "-c",
                                   script,
                                   "make-vault",
                                   o.ansible_dir + "/make-vault.py",
                                   inventory,
                                   o.ca_dir,
                                   o.vault_password_file,
                                   partial};
  if (!t.tls_certificate.empty()) {
    argv.insert(argv.end(), {"--site-cert", t.tls_certificate, "--site-key", t.tls_key});
  }
  const auto r = run(argv, std::chrono::minutes(2));
  if (r.exit_code != 0) {
    std::error_code ec;
    fs::remove(partial, ec);
    throw std::runtime_error(fmt::format("could not make the vault {}: {}", o.vault,
                                         text::trim(r.err.empty() ? r.out : r.err)));
  }
  fs::rename(partial, o.vault);
  std::printf("made the vault %s (encrypted; the CA is in %s: keep both off the servers)\n",
              o.vault.c_str(), o.ca_dir.c_str());
}

bool encrypted(const std::string& vault) {
  return read_text_or_empty(vault).rfind(kVaultHeader, 0) == 0;
}

}  // namespace

int deploy(const topo::Topology& t, const DeployOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  check_vault_inputs(o);
  require_programs(o);
  auto ropts = o.render;
  ropts.target = render::Target::Hosts;
  ropts.lab = false;  // production intervals
  // Validates everything the servers need (throws before anything is written).
  const auto files = render::render_site(t, ropts);

  BundleDir bundle(o.bundle_dir);
  render::write_files(files, bundle.path());
  std::set<std::string> servers;
  for (const auto& f : files) {
    if (!f.host.empty()) servers.insert(f.host);
  }
  const std::string inventory = bundle.path() + "/inventory.yml";
  std::printf("rendered %zu files for %zu servers into %s%s\n", files.size(), servers.size(),
              bundle.path().c_str(), o.bundle_dir.empty() ? " (removed afterwards)" : "");

  if (!fs::exists(o.vault)) make_vault(t, o, inventory);

  std::vector<std::string> argv = {"ansible-playbook",
                                   "-i",
                                   inventory,
                                   o.ansible_dir + "/site.yml",
                                   "-e",
                                   "bundle_dir=" + bundle.path(),
                                   "-e",
                                   "@" + o.vault};
  if (!o.vault_password_file.empty()) {
    argv.insert(argv.end(), {"--vault-password-file", o.vault_password_file});
  } else if (encrypted(o.vault)) {
    argv.emplace_back("--ask-vault-pass");
  }
  if (o.check) argv.insert(argv.end(), {"--check", "--diff"});
  argv.insert(argv.end(), o.ansible_args.begin(), o.ansible_args.end());
  // The playbook's settings (filter plugins, pipelining), unless the operator has their own.
  ::setenv("ANSIBLE_CONFIG", (o.ansible_dir + "/ansible.cfg").c_str(), 0);
  std::printf("%s\n", describe(argv).c_str());
  const int status = run_attached(argv);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (status == 0 && o.check) {
    std::printf(
        "checked site %s on %zu servers (%.1f s): what a deploy would change is shown "
        "above (changed=N); nothing was changed\n",
        t.site_name.c_str(), servers.size(), seconds);
  } else if (status == 0) {
    std::printf("deployed site %s on %zu servers (%.1f s)\n", t.site_name.c_str(), servers.size(),
                seconds);
  } else {
    std::fprintf(stderr, "webstack: ansible-playbook failed (exit %d) after %.1f s: see above\n",
                 status, seconds);
  }
  return status;
}

}  // namespace webstack::hosts
