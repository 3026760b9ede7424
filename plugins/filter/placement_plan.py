# -*- coding: utf-8 -*-
# Copyright: llamacpp.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
name: placement_plan
short_description: Where a model's layers go on the cluster, and whether it fits
version_added: 0.2.0
description:
  - Plans a model (the result of M(llamacpp.cluster.model_info)) over the main node and the RPC
    workers from each node's usable memory (the C(llamacpp_memory) fact of
    M(llamacpp.cluster.memory_facts)) - its weights, KV cache and compute buffers.
  - All layers go to the workers, split so that each worker's share is as close to in proportion
    to its usable memory as whole layers allow; the main node keeps layers only when the workers
    cannot hold them all.
  - Returns the C(-ngl), C(--tensor-split) and C(--rpc) order for llama.cpp, per node the layers
    and bytes, and C(fits). When the model does not fit, C(message) says what it needs, what each
    node has and how many more workers would make it fit.
author:
  - llamacpp.cluster maintainers (@llamacpp-cluster)
options:
  _input:
    description: The model's facts, C(model) of M(llamacpp.cluster.model_info).
    type: dict
    required: true
  main:
    description: The main node's inventory hostname.
    type: str
    required: true
  workers:
    description: The workers' RPC endpoints (C(host:port)) in the order given to llama.cpp.
    type: list
    elements: str
    required: true
  hosts:
    description: The inventory hostnames of the workers, whose endpoints and memory facts are looked up.
    type: list
    elements: str
    required: true
  hostvars:
    description: The play's C(hostvars).
    type: dict
    required: true
  ctx_size:
    description: The context size (C(-c)), all parallel slots together.
    type: int
    default: 4096
  ubatch:
    description: The micro-batch size (C(-ub)).
    type: int
    default: 512
  parallel:
    description: Parallel sequences (server slots).
    type: int
    default: 1
  weights:
    description: Explicit placement weights, one per worker in O(workers) order; replaces the memory-based split.
    type: list
    elements: float
"""

EXAMPLES = r"""
- name: Plan the model
  ansible.builtin.set_fact:
    plan: >-
      {{ model.model | llamacpp.cluster.placement_plan(main=inventory_hostname, workers=llamacpp_main_workers,
         hosts=groups['llama_workers'], hostvars=hostvars, ctx_size=4096) }}
"""

RETURN = r"""
_value:
  description: The plan.
  type: dict
  contains:
    fits:
      description: Whether every node holds its share within its usable memory.
      type: bool
    message:
      description: When it does not fit, what is needed and what would make it fit.
      type: str
    n_gpu_layers:
      description: The C(-ngl) value.
      type: int
    tensor_split:
      description: The C(--tensor-split) values, in C(rpc) order.
      type: list
      elements: int
    rpc:
      description: The worker endpoints in the order the plan uses (the worker with the output layer last).
      type: list
      elements: str
    nodes:
      description: Per node (the main node first) its layers, weights, KV cache, compute and usable bytes.
      type: list
      elements: dict
"""

from ansible.errors import AnsibleFilterError
from ansible_collections.llamacpp.cluster.plugins.filter.rpc_endpoints import rpc_endpoints
from ansible_collections.llamacpp.cluster.plugins.module_utils.placement import PlacementError, plan


def _usable(hostvars, host):
    variables = hostvars[host] if host in hostvars else {}
    # A module's facts: ansible_facts[...] always, a top-level variable only while facts are injected.
    memory = (variables.get("ansible_facts") or {}).get("llamacpp_memory") or variables.get("llamacpp_memory")
    if not isinstance(memory, dict) or "usable_bytes" not in memory:
        raise AnsibleFilterError(
            f"placement_plan: {host} has no llamacpp_memory fact; run llamacpp.cluster.memory_facts on it "
            "first (the rpc_worker role's plan and the main role do)")
    return int(memory["usable_bytes"])


def placement_plan(model, main, workers, hosts, hostvars, ctx_size=4096, ubatch=512, parallel=1, weights=None):
    """Plan ``model`` on ``main`` and the workers at ``workers`` (endpoints of ``hosts``)."""
    if not isinstance(model, dict) or "layer_bytes" not in model:
        raise AnsibleFilterError("placement_plan expects the model facts of llamacpp.cluster.model_info")
    by_endpoint = dict(zip(rpc_endpoints(list(hosts), hostvars), hosts))
    nodes = []
    for endpoint in workers:
        host = by_endpoint.get(endpoint)
        if host is None:
            raise AnsibleFilterError(
                f"placement_plan: the worker {endpoint} is no host of the workers' group, so its memory is "
                "unknown; list it in the inventory, or set llamacpp_main_placement: llama.cpp to let "
                "llama.cpp split the layers without a fit check")
        nodes.append({"name": host, "endpoint": endpoint, "usable_bytes": _usable(hostvars, host)})
    try:
        return plan(model, {"name": main, "usable_bytes": _usable(hostvars, main)}, nodes,
                    ctx_size=int(ctx_size), ubatch=int(ubatch), parallel=int(parallel),
                    weights=[float(w) for w in weights] if weights else None)
    except PlacementError as exc:
        raise AnsibleFilterError(f"placement_plan: {exc}") from exc


class FilterModule:
    def filters(self):
        return {"placement_plan": placement_plan}
