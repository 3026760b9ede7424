# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A node's memory as llama.cpp's services can use it: MemTotal, the cgroup limit (v1 or v2)
that applies to system services, and what is left after a reserve for the OS.

rpc-server reports sysconf(_SC_PHYS_PAGES) as its memory, the host's RAM even inside a
memory-limited container or a MemoryMax= slice; this reads the limits it ignores."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

# cgroup v1 reports "no limit" as the largest page-aligned signed 64-bit number.
_V1_UNLIMITED = 1 << 62


def parse_meminfo(text):
    """{field: bytes} from /proc/meminfo (kB values)."""
    fields = {}
    for line in text.splitlines():
        name, _sep, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            fields[name.strip()] = int(parts[0]) * (1024 if parts[1:2] == ["kB"] else 1)
    return fields


def parse_limit(text):
    """A cgroup memory limit file's value in bytes; None for no limit ("max", or v1's huge
    number)."""
    value = text.strip()
    if value in ("", "max"):
        return None
    number = int(value)
    return None if number >= _V1_UNLIMITED else number


def _read(path):
    try:
        with open(path) as handle:
            return handle.read()
    except (IOError, OSError):
        return None


def cgroup_limit(root="/"):
    """(cgroup version, the smallest memory limit that bounds system services, the files
    read). Reads the cgroup mount's own limit (a container's) and system.slice's, since
    the module's process may sit in another part of the tree than the services do."""
    base = os.path.join(root, "sys/fs/cgroup")
    if os.path.exists(os.path.join(base, "cgroup.controllers")):
        version, names = 2, ["memory.max", "system.slice/memory.max"]
    elif os.path.isdir(os.path.join(base, "memory")):
        version, names = 1, ["memory/memory.limit_in_bytes", "memory/system.slice/memory.limit_in_bytes"]
    else:
        return None, None, []
    limits, read = [], []
    for name in names:
        text = _read(os.path.join(base, name))
        if text is None:
            continue
        read.append("/sys/fs/cgroup/" + name)
        limit = parse_limit(text)
        if limit is not None:
            limits.append(limit)
    return version, (min(limits) if limits else None), read


def usable_memory(mem_total, cgroup_limit, reserve):
    """The bytes a node can give llama.cpp: the smaller of MemTotal and its cgroup limit
    (None when unlimited), minus the reserve for the OS; never below zero."""
    bound = mem_total if cgroup_limit is None else min(mem_total, cgroup_limit)
    return max(0, bound - reserve)


def node_memory(reserve, root="/"):
    """The node's memory facts: MemTotal, MemAvailable, the cgroup limit and usable bytes
    (the smaller of MemTotal and the limit, minus reserve)."""
    text = _read(os.path.join(root, "proc/meminfo"))
    if text is None:
        raise ValueError("cannot read /proc/meminfo")
    meminfo = parse_meminfo(text)
    if "MemTotal" not in meminfo:
        raise ValueError("/proc/meminfo has no MemTotal line")
    version, limit, read = cgroup_limit(root)
    total = meminfo["MemTotal"]
    return {
        "mem_total_bytes": total,
        "mem_available_bytes": meminfo.get("MemAvailable"),
        "cgroup_version": version,
        "cgroup_limit_bytes": limit,
        "cgroup_files": read,
        "reserve_bytes": reserve,
        "usable_bytes": usable_memory(total, limit, reserve),
    }
