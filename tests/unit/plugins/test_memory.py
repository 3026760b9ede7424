"""A node's usable memory: /proc/meminfo and cgroup v1/v2 limits, on fake /proc and /sys trees."""

from __future__ import annotations

import pytest

from ansible_collections.llamacpp.cluster.plugins.module_utils import memory

MIB = 1024 ** 2
MEMINFO = "MemTotal:       24536680 kB\nMemFree:        20000000 kB\nMemAvailable:   22000000 kB\nHugePages_Total:       0\n"


def tree(tmp_path, files):
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(tmp_path)


def test_meminfo_in_bytes():
    fields = memory.parse_meminfo(MEMINFO)
    assert fields["MemTotal"] == 24536680 * 1024 and fields["MemAvailable"] == 22000000 * 1024
    assert fields["HugePages_Total"] == 0


@pytest.mark.parametrize("text, limit", [("max\n", None), ("9223372036854771712\n", None),
                                         ("1073741824\n", 1073741824), ("67108864", 67108864)])
def test_limit_values(text, limit):
    assert memory.parse_limit(text) == limit


def test_usable_memory_takes_the_cgroup_limit_and_the_reserve():
    gib = 1024 * MIB
    assert memory.usable_memory(24 * gib, None, 512 * MIB) == 24 * gib - 512 * MIB
    assert memory.usable_memory(24 * gib, gib, 256 * MIB) == 768 * MIB
    assert memory.usable_memory(gib, 2 * gib, 2 * gib) == 0


def test_a_cgroup_v1_container_limit(tmp_path):
    root = tree(tmp_path, {"proc/meminfo": MEMINFO,
                           "sys/fs/cgroup/memory/memory.limit_in_bytes": "1073741824\n",
                           "sys/fs/cgroup/memory/system.slice/memory.limit_in_bytes": "9223372036854771712\n"})
    facts = memory.node_memory(256 * MIB, root)
    assert facts["cgroup_version"] == 1 and facts["cgroup_limit_bytes"] == 1073741824
    assert facts["usable_bytes"] == 1073741824 - 256 * MIB
    assert facts["cgroup_files"] == ["/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                     "/sys/fs/cgroup/memory/system.slice/memory.limit_in_bytes"]


def test_a_cgroup_v2_system_slice_limit_is_the_smaller(tmp_path):
    root = tree(tmp_path, {"proc/meminfo": MEMINFO, "sys/fs/cgroup/cgroup.controllers": "cpu memory\n",
                           "sys/fs/cgroup/system.slice/memory.max": "2147483648\n"})
    facts = memory.node_memory(0, root)
    assert facts["cgroup_version"] == 2 and facts["cgroup_limit_bytes"] == 2147483648
    assert facts["usable_bytes"] == 2147483648


def test_no_limit_leaves_memtotal_minus_the_reserve(tmp_path):
    root = tree(tmp_path, {"proc/meminfo": MEMINFO, "sys/fs/cgroup/cgroup.controllers": "memory\n",
                           "sys/fs/cgroup/system.slice/memory.max": "max\n"})
    facts = memory.node_memory(512 * MIB, root)
    assert facts["cgroup_limit_bytes"] is None
    assert facts["usable_bytes"] == 24536680 * 1024 - 512 * MIB


def test_no_cgroup_memory_controller(tmp_path):
    facts = memory.node_memory(0, tree(tmp_path, {"proc/meminfo": MEMINFO}))
    assert (facts["cgroup_version"], facts["cgroup_limit_bytes"], facts["usable_bytes"]) == (None, None, 24536680 * 1024)


def test_a_reserve_larger_than_the_node_leaves_nothing(tmp_path):
    root = tree(tmp_path, {"proc/meminfo": MEMINFO, "sys/fs/cgroup/memory/memory.limit_in_bytes": "67108864\n"})
    assert memory.node_memory(128 * MIB, root)["usable_bytes"] == 0


def test_unreadable_meminfo_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="cannot read /proc/meminfo"):
        memory.node_memory(0, str(tmp_path))


def test_the_module_reports_this_machine(run_module):
    rc, result = run_module("memory_facts", {"reserve_mib": 64})
    facts = result["ansible_facts"]["llamacpp_memory"]
    assert rc == 0 and not result["changed"]
    assert facts["mem_total_bytes"] > 0 and facts["reserve_bytes"] == 64 * MIB
    bound = min(facts["mem_total_bytes"], facts["cgroup_limit_bytes"] or facts["mem_total_bytes"])
    assert facts["usable_bytes"] == bound - 64 * MIB


def test_the_module_refuses_a_negative_reserve(run_module):
    rc, result = run_module("memory_facts", {"reserve_mib": -1})
    assert rc != 0 and result["msg"] == "reserve_mib must be >= 0, got -1"
