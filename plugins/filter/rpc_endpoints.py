# -*- coding: utf-8 -*-
# Copyright: llamacpp.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
name: rpc_endpoints
short_description: The llama.cpp RPC endpoints (host:port) of a list of worker hosts
version_added: 0.1.0
description:
  - Returns the C(host:port) endpoint of every worker in the list, in order, for C(llama-server) or
    C(llama-completion --rpc).
  - Uses the endpoint each worker published as C(llamacpp_rpc_worker_endpoint) (set by the
    M(llamacpp.cluster.rpc_worker) role); otherwise builds it from C(llamacpp_rpc_worker_bind), or the
    worker's C(ansible_facts.default_ipv4.address), and C(llamacpp_rpc_worker_port) (default 50052).
  - IPv6 addresses are put in brackets. A worker with no address known fails with its name.
author:
  - llamacpp.cluster maintainers (@llamacpp-cluster)
options:
  _input:
    description: Inventory hostnames of the workers, usually C(groups['llama_workers']).
    type: list
    elements: str
    required: true
  hostvars:
    description: The play's C(hostvars).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Build the --rpc list of the main node
  ansible.builtin.set_fact:
    rpc_list: "{{ groups['llama_workers'] | llamacpp.cluster.rpc_endpoints(hostvars) | join(',') }}"
"""

RETURN = r"""
_value:
  description: One C(host:port) string per worker, in the input's order.
  type: list
  elements: str
  sample: ["10.0.1.7:50052", "[fd00::8]:50052"]
"""

from ansible.errors import AnsibleFilterError

DEFAULT_PORT = 50052


def _format(address, port):
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def rpc_endpoints(hosts, hostvars):
    """Return the RPC endpoints of ``hosts`` from their host variables."""
    if isinstance(hosts, str) or not hasattr(hosts, "__iter__"):
        raise AnsibleFilterError(f"rpc_endpoints expects a list of hostnames, got {type(hosts).__name__}")
    endpoints = []
    for host in hosts:
        try:
            variables = hostvars[host]
        except KeyError:
            raise AnsibleFilterError(f"rpc_endpoints: {host} is not in the inventory")
        published = variables.get("llamacpp_rpc_worker_endpoint")
        if published:
            endpoints.append(str(published))
            continue
        facts = variables.get("ansible_facts") or {}
        address = variables.get("llamacpp_rpc_worker_bind") or (facts.get("default_ipv4") or {}).get("address")
        if not address:
            raise AnsibleFilterError(
                f"rpc_endpoints: no address known for worker {host}: run the rpc_worker role or gather its "
                "facts first, or set llamacpp_rpc_worker_bind for it"
            )
        port = variables.get("llamacpp_rpc_worker_port") or DEFAULT_PORT
        try:
            port = int(port)
        except (TypeError, ValueError):
            raise AnsibleFilterError(f"rpc_endpoints: llamacpp_rpc_worker_port of {host} is '{port}', not a number")
        endpoints.append(_format(str(address), port))
    duplicates = sorted({e for e in endpoints if endpoints.count(e) > 1})
    if duplicates:
        raise AnsibleFilterError(f"rpc_endpoints: several workers share the endpoint(s) {', '.join(duplicates)}")
    return endpoints


class FilterModule:
    """llama.cpp cluster filters."""

    def filters(self):
        return {"rpc_endpoints": rpc_endpoints}
