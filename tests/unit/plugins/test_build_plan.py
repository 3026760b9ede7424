"""The build role's planning: groups and builders, fingerprints and build ids, which builders
ship, and the one-llama.cpp checks of check.yml and rollback.yml."""

from __future__ import annotations

import base64
import json

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.llamacpp.cluster.plugins.filter import build_plan as filters
from ansible_collections.llamacpp.cluster.plugins.module_utils.build_plan import (
    BuildPlanError, build_number, fingerprint, groups, host_plan, llama_summary, shippers)

MAIN_TARGETS = ["llama-completion", "llama-cli", "llama-server", "llama-bench"]
WORKER_TARGETS = ["rpc-server"]
N1 = {"cmake": {"GGML_NATIVE": "OFF", "GGML_CPU_ARM_ARCH": "armv8.2-a+dotprod+fp16"},
      "family": "aarch64-armv8.2-a+dotprod+fp16", "architecture": "aarch64"}
V2 = {"cmake": {"GGML_NATIVE": "OFF", "GGML_CPU_ARM_ARCH": "armv9-a+sve2"}, "family": "aarch64-armv9-a+sve2",
      "architecture": "aarch64"}


def facts(cpu=None, version="12", arch="aarch64", distribution="Debian"):
    cpu = cpu or N1
    return {"distribution": distribution, "distribution_major_version": version, "architecture": arch, "llamacpp_cpu": cpu}


def plan(name, host_facts=None, main=False, worker=True, **options):
    host_facts = host_facts or facts()
    return host_plan(name, host_facts, host_facts["llamacpp_cpu"], options.pop("targets", []), main, worker,
                     MAIN_TARGETS, WORKER_TARGETS, **options)


def test_a_worker_needs_the_rpc_server_and_the_main_node_its_clients():
    assert plan("w1")["targets"] == ["rpc-server"]
    assert plan("m", main=True, worker=False)["targets"] == sorted(MAIN_TARGETS)
    assert plan("both", main=True)["targets"] == sorted(MAIN_TARGETS + WORKER_TARGETS)
    assert plan("w1", targets=["llama-server", "llama-server"])["targets"] == ["llama-server"]


def test_a_host_in_neither_group_is_named():
    with pytest.raises(BuildPlanError, match="spare1 is in neither the main nor the worker group"):
        plan("spare1", main=False, worker=False)


def test_the_group_is_os_release_architecture_and_cpu_family():
    assert plan("w1")["group"] == "Debian/12/aarch64/aarch64-armv8.2-a+dotprod+fp16"
    # Point releases (12.11, 12.15) share the major version, hence a build.
    assert plan("w1", facts())["group"] == plan("w2", facts(version="12"))["group"]
    assert plan("w1")["group"] != plan("w2", facts(V2))["group"]
    assert plan("w1")["group"] != plan("w2", facts(version="13"))["group"]
    assert plan("w1")["reuse"] is True


def test_native_flags_and_per_host_builds_are_groups_of_one_and_never_reused():
    native = plan("w1", cpu_flags="native")
    assert native["group"] == "w1" and native["cpu_cmake"] == {"GGML_NATIVE": "ON"} and native["reuse"] is False
    per_host = plan("w1", strategy="per_host")
    assert per_host["group"] == "w1" and per_host["cpu_cmake"] == N1["cmake"] and per_host["reuse"] is False


def test_explicit_flags_form_a_group_named_by_their_hash():
    cmake = {"GGML_NATIVE": "OFF", "GGML_CPU_ARM_ARCH": "armv8-a"}
    one = plan("w1", cpu_flags="explicit", cpu_cmake=cmake)
    two = plan("w2", facts(V2), cpu_flags="explicit", cpu_cmake=dict(reversed(cmake.items())))
    assert one["group"] == two["group"] and one["group"].startswith("Debian/12/aarch64/explicit-")
    assert one["cpu_cmake"] == cmake
    with pytest.raises(BuildPlanError, match="explicit needs llamacpp_build_cpu_cmake"):
        plan("w1", cpu_flags="explicit")


