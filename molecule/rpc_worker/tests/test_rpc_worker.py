"""Verify the rpc_worker scenario: a hardened rpc-server reachable from the main node only,
built by each worker for itself (llamacpp_build_strategy per_host)."""

import json
import os
import re
import time

import pytest
import testinfra

WORKERS = ("llamacpp-rpc-worker1", "llamacpp-rpc-worker2")
PORT = 50052


def node(name):
    return testinfra.get_host(f"podman://{name}")


def probe(source, target, port=PORT):
    """'connected', 'refused' or 'timeout' for a TCP connection from source to target:port;
    anything else (no name, no python, a container that is down) fails the test."""
    code = (f"import socket\ntry:\n socket.create_connection(('{target}', {port}), timeout=3).close(); print('connected')\n"
            "except ConnectionRefusedError: print('refused')\nexcept socket.timeout: print('timeout')")
    result = source.run(f"python3 -c \"{code}\"")
    assert result.rc == 0 and result.stdout.strip() in ("connected", "refused", "timeout"), result
    return result.stdout.strip()


def connects(source, target):
    return probe(source, target) == "connected"


def dropped(worker):
    """Packets counted by the allowlist's drop rule."""
    return int(re.search(r"counter packets (\d+) bytes \d+ drop",
                         worker.check_output("nft list chain inet llamacpp_rpc input")).group(1))


@pytest.fixture(name="worker")
def fixture_worker(host):
    assert host.backend.get_hostname() in WORKERS  # molecule.yml runs these on the workers only
    return host


def server_args(host):
    pid = host.check_output("systemctl show -P MainPID llama-rpc-server")
    return pid, host.check_output(f"ps -o user:32=,args= -p {pid}")


def test_service_runs_unprivileged_with_all_vcpus_on_the_private_address(worker):
    service = worker.service("llama-rpc-server")
    assert service.is_enabled and service.is_running
    _pid, args = server_args(worker)
    user, command = args.split(None, 1)
    assert user == "llama-rpc"
    vcpus = worker.check_output("grep -c ^processor /proc/cpuinfo")  # what ansible_processor_vcpus counts
    assert re.search(rf" -t {vcpus}(\s|$)", command)
    address = worker.interface("eth0").addresses[0]
    assert f" -H {address} " in command and " -H 0.0.0.0" not in command


def test_port_open_to_main_and_closed_to_the_outsider(worker):
    name = worker.backend.get_hostname()
    outsider = node("llamacpp-rpc-outsider")
    assert probe(node("llamacpp-rpc-main"), name) == "connected"
    # Positive control: the outsider resolves and reaches this worker (a closed port of it
    # answers with a reset at once), so only the allowlist can stop it on the RPC port.
    assert probe(outsider, name, PORT + 1) == "refused"
    before = dropped(worker)
    assert probe(outsider, name) == "timeout"
    # The collection's nftables table dropped it (a systemd IPAddressDeny= or no listener
    # would not count here).
    assert dropped(worker) > before


def test_each_worker_compiled_its_own_build(worker):
    manifest = json.loads(worker.file("/opt/llama.cpp/current/manifest.json").content_string)
    assert manifest["built_on"] == worker.backend.get_hostname()
    assert len(manifest["targets"]) == 1  # the RPC server alone
    assert len(worker.file("/var/cache/llama.cpp/builds.log").content_string.splitlines()) == 1


def test_killed_server_comes_back_within_10_seconds(worker):
    pid, _args = server_args(worker)
    worker.run(f"kill -9 {pid}")
    start = time.monotonic()
    while time.monotonic() - start < 10:
        new_pid = worker.run("systemctl show -P MainPID llama-rpc-server").stdout.strip()
        if new_pid not in ("0", pid) and connects(node("llamacpp-rpc-main"), worker.backend.get_hostname()):
            break
        time.sleep(0.5)
    else:
        pytest.fail("rpc-server did not come back within 10 s")
    print(f"restart after kill -9: {time.monotonic() - start:.1f} s")


def test_systemd_exposure_is_at_most_2(worker):
    out = worker.check_output("systemd-analyze security --no-pager llama-rpc-server.service")
    score = float(re.search(r"Overall exposure level for llama-rpc-server.service: ([0-9.]+)", out).group(1))
    print(f"systemd-analyze security exposure: {score}")
    assert score <= 2.0, out


def test_built_from_the_git_checkout_of_the_pinned_commit(worker):
    manifest = json.loads(worker.file("/opt/llama.cpp/current/manifest.json").content_string)
    assert manifest["source"] == "git" and manifest["version"] == "b11312"
    assert manifest["commit"] == os.environ["LLAMACPP_FIXTURE_GIT_COMMIT"] and len(manifest["commit"]) == 40
    checkout = worker.run("git -C /var/cache/llama.cpp/src/b11312 rev-parse HEAD")
    assert checkout.rc == 0 and checkout.stdout.strip() == manifest["commit"]


def test_the_sandbox_is_the_collections_shared_drop_in(worker):
    drop_in = worker.file("/etc/systemd/system/llama-rpc-server.service.d/50-hardening.conf")
    assert drop_in.exists and drop_in.user == "root" and drop_in.mode == 0o644
    assert "role llamacpp.cluster.service_unit" in drop_in.content_string
    assert "NoNewPrivileges=yes" not in worker.file("/etc/systemd/system/llama-rpc-server.service").content_string
    shown = worker.check_output("systemctl show -p NoNewPrivileges -p ProtectSystem -p PrivateUsers llama-rpc-server")
    assert sorted(shown.split()) == ["NoNewPrivileges=yes", "PrivateUsers=yes", "ProtectSystem=strict"], shown


def test_firewall_unit_owns_its_table(worker):
    assert worker.service("llamacpp-rpc-firewall").is_enabled
    table = worker.check_output("nft list table inet llamacpp_rpc")
    assert f"tcp dport != {PORT} accept" in table and "drop" in table
