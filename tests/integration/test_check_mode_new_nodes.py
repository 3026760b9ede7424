"""site.yml --check on new nodes (a main node and a worker fresh from the node image, on a
network of their own): it reports what a run would do - install the toolchain and build, copy
the model, start the services - fails nothing, and changes nothing on the nodes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from scratch import Scratch  # noqa: E402  pylint: disable=wrong-import-position

PREFIX, SUBNET = "llamacpp-check", "10.89.79.0/24"


@pytest.fixture(name="new_nodes", scope="module")
def fixture_new_nodes():
    scratch = Scratch(PREFIX, SUBNET)
    try:
        scratch.up(1, 1)
        yield scratch
    finally:
        scratch.remove()


def on(node: str, command: str) -> str:
    return subprocess.run(["podman", "exec", node, "sh", "-c", command], capture_output=True, text=True,
                          check=False).stdout


def test_site_check_on_new_nodes_says_what_it_would_do_and_changes_nothing(new_nodes, top, tool_env):
    main, worker = f"{PREFIX}-main", f"{PREFIX}-worker1"
    inventory = new_nodes.dir / "inventory"
    proc = subprocess.run(["ansible-playbook", "site.yml", "-i", str(inventory), "--check"], cwd=top,
                          env=dict(tool_env, ANSIBLE_FORCE_COLOR="0"), capture_output=True, text=True, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    recap = {line.split()[0]: line for line in out.split("PLAY RECAP")[-1].splitlines() if " : ok=" in line}
    assert "failed=0" in recap[main] and "failed=0" in recap[worker], recap
    assert "changed=0" not in recap[main] and "changed=0" not in recap[worker], recap
    # The messages as one line (the YAML callback folds long ones).
    said_all = " ".join(out.split())
    for said in ("Would install the toolchain and build llama.cpp b11312", "Would put the model at",
                 "Would start llama-rpc-server and wait until it serves",
                 "Would start llama-server over the planned workers",
                 "has no llama.cpp main-node settings yet; a run of site.yml sets it up"):
        assert said in said_all, said
    # Nothing was installed, written or started on either node.
    for node in (main, worker):
        assert on(node, "ls -d /opt/llama.cpp /etc/ansible/facts.d /etc/systemd/system/llama* 2>/dev/null") == ""
        assert on(node, "dpkg-query -W -f='${Status}' build-essential nftables 2>/dev/null") == ""
        assert on(node, "id llama-rpc 2>/dev/null; id llama 2>/dev/null") == ""
