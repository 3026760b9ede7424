"""The demo's cluster, as `make demo` left it: the tests of this directory use it instead of
deploying a cluster of their own (tests/run_suite.py runs them right after the demo)."""

import subprocess

import pytest
from demo_nodes import MAIN, WORKERS


@pytest.fixture(name="demo_cluster", scope="session")
def fixture_demo_cluster():
    """Fails at once, naming the fix, when the demo's cluster is not running."""
    for name in (MAIN, *WORKERS):
        state = subprocess.run(["podman", "inspect", "-f", "{{.State.Running}}", name],
                               capture_output=True, text=True, check=False).stdout.strip()
        if state != "true":
            pytest.fail(f"container {name} is not running: these tests use the demo's cluster; run 'make demo'")
    return MAIN, WORKERS
