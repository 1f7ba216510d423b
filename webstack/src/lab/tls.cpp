#include "lab/tls.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <vector>

#include "common/process.hpp"
#include "common/text.hpp"

namespace webstack::lab {

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using topo::Role;

void openssl(const std::vector<std::string>& args, const std::string& what) {
  std::vector<std::string> argv = {"openssl"};
  argv.insert(argv.end(), args.begin(), args.end());
  const auto r = run(argv, 60s);
  if (r.exit_code != 0) {
    throw std::runtime_error(
        fmt::format("openssl: {} failed ({}): {}", what, r.exit_code, text::trim(r.err + r.out)));
  }
}

// A certificate made for TLS clients too (a database host's, since `webstack db rebuild`:
// an older lab's is issued again).
bool for_clients_too(const std::string& cert) {
  return run({"openssl", "x509", "-in", cert, "-noout", "-ext", "extendedKeyUsage"}, 30s)
             .out.find("Client Authentication") != std::string::npos;
}

void own(const std::string& path, uid_t uid, gid_t gid, mode_t mode) {
  if (::chown(path.c_str(), uid, gid) != 0 || ::chmod(path.c_str(), mode) != 0) {
    throw std::runtime_error(
        fmt::format("cannot set owner/mode of {}: {}", path, std::strerror(errno)));
  }
}

void dir(const std::string& path, uid_t uid, gid_t gid, mode_t mode) {
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec) throw std::runtime_error(fmt::format("cannot create {}: {}", path, ec.message()));
  own(path, uid, gid, mode);
}

bool exists(const std::string& path) {
  std::error_code ec;
  return fs::exists(path, ec);
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A key (EC P-256) and a certificate signed by the lab CA for `cn` with `sans`
// ("DNS:x,IP:y"). The key is written into `key` (a directory only its owner enters).
// `usage`: "serverAuth", or "serverAuth, clientAuth" for a database host (it is also
// the client of the other's TLS stream, `webstack db rebuild`).
void issue(const std::string& secrets, const std::string& ca_cert, const std::string& ca_key,
           const std::string& cn, const std::string& sans, const std::string& key,
           const std::string& cert, const std::string& usage) {
  const std::string csr = key + ".csr", ext = key + ".ext";
  std::ofstream(ext) << "basicConstraints = critical, CA:FALSE\n"
                     << "keyUsage = critical, digitalSignature, keyEncipherment\n"
                     << "extendedKeyUsage = " << usage << "\n"
                     << "subjectAltName = " << sans << "\n";
  openssl({"req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
           "-keyout", key, "-out", csr, "-subj", "/CN=" + cn},
          "key and request for " + cn);
  openssl(
      {"x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial", "-CAserial",
       secrets + "/ca.srl", "-days", "825", "-sha256", "-extfile", ext, "-out", cert},
      "certificate for " + cn);
  std::error_code ec;
  fs::remove(csr, ec);
  fs::remove(ext, ec);
}

}  // namespace

std::string lab_ca_path(const std::string& state_dir) {
  return state_dir + "/tls/ca.crt";
}

std::string site_pem_path(const std::string& state_dir) {
  return state_dir + "/secrets/tls/site.pem";
}

void ensure_lab_tls(const topo::Topology& t, const std::string& state_dir, uid_t mysql_uid,
                    gid_t mysql_gid) {
  const std::string pub = state_dir + "/tls", secrets = state_dir + "/secrets/tls";
  dir(pub, 0, 0, 0755);
  dir(secrets, 0, 0, 0700);
  const std::string ca_cert = lab_ca_path(state_dir), ca_key = secrets + "/ca.key";
  if (!exists(ca_cert) || !exists(ca_key)) {
    openssl({"req",      "-x509",
             "-newkey",  "ec",
             "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes",   "-keyout",
             ca_key,     "-out",
             ca_cert,    "-days",
             "3650",     "-sha256",
             "-subj",    "/CN=webstack lab " + t.name + " CA",
             "-addext",  "basicConstraints=critical,CA:TRUE,pathlen:0",
             "-addext",  "keyUsage=critical,keyCertSign,cRLSign"},
            "the lab CA");
    own(ca_key, 0, 0, 0600);
    own(ca_cert, 0, 0, 0644);
  }

  // The site's PEM is made again whenever what it must hold changed: the names and
  // addresses it is for, or the certificate the topology gives (read on every up).
  const std::string pem = site_pem_path(state_dir), made_for = secrets + "/site.for";
  std::string sans = "DNS:" + t.site_name + ",DNS:localhost,IP:127.0.0.1";
  for (const auto* lb : t.with_role(Role::LoadBalancer)) sans += ",IP:" + lb->address;
  const std::string wanted =
      t.tls_certificate.empty() ? sans : "given:" + t.tls_certificate + "," + t.tls_key;
  std::string current;
  if (exists(made_for)) current = text::trim(read_all(made_for));
  if (!exists(pem) || current != wanted || !t.tls_certificate.empty()) {
    std::string cert_text, key_text;
    if (!t.tls_certificate.empty()) {
      cert_text = read_all(t.tls_certificate);
      key_text = read_all(t.tls_key);
    } else {
      issue(secrets, ca_cert, ca_key, t.site_name, sans, secrets + "/site.key", pub + "/site.crt",
            "serverAuth");
      own(pub + "/site.crt", 0, 0, 0644);
      cert_text = read_all(pub + "/site.crt");
      key_text = read_all(secrets + "/site.key");
    }
    if (!cert_text.empty() && cert_text.back() != '\n') cert_text += '\n';
    std::ofstream(pem + ".tmp", std::ios::binary | std::ios::trunc) << cert_text << key_text;
    own(pem + ".tmp", 0, 0, 0600);
    fs::rename(pem + ".tmp", pem);
    std::ofstream(made_for, std::ios::trunc) << wanted << "\n";
  }

  for (const auto* db : t.with_role(Role::Database)) {
    const std::string d = state_dir + "/data/" + db->name + "/tls";
    dir(d, mysql_uid, mysql_gid, 0700);
    if (exists(d + "/server.crt") && exists(d + "/server.key") &&
        for_clients_too(d + "/server.crt")) {
      continue;
    }
    issue(secrets, ca_cert, ca_key, db->name, "IP:" + db->address + ",DNS:" + db->name,
          d + "/server.key", d + "/server.crt", "serverAuth, clientAuth");
    own(d + "/server.key", mysql_uid, mysql_gid, 0600);
    own(d + "/server.crt", mysql_uid, mysql_gid, 0644);
  }
}

}  // namespace webstack::lab
