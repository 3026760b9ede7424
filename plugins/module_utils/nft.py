# -*- coding: utf-8 -*-
# Copyright: llamacpp.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The nftables allowlist of one TCP port: the ruleset text of a table of the collection's own.

Both services without a network boundary of their own use it: rpc-server on the workers
(no authentication at all) and llama-server on the main node (its API port)."""

from __future__ import annotations

import ipaddress
import re

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,30}$")


class AllowlistError(ValueError):
    """A source, port or name the allowlist cannot hold; the message names the fix."""


def parse_sources(sources):
    """Split sources (addresses or networks, as strings) into sorted, unique IPv4 and IPv6
    network strings; a host address becomes a /32 or /128 written as the plain address."""
    v4, v6 = set(), set()
    for source in sources:
        text = str(source).strip()
        try:
            network = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise AllowlistError("'%s' is not an IP address or network (CIDR), such as 10.0.1.5 or 10.0.1.0/24"
                                 % text)
        single = network.num_addresses == 1
        written = str(network.network_address) if single else str(network)
        (v4 if network.version == 4 else v6).add((network.network_address, network.prefixlen, written))
    return [entry[2] for entry in sorted(v4)], [entry[2] for entry in sorted(v6)]


def ruleset(table, port, sources, comment):
    """The nftables ruleset of table: TCP port is accepted from loopback and sources only, every
    other packet to it is counted and dropped; other ports and other tables are left alone. The
    table is declared and deleted first, so loading the file again replaces it atomically."""
    if not _NAME.match(str(table)):
        raise AllowlistError("table name '%s' must be lower-case letters, digits and _" % table)
    try:
        port = int(port)
    except (TypeError, ValueError):
        raise AllowlistError("port '%s' is not a number" % port)
    if not 1 <= port <= 65535:
        raise AllowlistError("port %d is not between 1 and 65535" % port)
    if '"' in comment or "\n" in comment:
        raise AllowlistError("the rule comment may not hold quotes or newlines")
    v4, v6 = parse_sources(sources)
    lines = ["table inet %s" % table, "delete table inet %s" % table, "", "table inet %s {" % table]
    for name, kind, networks in (("allow_v4", "ipv4_addr", v4), ("allow_v6", "ipv6_addr", v6)):
        if networks:
            lines += ["  set %s {" % name, "    type %s" % kind, "    flags interval",
                      "    elements = { %s }" % ", ".join(networks), "  }"]
    lines += ["", "  chain input {",
              "    type filter hook input priority filter - 10; policy accept;",
              "    tcp dport != %d accept" % port,
              '    iif "lo" accept']
    if v4:
        lines.append("    ip saddr @allow_v4 accept")
    if v6:
        lines.append("    ip6 saddr @allow_v6 accept")
    lines += ['    counter drop comment "%s"' % comment, "  }", "}"]
    return "\n".join(lines) + "\n"
