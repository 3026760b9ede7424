#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: llamacpp.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: cpu_facts
short_description: Identify a node's CPU and the llama.cpp (ggml) build flags that fit it
version_added: 0.1.0
description:
  - Reads C(/proc/cpuinfo), the CPU topology in C(/sys/devices/system/cpu) and
    C(/proc/sys/abi/sve_default_vector_length) and returns the facts C(llamacpp_cpu).
  - Identifies Arm cores by implementer and part together (Neoverse N1 in AWS Graviton2 and
    Ampere Altra, Neoverse V1 in Graviton3, Neoverse V2 in Graviton4 and Google Axion,
    Neoverse N2 and Azure Cobalt 100, AmpereOne), and lists the features ggml uses.
  - Recommends ggml CMake settings built from the detected features only, so a build never
    uses an instruction the CPU lacks. On Arm this is C(GGML_NATIVE=OFF) with
    C(GGML_CPU_ARM_ARCH) set to an C(-march) value that GCC 12 and newer accept; on x86_64,
    C(GGML_NATIVE=OFF) with each instruction-set option set to what the CPU supports.
  - Returns a C(family) key; hosts with the same key can run the same llama.cpp binary.
  - With O(cpuinfo_path) a saved C(/proc/cpuinfo) from any machine can be analysed on any
    host, for example to check an instance type before buying it.
author:
  - llamacpp.cluster maintainers (@llamacpp-cluster)
options:
  cpuinfo_path:
    description:
      - A saved C(/proc/cpuinfo) to analyse instead of the live machine's.
      - When set, the live topology and SVE vector length are not read; core and socket
        counts come from the file alone.
    type: path
  architecture:
    description:
      - The architecture the cpuinfo belongs to; C(arm64) and C(amd64) are accepted as aliases.
      - Defaults to the live machine's architecture.
    type: str
    choices: [aarch64, arm64, x86_64, amd64]
