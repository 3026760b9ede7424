"""Helpers for running the collection's modules and roles through real Ansible."""

from __future__ import annotations

import json
import subprocess

import pytest


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
