#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: llamacpp.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: memory_facts
short_description: The memory a node can give llama.cpp, cgroup limits included
version_added: 0.2.0
description:
  - Reads C(MemTotal) and C(MemAvailable) from C(/proc/meminfo) and the memory limit of the
    node's cgroup (v1 C(memory.limit_in_bytes) or v2 C(memory.max)), of the cgroup mount
    itself (a container's limit) and of C(system.slice), where the services run.
  - Returns the fact C(llamacpp_memory) with C(usable_bytes), the smaller of C(MemTotal) and
    the limit, minus O(reserve_mib) for the operating system.
  - llama.cpp's rpc-server reports the host's physical RAM even inside a memory-limited
    container; the placement plan of the main role uses these facts instead.
author:
  - llamacpp.cluster maintainers (@llamacpp-cluster)
options:
  reserve_mib:
    description:
      - MiB left for the operating system and other processes, subtracted from the limit.
    type: int
    default: 512
notes:
  - The module only reads; check mode returns the same facts.
  - A C(MemoryMax=) set on the llama.cpp unit itself is not read; set the reserve accordingly.
extends_documentation_fragment:
  - llamacpp.cluster.attributes
  - llamacpp.cluster.attributes.facts
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  facts:
    support: full
"""

EXAMPLES = r"""
- name: Read what each node can hold
  llamacpp.cluster.memory_facts:
    reserve_mib: 256

- name: Show it
  ansible.builtin.debug:
    msg: "{{ (llamacpp_memory.usable_bytes / 1048576) | int }} MiB usable (cgroup v{{ llamacpp_memory.cgroup_version }})"
"""

RETURN = r"""
ansible_facts:
  description: Facts to add to the host's facts.
  returned: always
  type: dict
  contains:
    llamacpp_memory:
      description: The node's memory.
      returned: always
      type: dict
      contains:
        mem_total_bytes:
          description: C(MemTotal) in bytes.
          type: int
          sample: 25125560320
        mem_available_bytes:
          description: C(MemAvailable) in bytes; null when the kernel does not report it.
          type: int
        cgroup_version:
          description: 1 or 2; null without a cgroup memory controller.
          type: int
          sample: 1
        cgroup_limit_bytes:
          description: The smallest memory limit read; null when there is none.
          type: int
          sample: 1073741824
        cgroup_files:
          description: The limit files read.
          type: list
          elements: str
          sample: [/sys/fs/cgroup/memory/memory.limit_in_bytes]
        reserve_bytes:
          description: The reserve subtracted.
          type: int
          sample: 536870912
        usable_bytes:
          description: What llama.cpp may use on this node.
          type: int
          sample: 536870912
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.llamacpp.cluster.plugins.module_utils.memory import node_memory


def main():
    module = AnsibleModule(
        argument_spec={"reserve_mib": {"type": "int", "default": 512}},
        supports_check_mode=True,
    )
    reserve = module.params["reserve_mib"]
    if reserve < 0:
        module.fail_json(msg=f"reserve_mib must be >= 0, got {reserve}")
    try:
        facts = node_memory(reserve * 1024 * 1024)
    except ValueError as exc:
        module.fail_json(msg=f"cannot read this node's memory: {exc}")
    module.exit_json(changed=False, ansible_facts={"llamacpp_memory": facts})


if __name__ == "__main__":
    main()
