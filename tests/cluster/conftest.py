"""The demo's cluster, as `make demo` left it: the tests of this directory use it instead of
deploying a cluster of their own (tests/run_suite.py runs them right after the demo)."""

import os
import subprocess
from pathlib import Path

import big_model
import pytest
from demo_nodes import INVENTORY, MAIN, WORKERS, favour_cpu, node, playbook
from local_cgroups import set_memory_limit


@pytest.fixture(name="demo_cluster", scope="session")
def fixture_demo_cluster():
    """Fails at once, naming the fix, when the demo's cluster is not running."""
    for name in (MAIN, *WORKERS):
        state = subprocess.run(["podman", "inspect", "-f", "{{.State.Running}}", name],
                               capture_output=True, text=True, check=False).stdout.strip()
        if state != "true":
            pytest.fail(f"container {name} is not running: these tests use the demo's cluster; run 'make demo'")
    favour_cpu(MAIN, *WORKERS)
    return MAIN, WORKERS


class DemoRestore:
    """Puts the demo's own settings back once, for the tests that leave the demo's cluster
    otherwise: test_chatbot.py (HTTPS, a given key), then test_placement.py and
    test_preseed.py (the suite's large model). Each takes it; the next one's deploy replaces
    the settings anyway, and the last of them (or the end of the session) restores them."""

    def __init__(self) -> None:
        self.big_model = Path(os.environ.get("LLAMACPP_FIXTURE_BIG_MODEL") or big_model.big_model_path())
        self.pending = False

    def take(self, needs_big_model: bool = False) -> None:
        if needs_big_model:
            assert self.big_model.is_file(), f"{self.big_model} is missing; run 'make big-model'"
        self.pending = True

    def restore(self) -> None:
        """No memory limits, the demo's inventory and model again, the large one removed."""
        for name in (MAIN, *WORKERS):
            set_memory_limit(name, None)
        restored = playbook("playbooks/services.yml", INVENTORY)
        assert restored.rc == 0, "could not put the demo's settings back:\n" + restored.output[-3000:]
        node(MAIN).check_output(f"rm -f /var/lib/llama.cpp/models/{self.big_model.name}")
        self.pending = False


@pytest.fixture(name="demo_restore", scope="session")
def fixture_demo_restore(demo_cluster):
    restore = DemoRestore()
    yield restore
    if restore.pending:
        restore.restore()
