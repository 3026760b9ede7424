#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: llamacpp.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: build_flags
short_description: Prove the compiler accepts the ggml CPU flags, stepping down safely if not
version_added: 0.1.0
description:
  - Compiles a test object with the compiler flags that the given ggml CMake settings produce
    (C(-march=...) on Arm, C(-mavx2) and friends on x86_64).
  - When the compiler rejects them (Debian 12's GCC 12 rejects C(armv9.2-a)), tries lower
    settings in order, each removing features and never adding one, and returns the first
    that compiles, with the features it dropped and a warning naming them.
  - Also reports the compiler's identity and version, which belong in a build fingerprint.
author:
  - llamacpp.cluster maintainers (@llamacpp-cluster)
options:
  cmake:
    description:
      - The ggml CMake settings wanted, usually C(llamacpp_cpu.cmake) from M(llamacpp.cluster.cpu_facts).
    type: dict
    required: true
  architecture:
    description:
      - The target architecture; defaults to the live machine's.
    type: str
    choices: [aarch64, x86_64]
  compiler:
    description:
      - The C compiler to probe, a name on E(PATH) or a path.
    type: str
    default: cc
extends_documentation_fragment:
  - llamacpp.cluster.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Settle the CPU flags the compiler accepts
  llamacpp.cluster.build_flags:
    cmake: "{{ llamacpp_cpu.cmake }}"
  register: flags

- name: Configure with them
  ansible.builtin.debug:
    msg: "{{ flags.cmake }} (dropped: {{ flags.dropped }})"
"""

RETURN = r"""
cmake:
  description: The accepted CMake settings.
  returned: success
  type: dict
  sample: {"GGML_NATIVE": "OFF", "GGML_CPU_ARM_ARCH": "armv9-a+dotprod+fp16+sve2+i8mm+bf16"}
cflags:
  description: The compiler flags of the accepted settings.
  returned: success
  type: list
  elements: str
  sample: ["-march=armv9-a+dotprod+fp16+sve2+i8mm+bf16"]
dropped:
  description: What the accepted settings leave out of the requested ones; empty when nothing was.
  returned: success
  type: list
  elements: str
  sample: []
rejected:
  description: The compiler flags tried and rejected, with the compiler's first error line.
  returned: success
  type: list
  elements: dict
compiler:
  description: The compiler probed.
  returned: always
  type: dict
  contains:
    path:
      description: Its resolved path.
      type: str
      sample: /usr/bin/cc
    version:
      description: C(-dumpfullversion) output.
      type: str
      sample: 12.2.0
    target:
      description: C(-dumpmachine) output.
      type: str
      sample: aarch64-linux-gnu
"""

import os
import platform
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.llamacpp.cluster.plugins.module_utils.buildflags import (
    candidates,
    compiler_flags,
)

PROBE_SOURCE = "int llamacpp_probe(int x) { return x + 1; }\n"


def main():
    module = AnsibleModule(
        argument_spec={
            "cmake": {"type": "dict", "required": True},
            "architecture": {"type": "str", "choices": ["aarch64", "x86_64"]},
            "compiler": {"type": "str", "default": "cc"},
        },
        supports_check_mode=True,
    )
    cmake = {str(k): str(v) for k, v in module.params["cmake"].items()}
    architecture = module.params["architecture"] or {"arm64": "aarch64", "amd64": "x86_64"}.get(
        platform.machine(), platform.machine())
    name = module.params["compiler"]
    path = name if os.path.isabs(name) else module.get_bin_path(name)
    if not path or not os.access(path, os.X_OK):
        module.fail_json(msg=f"C compiler '{name}' not found; install it (Debian/Ubuntu: apt-get install "
                             "build-essential) or set the compiler option", compiler={"path": None})
    info = {"path": os.path.realpath(path)}
    for key, flag in (("version", "-dumpfullversion"), ("target", "-dumpmachine")):
        rc, out, err = module.run_command([path, flag])
        info[key] = out.strip() if rc == 0 else None
    rejected = []
    with tempfile.TemporaryDirectory() as workdir:
        source = os.path.join(workdir, "probe.c")
        with open(source, "w", encoding="ascii") as handle:
            handle.write(PROBE_SOURCE)
        for settings, dropped in candidates(cmake):
            cflags = compiler_flags(settings, architecture)
            rc, out, err = module.run_command([path] + cflags + ["-c", source, "-o", os.path.join(workdir, "probe.o")])
            if rc == 0:
                if dropped:
                    module.warn(f"{name} {info['version']} rejects {' '.join(compiler_flags(cmake, architecture))}; "
                                f"building with {' '.join(cflags)} instead (dropped: {', '.join(dropped)})")
                module.exit_json(changed=False, cmake=settings, cflags=cflags, dropped=dropped,
                                 rejected=rejected, compiler=info)
            first = (err or out).strip().splitlines()
            rejected.append({"cflags": cflags, "error": first[0] if first else f"rc={rc}"})
    module.fail_json(msg=f"{name} accepts none of the CPU flags tried, not even the baseline; check that it "
                         f"targets {architecture} (it targets {info['target']})", rejected=rejected, compiler=info)


if __name__ == "__main__":
    main()
