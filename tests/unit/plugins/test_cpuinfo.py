"""cpu_facts logic against /proc/cpuinfo texts of the CPUs users run."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.llamacpp.cluster.plugins.module_utils.cpuinfo import (
    CpuInfoError,
    analyse,
    arm_march,
    parse_cpu_list,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "cpuinfo"


def facts_of(name, architecture="aarch64", **kwargs):
    return analyse((FIXTURES / name).read_text(), architecture, **kwargs)


@pytest.mark.parametrize("name, core, implementer, part, platform, march", [
    ("aarch64-graviton2-m6g.txt", "neoverse-n1", "0x41", "0xd0c", "AWS Graviton2", "armv8.2-a+dotprod+fp16"),
    ("aarch64-ampere-altra.txt", "neoverse-n1", "0x41", "0xd0c", "Ampere Altra", "armv8.2-a+dotprod+fp16"),
    ("aarch64-graviton3-c7g.txt", "neoverse-v1", "0x41", "0xd40", "AWS Graviton3",
     "armv8.4-a+dotprod+fp16+sve+i8mm+bf16"),
    ("aarch64-graviton4-c8g.txt", "neoverse-v2", "0x41", "0xd4f", "AWS Graviton4",
     "armv9-a+dotprod+fp16+sve2+i8mm+bf16"),
    ("aarch64-google-axion-c4a.txt", "neoverse-v2", "0x41", "0xd4f", "Google Axion",
     "armv9-a+dotprod+fp16+sve2+i8mm+bf16"),
    ("aarch64-azure-cobalt100-vm.txt", "neoverse-n2", "0x41", "0xd49", "Azure Cobalt 100 (in a VM)",
     "armv9-a+dotprod+fp16+sve2+i8mm+bf16"),
    ("aarch64-azure-cobalt100-metal.txt", "neoverse-n2", "0x6d", "0xd49", "Azure Cobalt 100",
     "armv9-a+dotprod+fp16+sve2+i8mm+bf16"),
    ("aarch64-ampereone.txt", "ampereone", "0xc0", "0xac3", "AmpereOne", "armv8.6-a+dotprod+fp16+i8mm+bf16"),
])
def test_arm_cloud_cpus_are_identified_with_their_flags(name, core, implementer, part, platform, march):
    facts, warnings = facts_of(name)
    assert (facts["core"], facts["implementer"], facts["part"]) == (core, implementer, part)
    assert platform in facts["platforms"]
    assert facts["march"] == march
    assert facts["cmake"] == {"GGML_NATIVE": "OFF", "GGML_CPU_ARM_ARCH": march}
    assert facts["family"] == f"aarch64-{march}"
    assert warnings == []


def test_cobalt_vendor_follows_the_implementer():
    assert facts_of("aarch64-azure-cobalt100-metal.txt")[0]["vendor"] == "Microsoft"
    assert facts_of("aarch64-azure-cobalt100-vm.txt")[0]["vendor"] == "ARM"


def test_ggml_features_are_listed():
    assert facts_of("aarch64-graviton3-c7g.txt")[0]["features"] == ["bf16", "dotprod", "fp16", "i8mm", "sve"]
    assert "sve" not in facts_of("aarch64-ampereone.txt")[0]["features"]
    assert "sve2" in facts_of("aarch64-graviton4-c8g.txt")[0]["features"]


def test_same_cpu_on_two_platforms_shares_a_family():
    assert facts_of("aarch64-graviton4-c8g.txt")[0]["family"] == facts_of("aarch64-google-axion-c4a.txt")[0]["family"]
    assert facts_of("aarch64-graviton3-c7g.txt")[0]["family"] != facts_of("aarch64-graviton4-c8g.txt")[0]["family"]


def test_unknown_part_gets_flags_from_features_and_a_warning():
    facts, warnings = facts_of("aarch64-unknown-part.txt")
    assert facts["core"] is None and facts["part"] == "0xdff"
    assert facts["march"] == "armv8.4-a+dotprod+fp16+sve+i8mm+bf16"
    assert len(warnings) == 1 and "unknown Arm CPU" in warnings[0]


def test_mixed_cores_use_only_what_every_core_has():
    facts = facts_of("aarch64-biglittle.txt")[0]
    assert facts["vcpus"] == 3
    assert "dotprod" not in facts["march"] and facts["march"] == "armv8.2-a+fp16"


def test_emulated_arm_without_arm_fields_gets_the_safe_baseline():
    facts, warnings = facts_of("x86_64-amd-epyc-ci-host.txt", "aarch64")
    assert facts["march"] == "armv8-a" and facts["family"] == "aarch64-armv8-a"
    assert facts["cmake"] == {"GGML_NATIVE": "OFF", "GGML_CPU_ARM_ARCH": "armv8-a"}
    assert "safe baseline" in warnings[0]


@pytest.mark.parametrize("flags, expected", [
    ("fp asimd", "armv8-a"),
    ("fp asimd atomics asimdrdm crc32", "armv8.1-a"),
    ("fp asimd atomics asimdrdm crc32 sve", "armv8.1-a+sve"),
    # SVE2 on a core below Armv8.5 markers must not jump to armv9-a.
    ("fp asimd atomics asimdrdm crc32 dcpop sve sve2", "armv8.2-a+sve2"),
    # i8mm without the Armv8.6 base markers stays an extension.
    ("fp asimd atomics asimdrdm crc32 dcpop i8mm", "armv8.2-a+i8mm"),
])
def test_march_never_claims_more_than_the_flags(flags, expected):
    assert arm_march(set(flags.split()))[0] == expected


def test_sapphire_rapids_enables_avx512_and_amx():
    facts = facts_of("x86_64-sapphire-rapids-m7i.txt", "x86_64")[0]
    cmake = facts["cmake"]
    assert cmake["GGML_NATIVE"] == "OFF"
    for option in ("GGML_AVX2", "GGML_AVX512", "GGML_AVX512_BF16", "GGML_AVX512_VNNI", "GGML_AMX_INT8",
                   "GGML_AMX_TILE", "GGML_AVX_VNNI", "GGML_FMA", "GGML_F16C"):
        assert cmake[option] == "ON", option
    assert facts["march"] is None and facts["family"].startswith("x86_64-sse42+avx+avx2")
    assert (facts["vcpus"], facts["cores"], facts["sockets"], facts["threads_per_core"]) == (4, 2, 1, 2)
    assert facts["core_name"] == "Intel(R) Xeon(R) Platinum 8488C"


def test_x86_without_amx_keeps_amx_off():
    facts = facts_of("x86_64-amd-epyc-ci-host.txt", "amd64")[0]
    assert facts["architecture"] == "x86_64"
    assert facts["cmake"]["GGML_AMX_INT8"] == "OFF" and facts["cmake"]["GGML_AVX2"] == "ON"


def test_topology_and_sve_length_from_the_live_machine():
    topology = [{"package": "0", "core": str(i)} for i in range(4)]
    facts = facts_of("aarch64-graviton3-c7g.txt", topology=topology, sve_vector_length_bytes=32)[0]
    assert (facts["cores"], facts["sockets"], facts["sve_vector_length"]) == (4, 1, 256)
    assert facts_of("aarch64-graviton2-m6g.txt", sve_vector_length_bytes=32)[0]["sve_vector_length"] is None


@pytest.mark.parametrize("text, architecture, message", [
    ("", "aarch64", "no 'processor' lines"),
    ("hello world\n", "x86_64", "no 'processor' lines"),
    ("processor : 0\nCPU implementer : 0x41\nCPU part : 0xd0c\n", "x86_64", "describes an Arm CPU"),
    ("processor : 0\nFeatures : fp\nCPU implementer : zz\n", "aarch64", "not a hexadecimal number"),
    ("processor : 0\n", "ppc64le", "not supported"),
])
def test_bad_input_is_a_clear_error(text, architecture, message):
    with pytest.raises(CpuInfoError, match=message):
        analyse(text, architecture)


def test_cpu_list_parsing():
    assert parse_cpu_list("0-3,8\n") == [0, 1, 2, 3, 8]
    with pytest.raises(CpuInfoError):
        parse_cpu_list("zero")
