"""The cpu_facts module: options, facts, check mode and failures."""

from __future__ import annotations

import json
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "cpuinfo"


def test_saved_cpuinfo_is_analysed_offline(run_module):
    args = {"cpuinfo_path": str(FIXTURES / "aarch64-graviton3-c7g.txt"), "architecture": "arm64"}
    code, result = run_module("cpu_facts", args)
    facts = result["ansible_facts"]["llamacpp_cpu"]
    assert code == 0 and result["changed"] is False
    assert facts["core"] == "neoverse-v1" and facts["architecture"] == "aarch64"
    assert facts["cmake"]["GGML_CPU_ARM_ARCH"] == "armv8.4-a+dotprod+fp16+sve+i8mm+bf16"
    assert facts["sve_vector_length"] is None  # offline: the live sysctl is not read


def test_check_mode_returns_the_same_facts(run_module):
    args = {"cpuinfo_path": str(FIXTURES / "aarch64-graviton2-m6g.txt"), "architecture": "aarch64"}
    normal = run_module("cpu_facts", args)[1]["ansible_facts"]
    checked = run_module("cpu_facts", dict(args, _ansible_check_mode=True))[1]["ansible_facts"]
    assert normal == checked


def test_live_machine_is_analysed(run_module):
    code, result = run_module("cpu_facts", {})
    facts = result["ansible_facts"]["llamacpp_cpu"]
    assert code == 0 and facts["vcpus"] >= 1 and facts["source"] == "/proc/cpuinfo"
    assert facts["family"].startswith(facts["architecture"])


def test_unknown_part_warns(run_module):
    args = {"cpuinfo_path": str(FIXTURES / "aarch64-unknown-part.txt"), "architecture": "aarch64"}
    result = run_module("cpu_facts", args)[1]
    assert "unknown Arm CPU" in json.dumps(result["warnings"])  # a str or, on 2.19, an event


def test_missing_file_fails_with_the_fix(run_module, tmp_path):
    code, result = run_module("cpu_facts", {"cpuinfo_path": str(tmp_path / "nope")})
    assert code == 1 and result["failed"]
    assert "cannot read" in result["msg"] and "cpuinfo_path" in result["msg"]


def test_wrong_architecture_fails_without_traceback(run_module):
    args = {"cpuinfo_path": str(FIXTURES / "aarch64-ampereone.txt"), "architecture": "x86_64"}
    code, result = run_module("cpu_facts", args)
    assert code == 1 and "describes an Arm CPU" in result["msg"]
    assert "Traceback" not in json.dumps(result)


def test_invalid_architecture_choice_is_rejected(run_module):
    code, result = run_module("cpu_facts", {"architecture": "sparc"})
    assert code == 1 and "architecture" in result["msg"]
