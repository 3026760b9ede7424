# -*- coding: utf-8 -*-
# Copyright: llamacpp.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
name: nft_allowlist
short_description: The nftables ruleset that admits one TCP port only from given sources
version_added: 0.1.0
description:
  - Returns the text of an nftables file holding one table of its own. In it, the TCP O(port) accepts
    connections only from loopback and O(sources); every other packet to that port is counted and dropped.
  - Other ports and other tables are left alone. The file declares and deletes the table first, so
    C(nft -f) replaces it atomically.
  - The roles use it for rpc-server on the workers, which has no authentication, and for llama-server's
    API port on the main node.
author:
  - llamacpp.cluster maintainers (@llamacpp-cluster)
options:
  _input:
    description: The table name (lower-case letters, digits and C(_)).
    type: str
    required: true
  port:
    description: The TCP port to guard.
    type: int
    required: true
  sources:
    description: Addresses or networks (CIDR), IPv4 or IPv6, allowed to connect.
    type: list
    elements: str
    required: true
  comment:
    description: The comment of the drop rule, shown by C(nft list ruleset).
    type: str
    default: not on the allowlist
"""

EXAMPLES = r"""
- name: Write the allowlist of the API port
  ansible.builtin.copy:
    content: "{{ 'llamacpp_api' | llamacpp.cluster.nft_allowlist(port=8080, sources=['10.0.1.0/24']) }}"
    dest: /etc/llamacpp/api-firewall.nft
    mode: "0644"
"""

RETURN = r"""
_value:
  description: The nftables ruleset.
  type: str
"""

from ansible.errors import AnsibleFilterError
from ansible_collections.llamacpp.cluster.plugins.module_utils.nft import AllowlistError, ruleset


def nft_allowlist(table, port, sources, comment="not on the allowlist"):
    try:
        return ruleset(table, port, list(sources), comment)
    except AllowlistError as exc:
        raise AnsibleFilterError("nft_allowlist: %s" % exc)


class FilterModule:
    """llama.cpp cluster filters."""

    def filters(self):
        return {"nft_allowlist": nft_allowlist}
