"""Settings that the controller can check alone fail site.yml and services.yml before any host
is touched: the local inventory with its hosts renamed to containers that do not exist, so
that any connection attempt would show as an unreachable host."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time

import fixtures
import pytest

NOWHERE = "llamacpp-nowhere"  # the hosts of the nowhere_inventory fixture (conftest.py)


@pytest.fixture(name="inventory")
def fixture_inventory(nowhere_inventory):
    return nowhere_inventory


def run(top, tool_env, playbook, inventory, settings):
    start = time.monotonic()
    proc = subprocess.run(["ansible-playbook", playbook, "-i", str(inventory), "-e", json.dumps(settings)],
                          cwd=top, env=dict(tool_env, ANSIBLE_FORCE_COLOR="0"), capture_output=True, text=True,
                          check=False)
    return proc, time.monotonic() - start


def recap(output):
    """host -> its PLAY RECAP counters."""
    return {m[0].strip(): dict(pair.split("=") for pair in m[1].split())
            for m in (line.split(" : ", 1) for line in output.splitlines() if " : ok=" in line)}


@pytest.mark.parametrize("playbook", ["site.yml", "playbooks/services.yml"])
def test_a_bad_port_fails_on_the_controller_in_seconds(top, tool_env, inventory, playbook):
    proc, seconds = run(top, tool_env, playbook, inventory, {"llamacpp_rpc_worker_port": 70000})
    assert proc.returncode != 0
    assert "llamacpp_rpc_worker_port must be 1-65535, got 70000" in proc.stdout, proc.stdout[-3000:]
    counters = recap(proc.stdout)
    assert all(c["unreachable"] == "0" and c["changed"] == "0" for c in counters.values()), counters
    assert seconds < 60, seconds


def test_an_ipv6_bind_address_is_refused_on_the_controller(top, tool_env, inventory):
    proc, _seconds = run(top, tool_env, "playbooks/services.yml", inventory, {"llamacpp_rpc_worker_bind": "::"})
    assert proc.returncode != 0
    assert "llamacpp_rpc_worker_bind is ::, an IPv6 address; llama.cpp's rpc-server binds IPv4 only" in proc.stdout, \
        proc.stdout[-3000:]
    assert all(c["unreachable"] == "0" for c in recap(proc.stdout).values())


def test_a_controller_model_with_a_wrong_sha256_fails_before_any_host_is_touched(top, tool_env, inventory, tmp_path):
    model = fixtures.model_path()
    wrong = hashlib.sha256(b"not the model").hexdigest()
    proc, seconds = run(top, tool_env, "site.yml", inventory,
                        {"llamacpp_main_model_files": [{"src": str(model), "sha256": wrong}]})
    assert proc.returncode != 0
    assert f"{model} is missing on the controller or its sha256" in proc.stdout, proc.stdout[-3000:]
    assert fixtures.MODEL_SHA256 in proc.stdout and "Nothing was changed" in proc.stdout
    counters = recap(proc.stdout)
    assert all(c["unreachable"] == "0" and c["changed"] == "0" for c in counters.values()), counters
    assert seconds < 60, seconds


def test_valid_settings_pass_the_controller_checks_and_reach_the_hosts(top, tool_env, inventory):
    """The positive control: with good settings the run gets past the checks, to the first
    task that connects, where the hosts that do not exist are unreachable."""
    proc, _seconds = run(top, tool_env, "playbooks/services.yml", inventory, {})
    assert proc.returncode != 0
    counters = recap(proc.stdout)
    assert all(counters[f"{NOWHERE}-{name}"]["unreachable"] == "1" for name in ("main", "worker1", "worker2")), counters
    assert "Check the settings on the controller" in proc.stdout