@pytest.mark.parametrize("options, message", [
    ({"strategy": "everywhere"}, "llamacpp_build_strategy must be one of per_family, per_host"),
    ({"cpu_flags": "fast"}, "llamacpp_build_cpu_flags must be one of auto, native, explicit"),
])
def test_unknown_settings_are_refused(options, message):
    with pytest.raises(BuildPlanError, match=message):
        plan("w1", **options)


def test_missing_facts_are_named():
    with pytest.raises(BuildPlanError, match="w1 has no llamacpp_cpu fact"):
        host_plan("w1", facts(), None, [], False, True, MAIN_TARGETS, WORKER_TARGETS)
    partial = facts()
    del partial["distribution_major_version"]
    with pytest.raises(BuildPlanError, match="lack distribution_major_version"):
        plan("w1", partial)


def test_each_group_has_its_first_member_by_name_as_builder_and_the_union_of_targets():
    hosts = {"w2": plan("w2"), "main": plan("main", main=True, worker=False), "w1": plan("w1"),
             "g1": plan("g1", facts(V2))}
    result = groups(hosts)
    assert result == {
        "Debian/12/aarch64/aarch64-armv8.2-a+dotprod+fp16": {
            "builder": "main", "members": ["main", "w1", "w2"], "targets": sorted(MAIN_TARGETS + WORKER_TARGETS)},
        "Debian/12/aarch64/aarch64-armv9-a+sve2": {"builder": "g1", "members": ["g1"], "targets": ["rpc-server"]},
    }


def build(**changes):
    args = {"version": "b11312", "commit": "0c1e570", "build_type": "Release", "source": "ab" * 32,
            "cmake_layers": [{"GGML_RPC": "ON", "GGML_NATIVE": "ON"}, {"GGML_NATIVE": "OFF"}],
            "compiler": {"target": "aarch64-linux-gnu", "version": "12.2.0", "path": "/usr/bin/cc"},
            "targets": ["rpc-server"], "helpers": {"llamacpp-fnv1a": "df7ba772b6bc"}, "os_release": "Debian 12"}
    args.update(changes)
    return fingerprint(**args)


def test_the_fingerprint_merges_cmake_layers_in_order_and_derives_the_build_number():
    result = build()
    assert result["fingerprint"]["cmake"] == {"GGML_RPC": "ON", "GGML_NATIVE": "OFF"}
    assert result["fingerprint"]["build_number"] == 11312
    assert result["fingerprint"]["compiler"] == "aarch64-linux-gnu 12.2.0"
    assert result["fingerprint"]["os"] == "Debian 12"
    assert result["id"].startswith("b11312-") and len(result["id"]) == len("b11312-") + 12
    assert build()["id"] == result["id"]


@pytest.mark.parametrize("change", [
    {"commit": "1111111"}, {"build_type": "Debug"}, {"source": "git"}, {"cmake_layers": [{"GGML_RPC": "ON"}]},
    {"compiler": {"target": "aarch64-linux-gnu", "version": "14.2.0"}}, {"targets": ["rpc-server", "llama-cli"]},
    {"helpers": {"llamacpp-fnv1a": "000000000000"}}, {"os_release": "Debian 13"}, {"number": 7},
])
def test_whatever_changes_the_binaries_changes_the_build_id(change):
    assert build(**change)["id"] != build()["id"]


def test_what_does_not_change_the_binaries_keeps_the_build_id():
    assert build(compiler={"target": "aarch64-linux-gnu", "version": "12.2.0", "path": "/usr/local/bin/cc"})["id"] \
        == build()["id"]
    assert build(targets=["rpc-server", "rpc-server"])["id"] == build()["id"]


def test_build_numbers():
    assert build_number("b11312") == 11312 and build_number("master") == 0 and build_number("b7", "42") == 42
    with pytest.raises(BuildPlanError, match="llamacpp_build_number must be a whole number"):
        build_number("b1", "x")
    with pytest.raises(BuildPlanError, match="plain tag"):
        build(version="b1 2")
    with pytest.raises(BuildPlanError, match="run llamacpp.cluster.build_flags first"):
        build(compiler={})


