"""podman_exec's nsenter method joins the container's cgroups: which cgroup.procs files it
writes, from the container process's /proc/PID/cgroup and the controller's mountinfo."""

from __future__ import annotations

from ansible_collections.llamacpp.cluster.plugins.connection.podman_exec import cgroup_procs_files

CONTAINER = "/libpod_parent/libpod-abc"

# A hybrid host (cgroup v1 controllers, the unified hierarchy beside them), as on this machine.
HYBRID_MOUNTS = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 23 0:40 / /proc rw,nosuid - proc proc rw
"""
HYBRID_PROC = f"""\
9:name=systemd:{CONTAINER}/init.scope
4:memory:{CONTAINER}
1:cpu,cpuacct:{CONTAINER}
0::{CONTAINER}
"""


def test_hybrid_host_one_file_per_hierarchy_where_the_process_is():
    assert cgroup_procs_files(HYBRID_PROC, HYBRID_MOUNTS) == [
        f"/sys/fs/cgroup/systemd{CONTAINER}/init.scope/cgroup.procs",
        f"/sys/fs/cgroup/memory{CONTAINER}/cgroup.procs",
        f"/sys/fs/cgroup/cpu,cpuacct{CONTAINER}/cgroup.procs",
        f"/sys/fs/cgroup/unified{CONTAINER}/cgroup.procs",
    ]


def test_unified_host_the_v2_hierarchy_alone():
    mounts = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
    proc = "0::/machine.slice/libpod-abc.scope/init.scope\n"
    assert cgroup_procs_files(proc, mounts) == ["/sys/fs/cgroup/machine.slice/libpod-abc.scope/init.scope/cgroup.procs"]


def test_a_hierarchy_mounted_at_a_subtree_is_joined_relative_to_it_or_left_out():
    # A controller that itself runs in a container sees its own cgroup as the mount's root.
    mounts = "30 23 0:26 /outer /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
    assert cgroup_procs_files("0::/outer/inner\n", mounts) == ["/sys/fs/cgroup/inner/cgroup.procs"]
    assert cgroup_procs_files("0::/elsewhere\n", mounts) == []


def test_controllers_without_a_mount_and_malformed_lines_are_skipped():
    mounts = "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
    proc = f"4:memory:{CONTAINER}\n8:pids:{CONTAINER}\nnot a cgroup line\n0::{CONTAINER}\n"
    assert cgroup_procs_files(proc, mounts) == [f"/sys/fs/cgroup/memory{CONTAINER}/cgroup.procs"]


def test_a_named_hierarchy_is_not_taken_for_a_controller():
    mounts = ("40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n"
              "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n")
    assert cgroup_procs_files(f"4:memory:{CONTAINER}\n", mounts) == [f"/sys/fs/cgroup/memory{CONTAINER}/cgroup.procs"]
