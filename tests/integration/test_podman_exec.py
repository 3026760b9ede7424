"""The podman_exec connection plugin against a real container of the node image: a module
runs in one pipelined `podman exec`, files go in and come back byte for byte (also as
another user), and a container that is not running is unreachable with a message that
names it."""

from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest

IMAGE = os.environ.get("LLAMACPP_NODE_IMAGE", "localhost/llamacpp-node:bookworm")


@pytest.fixture(name="container", scope="module")
def fixture_container():
    """A plain (no systemd) container of the node image, removed afterwards."""
    name = f"llamacpp-test-exec-{uuid.uuid4().hex[:8]}"
    subprocess.run(["podman", "run", "-d", "--rm", "--name", name, IMAGE, "sleep", "600"],
                   check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run(["podman", "rm", "-f", "-t", "0", name], check=False, capture_output=True)


@pytest.fixture(name="adhoc")
def fixture_adhoc(tool_env, top):
    """Run one ad-hoc module on a container through the plugin; (result dict, -vvv log)."""

    def run(name: str, module: str, args: str = "", extra: tuple = ()) -> tuple[dict, str]:
        env = dict(tool_env, ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="json")
        cmd = ["ansible", "all", "-i", f"{name},", "-c", "llamacpp.cluster.podman_exec",
               "-e", "ansible_python_interpreter=/usr/bin/python3", "-m", module, "-vvv", *extra]
        if args:
            cmd += ["-a", args]
        proc = subprocess.run(cmd, cwd=top, env=env, capture_output=True, text=True, check=False)
        start = proc.stdout.find("{\n")
        if start < 0:
            pytest.fail(f"no JSON from {' '.join(cmd)}:\n{proc.stdout}\n{proc.stderr}")
        result = json.loads(proc.stdout[start:])
        return result["plays"][0]["tasks"][0]["hosts"][name], proc.stdout + proc.stderr

    return run


def podman_runs(log: str) -> list[str]:
    return [line for line in log.splitlines() if "RUN [" in line and "podman" in line]


def test_a_module_runs_in_one_pipelined_exec(container, adhoc):
    result, log = adhoc(container, "ansible.builtin.command", "cat /etc/debian_version")
    assert result["rc"] == 0 and result["stdout"].startswith("12."), result
    runs = podman_runs(log)
    assert len(runs) == 1, runs
    assert "'exec', '--interactive'" in runs[0] and "/usr/bin/python3" in runs[0]


def test_without_pipelining_the_same_module_still_runs(container, adhoc):
    result, log = adhoc(container, "ansible.builtin.command", "cat /etc/debian_version",
                        ("-e", "ansible_pipelining=false"))
    assert result["rc"] == 0 and result["stdout"].startswith("12."), result
    assert len(podman_runs(log)) > 2, log  # temporary directory, chmod, run, cleanup


@pytest.mark.parametrize("user", ["", "nobody"])
def test_files_go_in_and_come_back_unchanged(container, adhoc, tmp_path, user):
    payload = bytes(range(256)) * 4096 + b"'quote\" $HOME `x`\n"  # binary, 1 MiB, shell metacharacters
    src = tmp_path / "payload.bin"
    src.write_bytes(payload)
    target = f"/tmp/in dir {user or 'root'}/payload 'x'.bin"
    # nobody's home (/nonexistent) cannot hold Ansible's temporary directory.
    extra = ("-e", f"ansible_user={user}", "-e", "ansible_remote_tmp=/tmp/.ansible-nobody") if user else ()
    result = adhoc(container, "ansible.builtin.file", f"path='{os.path.dirname(target)}' state=directory mode=0777")[0]
    assert not result.get("failed"), result
    result = adhoc(container, "ansible.builtin.copy", f"src={src} dest=\"{target}\" mode=0644", extra)[0]
    assert result.get("changed") and not result.get("failed"), result
    owner = subprocess.run(["podman", "exec", container, "stat", "-c", "%U", target],
                           capture_output=True, text=True, check=True).stdout.strip()
    assert owner == (user or "root")
    fetched = tmp_path / "fetched"
    result = adhoc(container, "ansible.builtin.fetch", f"src=\"{target}\" dest={fetched}/ flat=true", extra)[0]
    assert not result.get("failed"), result
    assert (fetched / "payload 'x'.bin").read_bytes() == payload


def test_a_missing_container_is_unreachable_with_its_name(adhoc):
    name = f"llamacpp-test-absent-{uuid.uuid4().hex[:8]}"
    result = adhoc(name, "ansible.builtin.ping")[0]
    assert result.get("unreachable"), result
    assert name in result["msg"] and "podman ps" in result["msg"], result
