# -*- coding: utf-8 -*-
# Copyright: llamacpp.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The build role's planning filters; the logic is in module_utils/build_plan.py, each filter's
documentation in the YAML file of its name beside this one."""

from __future__ import annotations

import base64
import json

from ansible.errors import AnsibleFilterError
from ansible_collections.llamacpp.cluster.plugins.module_utils import build_plan


def _checked(function, *args, **kwargs):
    try:
        return function(*args, **kwargs)
    except build_plan.BuildPlanError as error:
        raise AnsibleFilterError(str(error))


def build_host_plan(facts, hostname, targets, in_main, in_worker, main_targets, worker_targets,
                    cpu_flags="auto", cpu_cmake=None, strategy="per_family"):
    if not isinstance(facts, dict):
        raise AnsibleFilterError(f"build_host_plan needs the host's ansible_facts, got {type(facts).__name__}")
    return _checked(build_plan.host_plan, hostname, facts, facts.get("llamacpp_cpu"), targets or [],
                    bool(in_main), bool(in_worker), main_targets, worker_targets, cpu_flags, cpu_cmake, strategy)


def build_groups(hosts, hostvars, plan_var="_llamacpp_build_plan"):
    """The groups of the hosts (a play's hosts) that have a plan in hostvars[host][plan_var]."""
    plans = {}
    for host in hosts:
        plan = (hostvars[host] or {}).get(plan_var) if host in hostvars else None
        if plan:
            plans[host] = plan
    return _checked(build_plan.groups, plans)


def build_fingerprint(version, commit, build_type, source, cmake_layers, compiler, targets, helpers, os_release,
                      number=None):
    if not isinstance(cmake_layers, list):
        raise AnsibleFilterError("build_fingerprint's cmake_layers must be a list of dicts of CMake settings")
    return _checked(build_plan.fingerprint, version, commit, build_type, source, cmake_layers, compiler, targets,
                    helpers, os_release, number)


def build_shippers(hosts, hostvars):
    """Builders to ship through the controller, from each host's _llamacpp_build_builder,
    _llamacpp_build_present (a stat result) and, on builders, _llamacpp_build_cached."""
    states = {}
    for host in hosts:
        variables = hostvars[host]
        if "_llamacpp_build_present" not in variables:
            continue
        states[host] = {
            "builder": variables["_llamacpp_build_builder"],
            "present": bool(((variables["_llamacpp_build_present"] or {}).get("stat") or {}).get("exists")),
            "cached": bool(variables.get("_llamacpp_build_cached")),
        }
    return build_plan.shippers(states)


def _manifest(value, host):
    """A manifest given as such (it has a build_id), or as the result of slurping it; None for
    anything else (a slurp that failed: no build there)."""
    if not isinstance(value, dict) or ("content" not in value and "build_id" not in value):
        return None
    if "content" not in value:
        return value
    try:
        return json.loads(base64.b64decode(value["content"]))
    except (ValueError, TypeError) as error:
        raise AnsibleFilterError(f"llama_summary: the build manifest of {host} is not JSON ({error}); "
                                 "reinstall that build with site.yml")


def llama_summary(manifests):
    """manifests: {host: manifest or slurp result}, or the results of a slurp loop over hosts."""
    if isinstance(manifests, list):
        manifests = {result.get("item"): result for result in manifests}
    if not isinstance(manifests, dict):
        raise AnsibleFilterError(f"llama_summary needs a dict of host to build manifest, got {type(manifests).__name__}")
    return build_plan.llama_summary({host: _manifest(value, host) for host, value in manifests.items()})


class FilterModule:
    """Build planning filters."""

    def filters(self):
        return {
            "build_host_plan": build_host_plan,
            "build_groups": build_groups,
            "build_fingerprint": build_fingerprint,
            "build_shippers": build_shippers,
            "llama_summary": llama_summary,
        }
