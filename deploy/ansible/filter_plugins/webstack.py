# Filters for the webstack playbook (loaded from the directory beside site.yml).
#
#   gtid_covers:  "0-1-29,1-2-3" | gtid_covers("0-1-17")  -> True
#     A MariaDB GTID position includes another: in every replication domain of `want`,
#     a sequence number at least as high (they only grow in gtid_strict_mode). The same
#     rule as webstack/src/failover/decide.cpp (gtid_covers), which the lab's `up` and the
#     failover manager use; MASTER_GTID_WAIT is not enough, it looks at gtid_slave_pos
#     only, which lacks a former primary's own transactions.
#   address_in:   "192.0.2.7" | address_in(["192.0.2.0/24", "198.51.100.2"])  -> True
#     An IP address is one of the addresses or inside one of the CIDR blocks (what the
#     firewall's `ip saddr { ... } tcp dport 22 accept` admits). Standard library only:
#     the controller needs no netaddr.
#   haproxy_server:  show_stat_stdout | haproxy_server("web", "web-01")
#     The row of `show stat` (HAProxy's runtime API, CSV) for one server as a dict
#     (pxname, svname, scur, status, ...); {} when the backend has no such server.
#   mariadb_fields:  stdout | mariadb_fields
#     The "Name: value" lines of the mariadb client's vertical output (`...\G`, as
#     `SHOW SLAVE STATUS\G`) as one dict; {} for no output (not a replica).
from __future__ import annotations

import ipaddress

from ansible.errors import AnsibleFilterError


def _positions(text):
    out = {}
    for part in str(text or "").replace("\n", ",").split(","):
        part = part.strip()
        if not part:
            continue
        fields = part.split("-")
        if len(fields) != 3 or not all(f.isdigit() for f in fields):
            raise AnsibleFilterError("not a GTID position: %r" % part)
        domain, _server, seq = (int(f) for f in fields)
        out[domain] = max(out.get(domain, 0), seq)
    return out


def gtid_covers(have, want):
    have_pos = _positions(have)
    return all(have_pos.get(d, -1) >= seq for d, seq in _positions(want).items())


def address_in(address, networks):
    try:
        ip = ipaddress.ip_address(str(address).strip())
    except ValueError as e:
        raise AnsibleFilterError("not an IP address: %r" % address) from e
    for n in networks or []:
        try:
            if ip in ipaddress.ip_network(str(n).strip(), strict=False):
                return True
        except ValueError as e:
            raise AnsibleFilterError("not an address or CIDR block: %r" % n) from e
    return False


def haproxy_server(show_stat, backend, server):
    lines = str(show_stat or "").splitlines()
    header = None
    for line in lines:
        if line.startswith("# "):
            header = [h for h in line[2:].split(",")]
            continue
        if header is None or not line.strip():
            continue
        row = dict(zip(header, line.split(",")))
        if row.get("pxname") == backend and row.get("svname") == server:
            return row
    return {}


def mariadb_fields(text):
    out = {}
    for line in str(text or "").splitlines():
        name, sep, value = line.strip().partition(":")
        if not sep or not name or not all(c.isalnum() or c == "_" for c in name):
            continue
        out[name] = value.strip()
    return out


class FilterModule:
    def filters(self):
        return {
            "gtid_covers": gtid_covers,
            "address_in": address_in,
            "haproxy_server": haproxy_server,
            "mariadb_fields": mariadb_fields,
        }
