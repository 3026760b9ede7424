# -*- coding: utf-8 -*-
# Copyright: llamacpp.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""CPU identification and ggml build settings from /proc/cpuinfo.

Pure functions, no Ansible imports: the cpu_facts module and the unit tests share them.
"""

from __future__ import annotations

import re

# (implementer, part) -> (core key, core name, platforms known to use it)
ARM_CORES = {
    (0x41, 0xD08): ("cortex-a72", "Cortex-A72", ["AWS Graviton (a1)"]),
    (0x41, 0xD0C): ("neoverse-n1", "Neoverse N1", ["AWS Graviton2", "Ampere Altra"]),
    (0x41, 0xD40): ("neoverse-v1", "Neoverse V1", ["AWS Graviton3"]),
    (0x41, 0xD49): ("neoverse-n2", "Neoverse N2", ["Azure Cobalt 100 (in a VM)"]),
    (0x41, 0xD4F): ("neoverse-v2", "Neoverse V2", ["AWS Graviton4", "Google Axion", "NVIDIA Grace"]),
    (0x41, 0xD84): ("neoverse-v3", "Neoverse V3", []),
    (0x41, 0xD8E): ("neoverse-n3", "Neoverse N3", []),
    (0x6D, 0xD49): ("neoverse-n2", "Neoverse N2", ["Azure Cobalt 100"]),
    (0xC0, 0xAC3): ("ampereone", "AmpereOne", ["AmpereOne"]),
    (0xC0, 0xAC4): ("ampereone-a", "AmpereOne A", ["AmpereOne"]),
}
ARM_IMPLEMENTERS = {0x41: "ARM", 0x42: "Broadcom", 0x48: "HiSilicon", 0x4E: "NVIDIA", 0x50: "APM",
                    0x51: "Qualcomm", 0x61: "Apple", 0x6D: "Microsoft", 0xC0: "Ampere"}

# Architecture levels, highest first, with /proc/cpuinfo features that prove each one.
# A level is chosen only when all of its markers (and those of the levels below) are present,
# so the base never implies an instruction the CPU lacks.
_ARM_LEVELS = [
    ("armv8.1-a", {"atomics", "asimdrdm", "crc32"}),
    ("armv8.2-a", {"dcpop"}),
    ("armv8.3-a", {"jscvt", "fcma", "lrcpc"}),
    ("armv8.4-a", {"dit", "uscat", "ilrcpc", "flagm"}),
    ("armv8.5-a", {"sb", "frint", "flagm2"}),
    ("armv8.6-a", {"i8mm", "bf16"}),
]

# ggml-relevant Arm features: name -> the cpuinfo flags that must all be present.
ARM_GGML_FEATURES = {
    "dotprod": {"asimddp"},
    "fp16": {"fphp", "asimdhp"},
    "i8mm": {"i8mm"},
    "bf16": {"bf16"},
    "sve": {"sve"},
    "sve2": {"sve2"},
    "sme": {"sme"},
}
# Extensions added to -march, in order. SME is reported but left out: GCC 12 does not know
# +sme and ggml uses it only through KleidiAI.
_ARM_MARCH_EXTENSIONS = ["dotprod", "fp16", "sve", "sve2", "i8mm", "bf16"]

# ggml CMake option -> the x86 cpuinfo flags it requires.
X86_GGML_OPTIONS = [
    ("GGML_SSE42", {"sse4_2"}),
    ("GGML_AVX", {"avx"}),
    ("GGML_AVX2", {"avx2"}),
    ("GGML_FMA", {"fma"}),
    ("GGML_F16C", {"f16c"}),
    ("GGML_BMI2", {"bmi2"}),
    ("GGML_AVX_VNNI", {"avx_vnni"}),
    ("GGML_AVX512", {"avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"}),
    ("GGML_AVX512_VBMI", {"avx512vbmi"}),
    ("GGML_AVX512_VNNI", {"avx512_vnni"}),
    ("GGML_AVX512_BF16", {"avx512_bf16"}),
    ("GGML_AMX_TILE", {"amx_tile"}),
    ("GGML_AMX_INT8", {"amx_int8"}),
    ("GGML_AMX_BF16", {"amx_bf16"}),
]

ARCH_ALIASES = {"aarch64": "aarch64", "arm64": "aarch64", "x86_64": "x86_64", "amd64": "x86_64"}
ARM_BASELINE = "armv8-a"


class CpuInfoError(ValueError):
    """The input cannot be analysed; the message says why and what to pass instead."""


def parse_cpuinfo(text):
    """Split /proc/cpuinfo into one dict per processor block, plus the trailing global block."""
    blocks, current = [], {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
                current = {}
            continue
        key, sep, value = line.partition(":")
        if sep:
            current[key.strip()] = value.strip()
    if current:
        blocks.append(current)
    return blocks


def _hex(value, what):
    try:
        return int(value, 16)
    except (TypeError, ValueError):
        raise CpuInfoError(f"'{what}' is '{value}', not a hexadecimal number")


def normalise_architecture(architecture):
    arch = ARCH_ALIASES.get((architecture or "").lower())
    if arch is None:
        raise CpuInfoError(
            f"architecture '{architecture}' is not supported; use one of {', '.join(sorted(ARCH_ALIASES))}"
        )
    return arch


def arm_march(flags):
    """The -march value for a set of Arm cpuinfo feature flags."""
    present = {name for name, needs in ARM_GGML_FEATURES.items() if needs <= flags}
    base, proven = ARM_BASELINE, set()
    for level, markers in _ARM_LEVELS:
        proven |= markers
        if not proven <= flags:
            break
        base = level
    if "sve2" in present and base in ("armv8.5-a", "armv8.6-a"):
        base = "armv9-a"  # Armv9.0 = Armv8.5 + SVE2
    extensions = [ext for ext in _ARM_MARCH_EXTENSIONS if ext in present]
    if "sve2" in extensions and "sve" in extensions:
        extensions.remove("sve")  # +sve2 implies +sve
    return "+".join([base] + extensions), sorted(present)


def _arm(blocks, warnings):
    cpus = [b for b in blocks if "processor" in b]
    first = next((b for b in cpus if "CPU implementer" in b or "Features" in b), None)
    if first is None:
        warnings.append(
            "this aarch64 host's /proc/cpuinfo has no Arm fields (emulation or an unusual kernel); "
            f"using the safe baseline -march={ARM_BASELINE}: the build runs everywhere but without "
            "dotprod/i8mm/SVE speed-ups"
        )
        return {"implementer": None, "vendor": None, "part": None, "core": None, "core_name": None,
                "platforms": [], "features": [], "flags": [], "march": ARM_BASELINE,
                "cmake": {"GGML_NATIVE": "OFF", "GGML_CPU_ARM_ARCH": ARM_BASELINE},
                "family": f"aarch64-{ARM_BASELINE}"}
    implementer = _hex(first.get("CPU implementer"), "CPU implementer") if "CPU implementer" in first else None
    part = _hex(first.get("CPU part"), "CPU part") if "CPU part" in first else None
    # Features common to every CPU: a big.LITTLE mix must run on the smallest core.
    flag_sets = [set(b.get("Features", "").split()) for b in cpus if "Features" in b]
    flags = set.intersection(*flag_sets) if flag_sets else set()
    known = ARM_CORES.get((implementer, part))
    if known is None and implementer is not None:
        warnings.append(
            f"unknown Arm CPU (implementer 0x{implementer:02x}, part 0x{(part or 0):03x}); "
            "build flags come from its feature list"
        )
    march, features = arm_march(flags)
    return {
        "implementer": None if implementer is None else f"0x{implementer:02x}",
        "vendor": ARM_IMPLEMENTERS.get(implementer),
        "part": None if part is None else f"0x{part:03x}",
        "core": known[0] if known else None,
        "core_name": known[1] if known else None,
        "platforms": list(known[2]) if known else [],
        "features": features,
        "flags": sorted(flags),
        "march": march,
        "cmake": {"GGML_NATIVE": "OFF", "GGML_CPU_ARM_ARCH": march},
        "family": f"aarch64-{march}",
    }


def _x86(blocks):
    cpus = [b for b in blocks if "processor" in b]
    flag_sets = [set(b.get("flags", "").split()) for b in cpus if "flags" in b]
    flags = set.intersection(*flag_sets) if flag_sets else set()
    cmake = {"GGML_NATIVE": "OFF"}
    enabled = []
    for option, needs in X86_GGML_OPTIONS:
        on = needs <= flags
        cmake[option] = "ON" if on else "OFF"
        if on:
            enabled.append(option[len("GGML_"):].lower())
    ggml_x86 = {"avx", "avx2", "fma", "f16c", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16"}
    features = sorted(f for f in flags if f in ggml_x86 or f.startswith("avx512"))
    first = cpus[0] if cpus else {}
    return {
        "implementer": None,
        "vendor": first.get("vendor_id"),
        "part": None,
        "core": None,
        "core_name": first.get("model name"),
        "platforms": [],
        "features": features,
        "flags": sorted(flags),
        "march": None,
        "cmake": cmake,
        "family": "x86_64-" + ("+".join(enabled) or "generic"),
    }


def _counts(blocks, topology):
    cpus = [b for b in blocks if "processor" in b]
    vcpus = len(cpus)
    if topology:
        packages = {t["package"] for t in topology}
        cores = {(t["package"], t["core"]) for t in topology}
        return vcpus, len(cores), len(packages)
    pairs = {(b.get("physical id"), b.get("core id")) for b in cpus if "core id" in b}
    sockets = len({b.get("physical id") for b in cpus if "physical id" in b}) or 1
    return vcpus, (len(pairs) or vcpus), sockets


def analyse(text, architecture, topology=None, sve_vector_length_bytes=None):
    """Return the llamacpp_cpu facts for a /proc/cpuinfo text and an architecture.

    ``topology`` is a list of {"package", "core"} per online CPU (from sysfs) when known;
    ``sve_vector_length_bytes`` the kernel's default SVE vector length when known.
    """
    arch = normalise_architecture(architecture)
    blocks = parse_cpuinfo(text or "")
    if not any("processor" in b for b in blocks):
        raise CpuInfoError("the text has no 'processor' lines, so it is not a /proc/cpuinfo")
    looks_arm = any("CPU implementer" in b for b in blocks)
    if arch == "x86_64" and looks_arm:
        raise CpuInfoError("the cpuinfo describes an Arm CPU (it has 'CPU implementer'), but the architecture is x86_64")
    warnings = []
    facts = _arm(blocks, warnings) if arch == "aarch64" else _x86(blocks)
    vcpus, cores, sockets = _counts(blocks, topology)
    sve_bits = None
    if arch == "aarch64" and "sve" in facts["features"] and sve_vector_length_bytes:
        sve_bits = int(sve_vector_length_bytes) * 8
    facts.update({"architecture": arch, "vcpus": vcpus, "cores": cores, "sockets": sockets,
                  "threads_per_core": max(1, vcpus // cores) if cores else 1,
                  "sve_vector_length": sve_bits})
    return facts, warnings


def parse_cpu_list(text):
    """Expand a sysfs CPU list such as '0-3,8' into integers."""
    cpus = []
    for item in (text or "").strip().split(","):
        if not item:
            continue
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", item.strip())
        if not match:
            raise CpuInfoError(f"'{text.strip()}' is not a CPU list")
        low, high = int(match.group(1)), int(match.group(2) or match.group(1))
        cpus.extend(range(low, high + 1))
    return cpus
