// The lab's TLS material, made by `webstack up` in the hardened profile with the openssl
// command line: a certificate authority of the lab's own, a certificate for the site
// (HAProxy's HTTPS) and one per database host (replication over TLS), all signed by it.
// Made once and kept: a later `up` reuses what exists.
//
//   <state>/tls/ca.crt                  the CA (public: the client host and a browser trust it)
//   <state>/tls/site.crt                the site's certificate
//   <state>/secrets/tls/ca.key          the CA's key              (root, 0600, dir 0700)
//   <state>/secrets/tls/site.pem        certificate + key, HAProxy's `crt` (root, 0600)
//   <state>/data/<db>/tls/server.{crt,key}  a database host's (mysql, key 0600, dir 0700)
//
// The site's certificate names the site ([site] name), localhost, 127.0.0.1 (the edge)
// and every load balancer's address. A certificate and key given in the topology
// (site.tls_certificate, site.tls_key) replace the site's; the lab CA is still made for
// replication.
#pragma once

#include <sys/types.h>

#include <string>

#include "topology/topology.hpp"

namespace webstack::lab {

std::string lab_ca_path(const std::string& state_dir);    // <state>/tls/ca.crt
std::string site_pem_path(const std::string& state_dir);  // <state>/secrets/tls/site.pem

// Makes whatever of the above is missing. Throws std::runtime_error naming the openssl
// step that failed (with its output).
void ensure_lab_tls(const topo::Topology& t, const std::string& state_dir, uid_t mysql_uid,
                    gid_t mysql_gid);

}  // namespace webstack::lab
