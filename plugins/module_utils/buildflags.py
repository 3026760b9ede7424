# -*- coding: utf-8 -*-
# Copyright: llamacpp.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compiler flags for ggml CMake settings, and safe step-down candidates.

A compiler may reject a flag the CPU supports (Debian 12's GCC 12 rejects armv9.2-a and
-mcpu=neoverse-v2). Candidates only ever remove features, never add them, so every
candidate still runs on the CPU.
"""

from __future__ import annotations

import re

# ggml x86 option -> the compiler flags CMake adds for it (ggml/src/ggml-cpu/CMakeLists.txt).
X86_OPTION_FLAGS = {
    "GGML_SSE42": ["-msse4.2"],
    "GGML_F16C": ["-mf16c"],
    "GGML_FMA": ["-mfma"],
    "GGML_BMI2": ["-mbmi2"],
    "GGML_AVX": ["-mavx"],
    "GGML_AVX2": ["-mavx2"],
    "GGML_AVX_VNNI": ["-mavxvnni"],
    "GGML_AVX512": ["-mavx512f", "-mavx512cd", "-mavx512vl", "-mavx512dq", "-mavx512bw"],
    "GGML_AVX512_VBMI": ["-mavx512vbmi"],
    "GGML_AVX512_VNNI": ["-mavx512vnni"],
    "GGML_AVX512_BF16": ["-mavx512bf16"],
    "GGML_AMX_TILE": ["-mamx-tile"],
    "GGML_AMX_INT8": ["-mamx-int8"],
    "GGML_AMX_BF16": ["-mamx-bf16"],
}
# Dropped first when the compiler refuses: the newest extensions.
X86_DROP_ORDER = ["GGML_AMX_BF16", "GGML_AMX_INT8", "GGML_AMX_TILE", "GGML_AVX512_BF16", "GGML_AVX512_VNNI",
                  "GGML_AVX512_VBMI", "GGML_AVX512", "GGML_AVX_VNNI", "GGML_BMI2", "GGML_F16C", "GGML_FMA",
                  "GGML_AVX2", "GGML_AVX", "GGML_SSE42"]


def _on(value):
    return str(value).upper() in ("ON", "TRUE", "1", "YES")


def compiler_flags(cmake, architecture):
    """The flags a ggml build with these CMake settings passes to the compiler."""
    if _on(cmake.get("GGML_NATIVE", "OFF")):
        return ["-mcpu=native"] if architecture == "aarch64" else ["-march=native"]
    if cmake.get("GGML_CPU_ARM_ARCH"):
        return [f"-march={cmake['GGML_CPU_ARM_ARCH']}"]
    flags = []
    for option, option_flags in X86_OPTION_FLAGS.items():
        if _on(cmake.get(option, "OFF")):
            flags.extend(option_flags)
    return flags


def _lower(base):
    """The next lower -march base that implies nothing the given one does not."""
    match = re.fullmatch(r"armv(\d+)(?:\.(\d+))?-a", base)
    if not match:
        return None
    major, minor = int(match.group(1)), int(match.group(2) or 0)
    if major >= 9:
        # Armv9.N contains Armv9.0, which contains Armv8.5 (but not 8.6's i8mm/bf16).
        return "armv9-a" if minor else "armv8.5-a"
    if major == 8 and minor > 0:
        return "armv8-a" if minor == 1 else f"armv8.{minor - 1}-a"
    return None


def _arm_candidates(march):
    base, *extensions = [part for part in march.split("+") if part]
    out, lowest = [], base
    while lowest:
        out.append("+".join([lowest] + extensions))
        if _lower(lowest) is None:
            break
        lowest = _lower(lowest)
    for keep in range(len(extensions) - 1, -1, -1):
        out.append("+".join([lowest] + extensions[:keep]))
    return out


def candidates(cmake):
    """CMake settings to try in order, each with the features it drops against the first."""
    cmake = dict(cmake)
    if _on(cmake.get("GGML_NATIVE", "OFF")):
        return [(cmake, [])]
    if cmake.get("GGML_CPU_ARM_ARCH"):
        wanted = cmake["GGML_CPU_ARM_ARCH"]
        wanted_parts = set(wanted.split("+"))
        out = []
        for march in _arm_candidates(wanted):
            dropped = sorted(wanted_parts - set(march.split("+")))
            out.append((dict(cmake, GGML_CPU_ARM_ARCH=march), dropped))
        return out
    out = [(cmake, [])]
    current, dropped = dict(cmake), []
    for option in X86_DROP_ORDER:
        if _on(current.get(option, "OFF")):
            current = dict(current, **{option: "OFF"})
            dropped = dropped + [option]
            out.append((current, list(dropped)))
    return out