notes:
  - The module only reads; check mode returns the same facts.
  - An aarch64 host whose C(/proc/cpuinfo) has no Arm fields (user-mode emulation shows the
    host's file) gets the safe baseline C(armv8-a) and a warning.
seealso:
  - name: llama.cpp CPU build options
    description: The ggml CMake options these facts set.
    link: https://github.com/ggml-org/llama.cpp/blob/master/docs/build.md
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
- name: Identify the CPU of every node
  llamacpp.cluster.cpu_facts:

- name: Show the flags the build will use
  ansible.builtin.debug:
    msg: "{{ llamacpp_cpu.core_name }}: {{ llamacpp_cpu.cmake }} (family {{ llamacpp_cpu.family }})"

- name: Check a saved /proc/cpuinfo of a Graviton3 instance, on any host
  llamacpp.cluster.cpu_facts:
    cpuinfo_path: files/c7g.cpuinfo
    architecture: aarch64
  delegate_to: localhost
"""

RETURN = r"""
ansible_facts:
  description: Facts to add to the host's facts.
  returned: always
  type: dict
  contains:
    llamacpp_cpu:
      description: The CPU and the llama.cpp build settings for it.
      returned: always
      type: dict
      contains:
        architecture:
          description: C(aarch64) or C(x86_64).
          type: str
          sample: aarch64
        vendor:
          description: The CPU vendor (Arm implementer name, or x86 C(vendor_id)); null when unknown.
          type: str
          sample: ARM
        implementer:
          description: The Arm implementer code; null on x86_64.
          type: str
          sample: "0x41"
        part:
          description: The Arm part number; null on x86_64.
          type: str
          sample: "0xd40"
        core:
          description: A short key of the identified core; null when unknown.
          type: str
          sample: neoverse-v1
        core_name:
          description: The core's name (Arm) or the model name (x86_64).
          type: str
          sample: Neoverse V1
        platforms:
          description: Cloud platforms known to use this core.
          type: list
          elements: str
          sample: ["AWS Graviton3"]
        features:
          description: The features ggml uses that this CPU has (dotprod, fp16, i8mm, bf16, sve, sve2, sme; avx2, avx512*, amx_* ...).
          type: list
          elements: str
          sample: [bf16, dotprod, fp16, i8mm, sve]
        flags:
          description: Every feature flag the kernel reports on all CPUs.
          type: list
          elements: str
        sve_vector_length:
          description: The kernel's default SVE vector length in bits; null without SVE or when not read.
          type: int
          sample: 256
        vcpus:
          description: Logical CPUs.
          type: int
          sample: 8
        cores:
          description: Physical cores.
          type: int
          sample: 8
        sockets:
          description: CPU packages.
          type: int
          sample: 1
        threads_per_core:
          description: Logical CPUs per physical core.
          type: int
          sample: 1
        march:
          description: The C(-march) value for Arm builds; null on x86_64.
          type: str
          sample: armv8.4-a+dotprod+fp16+sve+i8mm+bf16
        cmake:
          description: ggml CMake cache entries to pass as C(-D<name>=<value>).
          type: dict
          sample: {"GGML_NATIVE": "OFF", "GGML_CPU_ARM_ARCH": "armv8.4-a+dotprod+fp16+sve+i8mm+bf16"}
        family:
          description: Hosts with the same key can run the same binary.
          type: str
          sample: aarch64-armv8.4-a+dotprod+fp16+sve+i8mm+bf16
"""

import os
import platform

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.llamacpp.cluster.plugins.module_utils.cpuinfo import (
    CpuInfoError,
    analyse,
    parse_cpu_list,
)

LIVE_CPUINFO = "/proc/cpuinfo"
SVE_VL_PATH = "/proc/sys/abi/sve_default_vector_length"
SYS_CPU = "/sys/devices/system/cpu"


def _read(path):
    with open(path, encoding="utf-8", errors="replace") as handle:
        return handle.read()


def live_topology():
    """Package and core of each online CPU from sysfs, or None when sysfs does not say."""
    try:
        online = parse_cpu_list(_read(os.path.join(SYS_CPU, "online")))
    except (OSError, CpuInfoError):
        return None
    topology = []
    for cpu in online:
        base = os.path.join(SYS_CPU, f"cpu{cpu}", "topology")
        try:
            topology.append({"package": _read(os.path.join(base, "physical_package_id")).strip(),
                             "core": _read(os.path.join(base, "core_id")).strip()})
        except OSError:
            return None
    return topology or None


def live_sve_vector_length():
    try:
        return int(_read(SVE_VL_PATH).split()[0])
    except (OSError, ValueError, IndexError):
        return None


def main():
    module = AnsibleModule(
        argument_spec={
            "cpuinfo_path": {"type": "path"},
            "architecture": {"type": "str", "choices": ["aarch64", "arm64", "x86_64", "amd64"]},
        },
        supports_check_mode=True,
    )
    path = module.params["cpuinfo_path"]
    offline = path is not None
    architecture = module.params["architecture"] or platform.machine()
    source = path or LIVE_CPUINFO
    try:
        text = _read(source)
    except OSError as exc:
        module.fail_json(msg=f"cannot read {source}: {exc.strerror}; pass cpuinfo_path pointing at a "
                             "saved /proc/cpuinfo", cpuinfo_path=source)
    topology = None if offline else live_topology()
    sve_vl = None if offline else live_sve_vector_length()
    try:
        facts, warnings = analyse(text, architecture, topology=topology, sve_vector_length_bytes=sve_vl)
    except CpuInfoError as exc:
        module.fail_json(msg=f"cannot analyse {source} as {architecture}: {exc}", cpuinfo_path=source)
    for warning in warnings:
        module.warn(warning)
    facts["source"] = source
    module.exit_json(changed=False, ansible_facts={"llamacpp_cpu": facts})


if __name__ == "__main__":
    main()