def test_a_builder_ships_only_when_a_member_lacks_the_build_and_the_controller_lacks_it_too():
    state = {
        "a1": {"builder": "a1", "present": True, "cached": False},
        "a2": {"builder": "a1", "present": False},
        "b1": {"builder": "b1", "present": False, "cached": True},
        "b2": {"builder": "b1", "present": False},
        "c1": {"builder": "c1", "present": True, "cached": False},
        "c2": {"builder": "c1", "present": True},
    }
    assert shippers(state) == ["a1"]
    assert shippers({}) == []


def manifest(version="b11312", commit="0c1e57098bba", number=11312, build_id="b11312-aaaaaaaaaaaa"):
    return {"version": version, "commit": commit, "build_number": number, "build_id": build_id}


def test_one_llama_cpp_in_flags_of_several_families_is_one_cluster():
    summary = llama_summary({"w1": manifest(build_id="b11312-111111111111"), "m": manifest()})
    assert summary == {"missing": [], "llama": ["b11312 (commit 0c1e570, build 11312)"], "ok": True,
                       "running": ["m: b11312-aaaaaaaaaaaa = b11312 (commit 0c1e570, build 11312)",
                                   "w1: b11312-111111111111 = b11312 (commit 0c1e570, build 11312)"]}


def test_a_node_without_a_build_or_on_another_release_fails_the_check():
    assert llama_summary({"m": manifest(), "w1": None}) == {
        "missing": ["w1"], "llama": ["b11312 (commit 0c1e570, build 11312)"], "ok": False,
        "running": ["m: b11312-aaaaaaaaaaaa = b11312 (commit 0c1e570, build 11312)"]}
    mixed = llama_summary({"m": manifest(), "w1": manifest("b11400", "9f9f9f9", 11400)})
    assert not mixed["ok"] and len(mixed["llama"]) == 2
    # Same version and build number, another commit (a rebuilt tag): still two llama.cpp builds.
    assert not llama_summary({"m": manifest(), "w1": manifest(commit="0c1e57000000")})["ok"]


def slurped(value):
    return {"content": base64.b64encode(json.dumps(value).encode()).decode(), "encoding": "base64"}


def test_the_summary_filter_reads_a_slurp_loop_and_a_dict_of_slurp_results():
    loop = [dict(slurped(manifest()), item="m"), {"item": "w1", "failed": False, "msg": "file not found"}]
    assert filters.llama_summary(loop)["missing"] == ["w1"]
    assert filters.llama_summary({"m": slurped(manifest()), "w1": manifest()})["ok"] is True
    with pytest.raises(AnsibleFilterError, match="the build manifest of m is not JSON"):
        filters.llama_summary({"m": {"content": base64.b64encode(b"{").decode()}})


def test_the_filters_read_the_plans_and_states_from_hostvars():
    hostvars = {
        "m": {"_llamacpp_build_plan": plan("m", main=True, worker=False), "_llamacpp_build_builder": "m",
              "_llamacpp_build_present": {"stat": {"exists": True}}},
        "w1": {"_llamacpp_build_plan": plan("w1"), "_llamacpp_build_builder": "m",
               "_llamacpp_build_present": {"stat": {"exists": False}}},
        "down": {},
    }
    assert list(filters.build_groups(["m", "w1", "down"], hostvars)) == ["Debian/12/aarch64/aarch64-armv8.2-a+dotprod+fp16"]
    assert filters.build_shippers(["m", "w1", "down"], hostvars) == ["m"]
    hostvars["m"]["_llamacpp_build_cached"] = True
    assert filters.build_shippers(["m", "w1"], hostvars) == []
    with pytest.raises(AnsibleFilterError, match="spare is in neither"):
        filters.build_host_plan(facts(), "spare", [], False, False, MAIN_TARGETS, WORKER_TARGETS)
