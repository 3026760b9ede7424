"""Memory limits and peaks of local podman containers, read and set from the host on their
cgroup v1 memory controller (as `podman run --memory` sets it; podman cannot lift a limit
again, -1 here does). Used by the placement benchmark and the tests of the demo's cluster."""

from __future__ import annotations

import subprocess
from pathlib import Path

CGROUP_V1_MEMORY = Path("/sys/fs/cgroup/memory")
UNLIMITED = 1 << 62  # what cgroup v1 reports for "no limit" is near 2**63, page-rounded


class CgroupError(RuntimeError):
    pass


def memory_cgroup(name: str) -> Path:
    """The container's memory cgroup directory on the host."""
    proc = subprocess.run(["podman", "inspect", "-f", "{{.State.CgroupPath}}", name],
                          capture_output=True, text=True, check=False)
    if proc.returncode:
        raise CgroupError(f"{name} is not a local podman container: {proc.stderr.strip()}")
    directory = CGROUP_V1_MEMORY / proc.stdout.strip().lstrip("/")
    if not (directory / "memory.limit_in_bytes").is_file():
        raise CgroupError(f"{name}: no cgroup v1 memory controller at {directory}")
    return directory


def memory_limit(name: str) -> int | None:
    value = int((memory_cgroup(name) / "memory.limit_in_bytes").read_text())
    return None if value >= UNLIMITED else value


def set_memory_limit(name: str, limit: int | None) -> None:
    (memory_cgroup(name) / "memory.limit_in_bytes").write_text("-1" if limit is None else str(limit))


def reset_memory_peak(name: str) -> None:
    (memory_cgroup(name) / "memory.max_usage_in_bytes").write_text("0")


def limit_hits(name: str) -> int:
    """How often the cgroup's usage reached its limit (the kernel then reclaims, or OOM-kills)."""
    return int((memory_cgroup(name) / "memory.failcnt").read_text())


def memory_peak(name: str) -> int:
    return int((memory_cgroup(name) / "memory.max_usage_in_bytes").read_text())


def oom_kills(name: str) -> int:
    control = (memory_cgroup(name) / "memory.oom_control").read_text()
    return int(next(line.split()[1] for line in control.splitlines() if line.startswith("oom_kill ")))


def drop_page_cache(name: str) -> None:
    """Reclaims what the container's cgroup can give back (page cache): cgroup v1's
    memory.force_empty, which leaves the memory its processes use."""
    (memory_cgroup(name) / "memory.force_empty").write_text("0")


CGROUP_V1_CPU = Path("/sys/fs/cgroup/cpu")
CGROUP_V2 = Path("/sys/fs/cgroup")


def set_cpu_shares(name: str, shares: int) -> None:
    """The container's CPU weight against the other containers (cgroup v1 cpu.shares, 1024 by
    default; on cgroup v2 the equivalent cpu.weight). The tests of the demo's cluster raise
    their nodes' when checks run beside them (tests/run_suite.py)."""
    proc = subprocess.run(["podman", "inspect", "-f", "{{.State.CgroupPath}}", name],
                          capture_output=True, text=True, check=False)
    if proc.returncode:
        raise CgroupError(f"{name} is not a local podman container: {proc.stderr.strip()}")
    relative = proc.stdout.strip().lstrip("/")
    if (CGROUP_V1_CPU / relative / "cpu.shares").is_file():
        (CGROUP_V1_CPU / relative / "cpu.shares").write_text(str(shares))
    elif (CGROUP_V2 / relative / "cpu.weight").is_file():
        # systemd's and the kernel's mapping of shares (2..262144) to weights (1..10000)
        (CGROUP_V2 / relative / "cpu.weight").write_text(str(1 + (max(2, shares) - 2) * 9999 // 262142))
    else:
        raise CgroupError(f"{name}: no cpu.shares (cgroup v1) nor cpu.weight (v2) under {relative}")
