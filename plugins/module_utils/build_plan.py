# -*- coding: utf-8 -*-
# Copyright: llamacpp.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Build planning of the build role, in plain Python.

The role builds llama.cpp once for each group of hosts that can run the same binaries (one OS
release, one architecture, one CPU family) and copies the result to the rest of the group.
This module decides:

- which group each host is in and what it needs built (host_plan);
- which host of a group builds, and the union of the group's targets (groups);
- the build's fingerprint and id: anything that changes the binaries changes the id (fingerprint);
- which builders must ship their build through the controller (shippers);
- what the cluster runs, or would run after a rollback, and whether that is one llama.cpp
  (llama_summary).
"""

from __future__ import annotations

import hashlib
import json
import re

STRATEGIES = ("per_family", "per_host")
CPU_FLAG_MODES = ("auto", "native", "explicit")
# What makes two builds the same llama.cpp for the RPC protocol.
LLAMA_KEYS = ("version", "commit", "build_number")


class BuildPlanError(ValueError):
    """A setting or an input the plan cannot work with; the message says which and why."""


def build_number(version, explicit=None):
    """The build number llama.cpp reports: the explicit one, else the digits of a bNNNN tag, else 0."""
    if explicit not in (None, ""):
        try:
            return int(explicit)
        except (TypeError, ValueError):
            raise BuildPlanError(f"llamacpp_build_number must be a whole number, got {explicit!r}")
    match = re.match(r"^b(\d+)$", str(version))
    return int(match.group(1)) if match else 0


def host_plan(hostname, facts, cpu, targets, in_main, in_worker, main_targets, worker_targets,
              cpu_flags="auto", cpu_cmake=None, strategy="per_family"):
    """What one host needs: its targets, its CPU's CMake settings and its build group.

    facts: the host's ansible_facts (distribution, distribution_major_version, architecture);
    cpu: its llamacpp_cpu fact (cmake, family); targets: llamacpp_build_targets (empty: by group).
    """
    if strategy not in STRATEGIES:
        raise BuildPlanError(f"llamacpp_build_strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if cpu_flags not in CPU_FLAG_MODES:
        raise BuildPlanError(f"llamacpp_build_cpu_flags must be one of {', '.join(CPU_FLAG_MODES)}, got {cpu_flags!r}")
    cpu_cmake = dict(cpu_cmake or {})
    if targets:
        wanted = list(targets)
    else:
        wanted = (list(main_targets) if in_main else []) + (list(worker_targets) if in_worker else [])
    if not wanted:
        raise BuildPlanError(f"{hostname} is in neither the main nor the worker group; add it to one of them "
                             "or set llamacpp_build_targets")
    if cpu_flags == "auto":
        if not isinstance(cpu, dict) or not isinstance(cpu.get("cmake"), dict) or not cpu.get("family"):
            raise BuildPlanError(f"{hostname} has no llamacpp_cpu fact with cmake and family; run "
                                 "llamacpp.cluster.cpu_facts first")
        settings, family = dict(cpu["cmake"]), cpu["family"]
    elif cpu_flags == "native":
        settings, family = {"GGML_NATIVE": "ON"}, None
    else:
        if not cpu_cmake:
            raise BuildPlanError("llamacpp_build_cpu_flags=explicit needs llamacpp_build_cpu_cmake")
        settings = cpu_cmake
        family = "explicit-" + hashlib.sha1(_canonical(cpu_cmake).encode()).hexdigest()[:10]
    # -march=native binaries fit only the host that built them.
    if strategy == "per_host" or family is None:
        group = hostname
    else:
        try:
            group = "/".join([facts["distribution"], str(facts["distribution_major_version"]),
                              facts["architecture"], family])
        except KeyError as missing:
            raise BuildPlanError(f"{hostname}'s facts lack {missing.args[0]}; gather facts (min subset) first")
    return {"targets": sorted(set(wanted)), "cpu_cmake": settings, "group": group,
            "reuse": strategy == "per_family" and family is not None}


def groups(hosts):
    """Group the hosts of a play by their build group.

    hosts: {hostname: host_plan(...)}; returns {group: {builder, members, targets}}, the builder
    being the first member by name and the targets the union of the members' targets.
    """
    out = {}
    for name in sorted(hosts):
        plan = hosts[name]
        group = out.setdefault(plan["group"], {"builder": name, "members": [], "targets": set()})
        group["members"].append(name)
        group["targets"].update(plan["targets"])
    for group in out.values():
        group["targets"] = sorted(group["targets"])
    return out


def _canonical(value):
    """The JSON text a fingerprint is hashed as (sorted keys, as Ansible's to_json)."""
    return json.dumps(value, sort_keys=True)


def fingerprint(version, commit, build_type, source, cmake_layers, compiler, targets, helpers, os_release,
                number=None):
    """The build's fingerprint and id.

    source: the archive's sha256, or "git" (the commit identifies the checkout);
    cmake_layers: CMake settings, later ones overriding earlier ones (fixed, CPU, role options,
    user extras); compiler: {target, version} of the probed compiler; helpers: {name: source hash};
    os_release: e.g. "Debian 12" - a build links against the release's libraries.
    """
    if not re.match(r"^[A-Za-z0-9._-]+$", str(version)):
        raise BuildPlanError(f"llamacpp_build_version must be a plain tag such as b11312, got {version!r}")
    cmake = {}
    for layer in cmake_layers:
        cmake.update({str(name): str(value) for name, value in (layer or {}).items()})
    try:
        compiler_id = f"{compiler['target']} {compiler['version']}"
    except (KeyError, TypeError):
        raise BuildPlanError(f"the compiler's target and version are unknown ({compiler!r}); "
                             "run llamacpp.cluster.build_flags first")
    print_ = {
        "version": str(version),
        "commit": str(commit or ""),
        "build_number": build_number(version, number),
        "build_type": str(build_type),
        "source": str(source),
        "cmake": cmake,
        "compiler": compiler_id,
        "targets": sorted(set(targets)),
        "helpers": dict(helpers or {}),
        "os": str(os_release),
    }
    digest = hashlib.sha256(_canonical(print_).encode()).hexdigest()[:12]
    return {"fingerprint": print_, "id": f"{version}-{digest}"}


def shippers(hosts):
    """The builders that must ship their build through the controller.

    hosts: {hostname: {builder, present, cached}}: each host's builder, whether the host has its
    group's build installed, and (on builders) whether the controller already holds it. A builder
    ships when some member of its group lacks the build and the controller does not have it.
    """
    needed = sorted({state["builder"] for state in hosts.values() if not state.get("present")})
    return [builder for builder in needed if not (hosts.get(builder) or {}).get("cached")]


def _llama(manifest):
    commit = str(manifest.get("commit") or "?")[:7]
    return f"{manifest.get('version')} (commit {commit}, build {manifest.get('build_number')})"


def llama_summary(manifests):
    """Which llama.cpp each host runs (or would run): {host: a build manifest, or None for none}.

    Builds for different CPU families differ in flags only; what must agree across a cluster is
    the llama.cpp (version, commit, build number), which the RPC protocol checks. Returns
    missing (hosts without a build), running ("host: build id = llama.cpp" lines), llama (the
    distinct llama.cpp builds, in host order) and ok (no host missing, one llama.cpp).
    """
    missing = sorted(host for host, manifest in manifests.items() if not manifest)
    running, llamas, seen = [], [], set()
    for host in sorted(manifests):
        manifest = manifests[host]
        if not manifest:
            continue
        running.append(f"{host}: {manifest.get('build_id')} = {_llama(manifest)}")
        key = tuple(str(manifest.get(name)) for name in LLAMA_KEYS)
        if key not in seen:
            seen.add(key)
            llamas.append(_llama(manifest))
    return {"missing": missing, "running": running, "llama": llamas,
            "ok": not missing and len(llamas) == 1}
