"""Helpers for running the collection's modules and roles through real Ansible."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fixtures

# The build role's prefix and work directory on this host, across runs.
HOST_DIR = fixtures.cache_dir() / "host-build"
# Where the demo's playbooks keep the builds they ship (inventories/local: <cache>/artifacts).
DEMO_ARTIFACTS = fixtures.cache_dir() / "artifacts"


def run_build_role(work: Path, controller_cache: Path) -> subprocess.CompletedProcess:
    """The build role on this host (connection local) as a cluster of one: a member of the main
    and the worker group, so it needs what the demo's one-family cluster needs, and shares its
    fingerprint. A build of that fingerprint in controller_cache is installed, not compiled."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "inventory.yml").write_text(json.dumps({"all": {"children": {
        "llama_main": {"hosts": {"localhost": None}}, "llama_workers": {"hosts": {"localhost": None}}}}}))
    (work / "build.yml").write_text(json.dumps([{
        "name": "Build llama.cpp on the test host", "hosts": "localhost", "gather_facts": True,
        "roles": [{"role": "llamacpp.cluster.build", "vars": {
            "llamacpp_build_source": "archive",
            "llamacpp_build_archive_path": str(fixtures.source_archive_path()),
            "llamacpp_prefix": str(work / "opt"),
            "llamacpp_build_work_dir": str(work / "work"),
            "llamacpp_build_controller_cache": str(controller_cache),
        }}],
    }]))
    top = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    return subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(work / "inventory.yml"),
                           "-c", "local", str(work / "build.yml"), "-e", f"ansible_python_interpreter={sys.executable}"],
                          cwd=top, env=env, capture_output=True, text=True, check=False)


@pytest.fixture(name="build_role")
def fixture_build_role():
    return run_build_role


@pytest.fixture(name="bin_dir", scope="session")
def fixture_bin_dir():
    """rpc-server, llama-completion and llama-server on this host, from the build role: the
    demo's build when the demo shipped one (make test), else compiled here (cached by its
    fingerprint across runs)."""
    proc = run_build_role(HOST_DIR, DEMO_ARTIFACTS)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return HOST_DIR / "opt" / "current" / "bin"


@pytest.fixture(name="ansible_module")
def fixture_ansible_module(tool_env, top):
    """Run one module on localhost through `ansible` and return its result dict."""

    def run(module: str, args: dict, check: bool = False) -> dict:
        env = dict(tool_env, ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="json")
        cmd = ["ansible", "localhost", "-m", module] + (["-a", json.dumps(args)] if args else []) \
            + (["--check"] if check else [])
        proc = subprocess.run(cmd, cwd=top, env=env, capture_output=True, text=True, check=False)
        try:
            output = json.loads(proc.stdout)
        except json.JSONDecodeError:
            pytest.fail(f"no JSON from {' '.join(cmd)}:\n{proc.stdout}\n{proc.stderr}")
        return output["plays"][0]["tasks"][0]["hosts"]["localhost"]

    return run


@pytest.fixture(name="moto_server", scope="session")
def fixture_moto_server():
    """A moto server (AWS API emulator) on 127.0.0.1 with a free port; yields its URL."""
    from moto.server import ThreadedMotoServer  # pylint: disable=import-outside-toplevel

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(name="aws")
def fixture_aws(moto_server, tool_env):
    """A fresh, empty moto account: (environment for Ansible, boto3 EC2 client)."""
    import boto3  # pylint: disable=import-outside-toplevel
    import requests  # pylint: disable=import-outside-toplevel

    requests.post(f"{moto_server}/moto-api/reset", timeout=30).raise_for_status()
    env = dict(tool_env, AWS_URL=moto_server, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               AWS_REGION="eu-west-1", AWS_DEFAULT_REGION="eu-west-1", ANSIBLE_DEPRECATION_WARNINGS="0")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_PROFILE"):
        env.pop(name, None)
    client = boto3.client("ec2", endpoint_url=moto_server, region_name="eu-west-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    return env, client


NOWHERE = "llamacpp-nowhere"


@pytest.fixture(name="nowhere_inventory")
def fixture_nowhere_inventory(top, tmp_path):
    """The local inventory with its hosts renamed to containers that do not exist: a playbook
    that connects anywhere shows it as an unreachable host."""
    import yaml  # pylint: disable=import-outside-toplevel

    hosts = yaml.safe_load((top / "inventories/local/hosts.yml").read_text())
    groups = hosts["all"]["children"]
    groups["llama_main"]["hosts"] = {f"{NOWHERE}-main": None}
    groups["llama_workers"]["hosts"] = {f"{NOWHERE}-worker1": None, f"{NOWHERE}-worker2": None}
    inventory = tmp_path / "nowhere-inventory"
    inventory.mkdir()
    (inventory / "hosts.yml").write_text(yaml.safe_dump(hosts))
    (inventory / "group_vars").symlink_to(top / "inventories/local/group_vars")
    return inventory
