"""Shared pytest set-up: the repository root, the scripts, and an environment for
running the project's tools the way `make` does (the project venv first on PATH)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TOP / "scripts"))
# collections/ansible_collections/llamacpp/cluster links to TOP: the plugins import by FQCN.
sys.path.insert(0, str(TOP / "collections"))


@pytest.fixture(name="top")
def fixture_top() -> Path:
    return TOP


@pytest.fixture(name="tool_env")
def fixture_tool_env() -> dict[str, str]:
    """The environment of a fresh shell in a checkout: the venv on PATH, and no
    ANSIBLE_* overrides, so ansible.cfg and playbook-adjacent collections must do the work."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["PATH"] = f"{TOP / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env
