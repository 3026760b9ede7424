"""The local container platform: the node image boots systemd, the script is idempotent
and reports bad state in one line that names the fix."""

from __future__ import annotations

import os
import subprocess
import time
import uuid

import fixtures
import pytest
import testinfra

IMAGE = os.environ.get("LLAMACPP_NODE_IMAGE", "localhost/llamacpp-node:bookworm")
ARM_IMAGE = os.environ.get("LLAMACPP_NODE_ARM_IMAGE", "localhost/llamacpp-node:bookworm-arm64")
TRIXIE_IMAGE = os.environ.get("LLAMACPP_NODE_TRIXIE_IMAGE", "localhost/llamacpp-node:trixie")


NATIVE_ARCH = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout.strip()
NODES = [(IMAGE, NATIVE_ARCH), (ARM_IMAGE, "arm64"), (TRIXIE_IMAGE, NATIVE_ARCH)]


@pytest.fixture(name="node", scope="module", params=NODES, ids=["native", "arm64", "trixie"])
def fixture_node(request):
    image, arch = request.param
    name = f"llamacpp-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(["podman", "run", "-d", "--rm", "--arch", arch, "--name", name, "--systemd=always", image],
                   check=True, capture_output=True)
    try:
        host = testinfra.get_host(f"podman://{name}")
        state, deadline = "", time.monotonic() + 120
        while state not in ("running", "degraded") and time.monotonic() < deadline:
            time.sleep(1)
            state = host.run("systemctl is-system-running").stdout.strip()
        yield host, state
    finally:
        subprocess.run(["podman", "rm", "-f", "-t", "10", name], check=False, capture_output=True)


def test_node_boots_systemd_as_pid_1(node):
    host, state = node
    assert state == "running"
    assert host.process.get(pid=1).comm == "systemd"


def test_node_has_what_ansible_needs(node):
    host = node[0]
    assert host.run("python3 -c 'import apt, sys; print(sys.version_info >= (3, 9))'").stdout.strip() == "True"
    assert host.package("sudo").is_installed
    assert host.file("/etc/machine-id").size > 0  # generated at boot, not baked into the image


@pytest.mark.parametrize("node", [(ARM_IMAGE, "arm64")], ids=["arm64"], indirect=True)
def test_arm64_node_runs_aarch64_binaries_through_qemu(node):
    host = node[0]
    assert host.run("uname -m").stdout.strip() == "aarch64"
    assert host.process.get(pid=1).comm == "systemd"
    with open("/proc/sys/fs/binfmt_misc/qemu-aarch64", encoding="utf-8") as entry:
        registration = entry.read().splitlines()
    assert "enabled" in registration and "interpreter /usr/bin/qemu-aarch64-static" in registration
    assert any(line.startswith("flags: ") and "F" in line[7:] for line in registration)


@pytest.mark.parametrize("node", [(TRIXIE_IMAGE, NATIVE_ARCH)], ids=["trixie"], indirect=True)
def test_trixie_node_is_debian_13(node):
    host = node[0]
    assert host.system_info.distribution == "debian" and host.system_info.codename == "trixie"
    assert host.file("/etc/debian_version").content_string.startswith("13.")


def test_platform_script_is_idempotent(top):
    result = subprocess.run(["bash", "scripts/platform.sh", "--tests", "--no-smoke"], cwd=top,
                            capture_output=True, text=True, check=True)
    assert "packages present" in result.stdout
    assert "configuration up to date" in result.stdout
    assert result.stdout.count("image present") == 3
    assert "qemu-aarch64 registered" in result.stdout
    assert "installing" not in result.stdout and "wrote" not in result.stdout
    # The molecule scenarios mount these into their builders.
    assert all((fixtures.cache_dir() / "ccache" / arch).is_dir() for arch in ("bookworm", "bookworm-arm64", "trixie"))


def test_platform_for_the_demo_leaves_out_what_only_the_tests_need(top):
    result = subprocess.run(["bash", "scripts/platform.sh", "--no-smoke"], cwd=top,
                            capture_output=True, text=True, check=True)
    assert result.stdout.count("image present") == 1
    assert "bookworm-arm64" not in result.stdout and "trixie" not in result.stdout
    packages = next(line for line in result.stdout.splitlines() if "packages present" in line)
    assert "podman" in packages and "debootstrap" in packages
    assert not {"qemu-user-static", "gcc-aarch64-linux-gnu", "shellcheck", "curl"} & set(packages.split())
    assert "qemu" not in result.stdout.replace(packages, "")
    assert "ready for the demo" in result.stdout


def test_platform_script_reports_low_disk_in_one_line(top):
    env = dict(os.environ, LLAMACPP_MIN_FREE_MIB=str(1 << 40))
    result = subprocess.run(["bash", "scripts/platform.sh", "--no-smoke"], cwd=top, env=env,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "free disk space or set LLAMACPP_CLUSTER_CACHE" in result.stderr
