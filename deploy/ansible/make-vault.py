#!/usr/bin/python3
"""Writes the secrets of a webstack site, as the vault's YAML, on stdout.

    ./make-vault.py -i inventory.yml --ca-dir ~/webstack-ca \
        | ansible-vault encrypt --output group_vars/all/vault.yml

Makes what the lab's `webstack up` makes (webstack/src/lab/site.cpp and tls.cpp): five
passwords of 24 characters of [A-Za-z0-9]; a CA (EC P-256, 10 years, CA:TRUE pathlen:0)
kept in --ca-dir (made there when it holds no ca.crt and ca.key, used again when it does:
keep that directory off the servers); the site's certificate (825 days, serverAuth, SANs:
the site's name and each load balancer's address) with its key; and one certificate per
database host (SANs: its address and name) with its key. With --site-cert and --site-key
the site's PEM is that certificate (with its chain) and key instead, and --site-ca adds
the CA that signed it to vault_tls_ca_crt (the blackbox prober verifies the site against
that file).

The plain text goes to stdout only: pipe it into ansible-vault, never into a file. The
inventory is read with `ansible-inventory`; its hosts' `address`, groups `lb` and `db` and
`webstack_site_name` are used. Needs openssl.
"""
import argparse
import json
import os
import secrets
import string
import subprocess
import sys
import tempfile

ALPHABET = string.ascii_letters + string.digits


def password():
    return "".join(secrets.choice(ALPHABET) for _ in range(24))


def openssl(*args):
    r = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("make-vault: openssl %s failed: %s" % (args[0], (r.stderr or r.stdout).strip()))


def read(path):
    with open(path, encoding="ascii") as f:
        return f.read()


def make_ca(ca_dir, site):
    crt, key = os.path.join(ca_dir, "ca.crt"), os.path.join(ca_dir, "ca.key")
    if os.path.exists(crt) and os.path.exists(key):
        return crt, key
    if os.path.exists(crt) or os.path.exists(key):
        sys.exit("make-vault: %s holds only one of ca.crt and ca.key" % ca_dir)
    os.makedirs(ca_dir, mode=0o700, exist_ok=True)
    old = os.umask(0o077)
    try:
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-keyout", key, "-out", crt, "-days", "3650", "-sha256",
                "-subj", "/CN=webstack %s CA" % site,
                "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    finally:
        os.umask(old)
    os.chmod(crt, 0o644)
    print("make-vault: made the CA in %s (keep ca.key off the servers)" % ca_dir, file=sys.stderr)
    return crt, key


def issue(work, ca, cn, sans):
    """A key and a certificate signed by `ca` for `cn`; returns (cert PEM, key PEM)."""
    key, csr, ext, crt = (os.path.join(work, cn + s) for s in (".key", ".csr", ".ext", ".crt"))
    with open(ext, "w", encoding="ascii") as f:
        f.write("basicConstraints = critical, CA:FALSE\n"
                "keyUsage = critical, digitalSignature, keyEncipherment\n"
                "extendedKeyUsage = serverAuth\n"
                "subjectAltName = %s\n" % sans)
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", key, "-out", csr, "-subj", "/CN=" + cn)
    openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-set_serial",
            str(secrets.randbits(63)), "-days", "825", "-sha256", "-extfile", ext, "-out", crt)
    return read(crt), read(key)


def block(text, indent):
    pad = " " * indent
    return "|\n" + "".join(pad + line + "\n" for line in text.strip().splitlines())


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-i", "--inventory", required=True, help="the inventory webstack deploy wrote")
    p.add_argument("--ca-dir", required=True, help="where the CA's certificate and key are kept")
    p.add_argument("--site-cert", help="the site's own certificate (PEM, with its chain)")
    p.add_argument("--site-key", help="its key (PEM)")
    p.add_argument("--site-ca", help="the CA that signed --site-cert (PEM), for the prober")
    a = p.parse_args()
    if bool(a.site_cert) != bool(a.site_key):
        sys.exit("make-vault: give both --site-cert and --site-key, or neither")
    if sys.stdout.isatty():
        sys.exit("make-vault: stdout is a terminal: pipe it into "
                 "`ansible-vault encrypt --output group_vars/all/vault.yml`")

    r = subprocess.run(["ansible-inventory", "-i", a.inventory, "--list"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("make-vault: ansible-inventory failed: " + r.stderr.strip())
    inv = json.loads(r.stdout)
    hostvars = inv.get("_meta", {}).get("hostvars", {})

    def group(name):
        return inv.get(name, {}).get("hosts", [])

    site = next((v["webstack_site_name"] for v in hostvars.values()
                 if "webstack_site_name" in v), None)
    if not site:
        sys.exit("make-vault: the inventory has no webstack_site_name")
    for h in group("lb") + group("db"):
        if "address" not in hostvars.get(h, {}):
            sys.exit("make-vault: host %s has no address in the inventory" % h)

    ca = make_ca(a.ca_dir, site)
    ca_pem = read(ca[0])
    with tempfile.TemporaryDirectory(prefix="make-vault-") as work:
        if a.site_cert:
            cert, key = read(a.site_cert), read(a.site_key)
            if a.site_ca:
                ca_pem = ca_pem.rstrip("\n") + "\n" + read(a.site_ca)
        else:
            sans = ",".join(["DNS:" + site] + ["IP:" + hostvars[h]["address"] for h in group("lb")])
            cert, key = issue(work, ca, site, sans)
        site_pem = cert.rstrip("\n") + "\n" + key
        db = {h: issue(work, ca, h, "IP:%s,DNS:%s" % (hostvars[h]["address"], h))
              for h in group("db")}

    out = ["# webstack secrets for %s (make-vault.py). Keep this file encrypted." % site]
    for name in ("db_app_password", "db_probe_password", "db_repl_password",
                 "db_failover_password", "haproxy_stats_password"):
        out.append("vault_%s: \"%s\"" % (name, password()))
    out.append("vault_tls_ca_crt: " + block(ca_pem, 2).rstrip("\n"))
    out.append("vault_tls_site_pem: " + block(site_pem, 2).rstrip("\n"))
    out.append("vault_mysql_tls:" + ("" if db else " {}"))
    for h, (cert, key) in db.items():
        out.append("  %s:" % h)
        out.append("    crt: " + block(cert, 6).rstrip("\n"))
        out.append("    key: " + block(key, 6).rstrip("\n"))
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
