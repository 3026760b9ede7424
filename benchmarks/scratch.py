"""Throwaway clusters of local containers for the comparisons that need fresh nodes (a cold
site.yml, scale-out, builds): created with playbooks/local_cluster.yml from the local node
image and settings (inventories/local/group_vars), under their own names and network, and
removed again. Nothing of the cluster under test is touched."""

from __future__ import annotations

import re
import shutil
import tempfile
from datetime import datetime
from pathlib import Path

import yaml

from cluster import TOP, BenchError, Cluster

PREFIX = "llamacpp-bench"
LOCAL = TOP / "inventories" / "local"
# A subnet of its own, beside the demo's network (10.89.77.0/24).
SUBNET = "10.89.78.0/24"


class Scratch:
    """A scratch cluster: `up(main, workers)` (re)creates it, `down()` removes it. Its names,
    network and subnet are the benchmark's, or another prefix's and subnet's (gateway .1), so
    that two scratch clusters can live side by side."""

    def __init__(self, prefix: str = PREFIX, subnet: str = SUBNET):
        self.prefix, self.subnet = prefix, subnet
        self.gateway = subnet.rsplit(".", 1)[0] + ".1"
        self.dir = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
        self.main: list[str] = []
        self.workers: list[str] = []
        self.nodes = Cluster(str(self.dir / "inventory"))

    def _write_inventory(self) -> None:
        inventory = self.dir / "inventory"
        (inventory / "group_vars").mkdir(parents=True, exist_ok=True)
        local = yaml.safe_load((LOCAL / "group_vars" / "all.yml").read_text())
        local["llamacpp_local_network"] = self.prefix
        local["llamacpp_local_subnet"], local["llamacpp_local_gateway"] = self.subnet, self.gateway
        (inventory / "group_vars" / "all.yml").write_text(yaml.safe_dump(local, sort_keys=True))
        # inventories/local's groups and connection, with this cluster's nodes.
        hosts = yaml.safe_load((LOCAL / "hosts.yml").read_text())
        hosts["all"]["children"]["llama_main"]["hosts"] = {h: None for h in self.main}
        hosts["all"]["children"]["llama_workers"]["hosts"] = {h: None for h in self.workers}
        (inventory / "hosts.yml").write_text(yaml.safe_dump(hosts, sort_keys=False))

    def _local_cluster(self, state: str) -> None:
        self.playbook("playbooks/local_cluster.yml", "-e", f"llamacpp_local_state={state}")

    def up(self, main: int, workers: int) -> None:
        """New nodes: `main` + `workers` containers, after removing any of those names (also
        leftovers of an interrupted run)."""
        self.down()
        self.main = [f"{self.prefix}-main"] if main else []
        self.workers = [f"{self.prefix}-worker{n}" for n in range(1, workers + 1)]
        self._write_inventory()
        self._local_cluster("absent")
        self._local_cluster("started")

    def add(self, workers: int) -> None:
        """More workers next to the running nodes (scale-out)."""
        start = len(self.workers)
        self.workers += [f"{self.prefix}-worker{n}" for n in range(start + 1, start + workers + 1)]
        self._write_inventory()
        self._local_cluster("started")

    def down(self) -> None:
        if self.main or self.workers:
            self._local_cluster("absent")
        self.main, self.workers = [], []

    def remove(self) -> None:
        self.down()
        shutil.rmtree(self.dir, ignore_errors=True)

    def playbook(self, path: str, *args: str) -> tuple[float, dict]:
        """Runs a playbook on the scratch inventory: (seconds, PLAY RECAP totals)."""
        return self.nodes.playbook_recap(path, *args)

    def builds(self, host: str, work_dir: str = "/var/cache/llama.cpp") -> list[float]:
        """Seconds of each compile on `host` (configure to done, from its build logs)."""
        out = self.nodes.sh(host, f"grep -h '^== \\(configure\\|done\\) ' {work_dir}/logs/*.log 2>/dev/null || true")
        stamps = [re.match(r"== (\w+) (\S+)", line).groups() for line in out.splitlines()]
        return compile_seconds(stamps)


def compile_seconds(stamps: list[tuple[str, str]]) -> list[float]:
    """[('configure', ISO time), ('done', ISO time), ...] of build logs -> seconds per build."""
    seconds, start = [], None
    for kind, stamp in stamps:
        when = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")
        if kind == "configure":
            start = when
        elif start is not None:
            seconds.append((when - start).total_seconds())
            start = None
    if start is not None:
        raise BenchError("a build log has no '== done' line: the build did not finish")
    return seconds
