"""Run a collection module the way Ansible does: a separate Python process that reads
its arguments from a JSON file and prints its result as JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[2]


@pytest.fixture(name="run_module")
def fixture_run_module(tmp_path):
    def run(name: str, args: dict) -> tuple[int, dict]:
        args_file = tmp_path / "args.json"
        args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
        env = dict(os.environ, PYTHONPATH=str(TOP / "collections"))
        proc = subprocess.run(
            [sys.executable, "-m", f"ansible_collections.llamacpp.cluster.plugins.modules.{name}", str(args_file)],
            capture_output=True, text=True, env=env, check=False,
        )
        try:
            return proc.returncode, json.loads(proc.stdout)
        except json.JSONDecodeError:
            pytest.fail(f"module {name} printed no JSON (rc={proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return run
