"""Step-down candidates for compiler-rejected CPU flags: only ever fewer features."""

from __future__ import annotations

from ansible_collections.llamacpp.cluster.plugins.module_utils.buildflags import (
    candidates,
    compiler_flags,
)


def arch_values(march):
    return [pair[0]["GGML_CPU_ARM_ARCH"] for pair in candidates({"GGML_NATIVE": "OFF", "GGML_CPU_ARM_ARCH": march})]


def test_arm_steps_down_the_base_before_dropping_extensions():
    values = arch_values("armv9.2-a+dotprod+sve2+i8mm")
    assert values[:3] == ["armv9.2-a+dotprod+sve2+i8mm", "armv9-a+dotprod+sve2+i8mm", "armv8.5-a+dotprod+sve2+i8mm"]
    assert values[-4:] == ["armv8-a+dotprod+sve2+i8mm", "armv8-a+dotprod+sve2", "armv8-a+dotprod", "armv8-a"]


def test_armv9_never_steps_to_armv8_6_which_implies_i8mm_and_bf16():
    assert "armv8.6-a+sve2" not in arch_values("armv9-a+sve2")
    assert arch_values("armv9-a+sve2")[1] == "armv8.5-a+sve2"


def test_dropped_names_what_each_candidate_leaves_out():
    pairs = candidates({"GGML_NATIVE": "OFF", "GGML_CPU_ARM_ARCH": "armv8.2-a+dotprod+fp16"})
    assert pairs[0][1] == []
    assert pairs[-1] == ({"GGML_NATIVE": "OFF", "GGML_CPU_ARM_ARCH": "armv8-a"}, ["armv8.2-a", "dotprod", "fp16"])


def test_x86_drops_the_newest_extensions_first():
    wanted = {"GGML_NATIVE": "OFF", "GGML_AVX2": "ON", "GGML_AVX512": "ON", "GGML_AMX_INT8": "ON", "GGML_FMA": "OFF"}
    pairs = candidates(wanted)
    expected = [[], ["GGML_AMX_INT8"], ["GGML_AMX_INT8", "GGML_AVX512"], ["GGML_AMX_INT8", "GGML_AVX512", "GGML_AVX2"]]
    assert [pair[1] for pair in pairs] == expected
    assert all(pair[0]["GGML_FMA"] == "OFF" for pair in pairs)  # never turned on


def test_native_is_tried_as_is():
    assert candidates({"GGML_NATIVE": "ON"}) == [({"GGML_NATIVE": "ON"}, [])]


def test_compiler_flags_match_ggml_cmake():
    assert compiler_flags({"GGML_NATIVE": "OFF", "GGML_CPU_ARM_ARCH": "armv8.2-a+dotprod"}, "aarch64") == \
        ["-march=armv8.2-a+dotprod"]
    assert compiler_flags({"GGML_NATIVE": "OFF", "GGML_AVX512": "ON", "GGML_F16C": "ON"}, "x86_64") == \
        ["-mf16c", "-mavx512f", "-mavx512cd", "-mavx512vl", "-mavx512dq", "-mavx512bw"]
    assert compiler_flags({"GGML_NATIVE": "ON"}, "aarch64") == ["-mcpu=native"]
    assert compiler_flags({"GGML_NATIVE": "ON"}, "x86_64") == ["-march=native"]
