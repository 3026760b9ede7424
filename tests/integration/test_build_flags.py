"""build_flags against real compilers: the host's GCC and Debian's aarch64 GCC 12."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "unit" / "fixtures" / "cpuinfo"
CROSS = "aarch64-linux-gnu-gcc"
needs_cross = pytest.mark.skipif(shutil.which(CROSS) is None, reason=f"{CROSS} missing: run make platform")


def test_host_cpu_flags_pass_the_host_compiler_unchanged(ansible_module):
    cpu = ansible_module("llamacpp.cluster.cpu_facts", {})["ansible_facts"]["llamacpp_cpu"]
    result = ansible_module("llamacpp.cluster.build_flags", {"cmake": cpu["cmake"]})
    assert result["dropped"] == [] and result["cmake"] == cpu["cmake"]
    assert result["compiler"]["version"] and result["compiler"]["target"].startswith("x86_64")
    if cpu["cmake"].get("GGML_AVX2") == "ON":
        assert "-mavx2" in result["cflags"]


@needs_cross
@pytest.mark.parametrize("fixture", sorted(p.name for p in FIXTURES.glob("aarch64-*.txt")))
def test_cpu_facts_arm_flags_are_accepted_by_gcc_12(ansible_module, fixture):
    # Every Arm CPU cpu_facts knows: a flag string the compiler rejects must never ship.
    args = {"cpuinfo_path": str(FIXTURES / fixture), "architecture": "aarch64"}
    cpu = ansible_module("llamacpp.cluster.cpu_facts", args)["ansible_facts"]["llamacpp_cpu"]
    result = ansible_module("llamacpp.cluster.build_flags",
                            {"cmake": cpu["cmake"], "architecture": "aarch64", "compiler": CROSS})
    assert result["dropped"] == [], result["rejected"]
    assert result["cflags"] == [f"-march={cpu['march']}"]


@needs_cross
def test_gcc_12_rejection_steps_down_with_a_warning(ansible_module):
    wanted = {"GGML_NATIVE": "OFF", "GGML_CPU_ARM_ARCH": "armv9.2-a+dotprod+fp16+sve2+i8mm+bf16"}
    result = ansible_module("llamacpp.cluster.build_flags",
                            {"cmake": wanted, "architecture": "aarch64", "compiler": CROSS})
    assert result["cmake"]["GGML_CPU_ARM_ARCH"] == "armv9-a+dotprod+fp16+sve2+i8mm+bf16"
    assert result["dropped"] == ["armv9.2-a"]
    assert result["rejected"][0]["cflags"] == ["-march=armv9.2-a+dotprod+fp16+sve2+i8mm+bf16"]
    assert "dropped: armv9.2-a" in json.dumps(result["warnings"])


def test_missing_compiler_is_a_clear_error(ansible_module):
    result = ansible_module("llamacpp.cluster.build_flags", {"cmake": {"GGML_NATIVE": "OFF"}, "compiler": "no-such-cc"})
    assert result["failed"] and "not found" in result["msg"] and "build-essential" in result["msg"]


def test_wrong_target_compiler_accepts_nothing(ansible_module):
    result = ansible_module("llamacpp.cluster.build_flags",
                            {"cmake": {"GGML_NATIVE": "OFF", "GGML_CPU_ARM_ARCH": "armv8.2-a+dotprod"},
                             "architecture": "aarch64", "compiler": "gcc"})
    assert result["failed"] and "accepts none" in result["msg"] and "x86_64" in result["msg"]
