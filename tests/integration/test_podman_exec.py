"""The podman_exec connection plugin against a real container of the node image, with each
exec_method: a module runs in one pipelined `podman exec` or `nsenter` (the latter in the
container's own cgroups, namespaces and environment), files go in and come back byte for
byte (also as another user, which auto hands to podman exec), and a container that is not
running is unreachable with a message that names it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
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


def runs_of(log: str) -> list[str]:
    """The commands the plugin ran to reach the container, but podman inspect's."""
    return [line for line in log.splitlines()
            if "RUN [" in line and ("podman" in line or "nsenter" in line) and "'inspect'" not in line]


def method(name: str) -> tuple:
    return ("-e", f"ansible_podman_exec_method={name}")


@pytest.mark.parametrize("exec_method,entry", [("podman", "'exec', '--interactive'"), ("nsenter", "'--target'")])
def test_a_module_runs_in_one_pipelined_call(container, adhoc, exec_method, entry):
    result, log = adhoc(container, "ansible.builtin.command", "cat /etc/debian_version", method(exec_method))
    assert result["rc"] == 0 and result["stdout"].startswith("12."), result
    runs = runs_of(log)
    assert len(runs) == 1, runs
    assert entry in runs[0] and "/usr/bin/python3" in runs[0]


def test_auto_enters_with_nsenter_as_root(container, adhoc):
    _result, log = adhoc(container, "ansible.builtin.ping")
    assert [run for run in runs_of(log) if "nsenter" in run], log


def test_nsenter_gives_the_command_the_container_s_cgroups_namespaces_and_environment(container, adhoc):
    probe = "cat /proc/self/cgroup; readlink /proc/self/ns/net /proc/self/ns/mnt /proc/self/ns/pid; hostname; echo PATH=$PATH"
    result = adhoc(container, "ansible.builtin.shell", probe, method("nsenter"))[0]
    assert result["rc"] == 0, result
    podman = subprocess.run(["podman", "exec", container, "sh", "-c", probe],
                            capture_output=True, text=True, check=True).stdout
    assert result["stdout"].splitlines() == podman.splitlines()


def test_without_pipelining_the_same_module_still_runs(container, adhoc):
    result, log = adhoc(container, "ansible.builtin.command", "cat /etc/debian_version",
                        ("-e", "ansible_pipelining=false"))
    assert result["rc"] == 0 and result["stdout"].startswith("12."), result
    assert len(runs_of(log)) > 2, log  # temporary directory, chmod, run, cleanup


def test_nsenter_with_another_user_is_refused_with_the_way_out(container, adhoc):
    result = adhoc(container, "ansible.builtin.ping", "", ("-e", "ansible_user=nobody", *method("nsenter")))[0]
    assert result.get("unreachable"), result
    assert "remote_user is set" in result["msg"] and "exec_method podman" in result["msg"], result


@pytest.mark.parametrize("user", ["", "nobody"])
def test_files_go_in_and_come_back_unchanged(container, adhoc, tmp_path, user):
    payload = bytes(range(256)) * 4096 + b"'quote\" $HOME `x`\n"  # binary, 1 MiB, shell metacharacters
    src = tmp_path / "payload.bin"
    src.write_bytes(payload)
    target = f"/tmp/in dir {user or 'root'}/payload 'x'.bin"
    # nobody's home (/nonexistent) cannot hold Ansible's temporary directory. Root's files go
    # through nsenter, nobody's (auto) through podman exec.
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


@pytest.mark.parametrize("exec_method", ["podman", "nsenter"])
def test_a_missing_container_is_unreachable_with_its_name(adhoc, exec_method):
    name = f"llamacpp-test-absent-{uuid.uuid4().hex[:8]}"
    result = adhoc(name, "ansible.builtin.ping", "", method(exec_method))[0]
    assert result.get("unreachable"), result
    assert name in result["msg"] and "podman ps" in result["msg"], result


@pytest.mark.parametrize("exec_method", ["podman", "nsenter"])
def test_a_process_a_task_leaves_running_outlives_its_worker(container, tool_env, top, exec_method):
    """Ansible ends a worker that is still alive with killpg on the worker's process group (a
    SIGTERM to the ansible process, or a worker still exiting at the end of the run). What a
    task started in the background stays, as it does under podman exec (conmon's session)."""
    marker = f"sleep {4000 + (exec_method == 'nsenter')}"
    cmd = ["ansible", "all", "-i", f"{container},", "-c", "llamacpp.cluster.podman_exec",
           "-e", "ansible_python_interpreter=/usr/bin/python3", *method(exec_method), "-m", "ansible.builtin.shell",
           "-a", f"nohup {marker} > /dev/null 2>&1 < /dev/null & sleep 120"]
    proc = subprocess.Popen(cmd, cwd=top, env=tool_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def running() -> bool:
        return subprocess.run(["podman", "exec", container, "pgrep", "-fx", marker],
                              capture_output=True, check=False).returncode == 0

    try:
        for _attempt in range(300):
            if running():
                break
            time.sleep(0.1)
        assert running(), f"{marker} did not start"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        time.sleep(1)
        assert running(), f"{marker} ended with the worker"
    finally:
        proc.kill()
        subprocess.run(["podman", "exec", container, "pkill", "-f", "sleep 120"], check=False, capture_output=True)
