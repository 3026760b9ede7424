"""Helpers for the tests of the demo's cluster, as `make demo` left it: the tests of this
directory use it instead of deploying a cluster of their own.

The hosts come from inventories/local, the README's inventory; the tests reach the
containers straight through podman (testinfra), and drive the cluster with the
collection's own playbooks against that inventory."""

from __future__ import annotations

import os
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import ansible_runner
import testinfra
import yaml

TOP = Path(__file__).resolve().parents[2]
INVENTORY = TOP / "inventories" / "local"
RPC_PORT = 50052
# The benchmark's modules (scratch nodes, the containers' memory cgroups) serve the tests too.
sys.path.insert(0, str(TOP / "benchmarks"))
from local_cgroups import set_cpu_shares  # noqa: E402  pylint: disable=wrong-import-position


def inventory_groups() -> dict:
    return yaml.safe_load((INVENTORY / "hosts.yml").read_text())["all"]["children"]


MAIN = next(iter(inventory_groups()["llama_main"]["hosts"]))
WORKERS = tuple(inventory_groups()["llama_workers"]["hosts"])


def node(name: str):
    return testinfra.get_host(f"podman://{name}")


# tests/run_suite.py sets it when checks run beside these tests: the cluster's containers then
# weigh this many CPU shares against theirs (1024), so the suite's critical path keeps the cores.
CPU_SHARES_VARIABLE = "LLAMACPP_SUITE_CLUSTER_CPU_SHARES"


def favour_cpu(*names: str) -> None:
    """Give these containers the CPU shares tests/run_suite.py asks for (nothing without)."""
    shares = os.environ.get(CPU_SHARES_VARIABLE)
    if shares:
        for name in names:
            set_cpu_shares(name, int(shares))


def address(name: str) -> str:
    return node(name).interface("eth0").addresses[0]


def rpc_server_holds_the_main_node(name: str) -> tuple[int, list[str]]:
    """(rss KiB, peers) of a worker's rpc-server: its resident memory and the addresses
    holding an established connection to the RPC port. A port probe or a finished CLI run
    leaves no established connection; a client that loaded tensors does."""
    host = node(name)
    pid = host.check_output("systemctl show -P MainPID llama-rpc-server")
    rss = int(host.check_output(f"ps -o rss= -p {pid}"))
    out = host.check_output(f"ss -Htn state established '( sport = :{RPC_PORT} )'")
    # Local-Address:Port Peer-Address:Port are the first two fields that hold a port.
    peers = [[f for f in line.split() if ":" in f][1].rsplit(":", 1)[0] for line in out.splitlines() if line.strip()]
    return rss, peers


def assert_workers_serve_llama_server(workers=WORKERS, wait: float = 60.0) -> None:
    """Every worker has llama-server (on the main node) connected and holds its tensors;
    waits up to `wait` seconds for a llama-server that is still loading."""
    main = address(MAIN)
    deadline = time.monotonic() + wait
    for name in workers:
        while True:
            rss, peers = rpc_server_holds_the_main_node(name)
            # An idle rpc-server takes ~5 MiB; its share of the layers adds 15 MiB or more.
            if (peers == [main] and rss > 20000) or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert peers == [main], f"{name}: established RPC peers {peers}, expected the main node {main}"
        assert rss > 20000, f"{name}'s rpc-server holds no model tensors ({rss} KiB)"


@dataclass
class PlaybookRun:
    """What one playbook run did: its exit status, output, per-host stats and task events."""

    rc: int
    output: str
    stats: dict
    events: list
    seconds: float

    def changed(self) -> dict[str, int]:
        """Changed tasks of every host the run processed (0 included)."""
        return {host: self.stats["changed"].get(host, 0) for host in self.stats.get("processed", {})}

    def results(self, task: str) -> dict[str, dict]:
        """host -> result of the task of that name, for the hosts where it ran ok."""
        return {e["event_data"]["host"]: e["event_data"]["res"] for e in self.events
                if e.get("event") == "runner_on_ok" and e["event_data"].get("task") == task}


def playbook(path: str, inventory: Path | str = INVENTORY, *args: str) -> PlaybookRun:
    """A playbook of the collection, run from the checkout through ansible-runner."""
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="llamacpp-runner-") as data:
        runner = ansible_runner.run(private_data_dir=data, project_dir=str(TOP), playbook=str(TOP / path),
                                    inventory=str(TOP / inventory), cmdline=shlex.join(args),
                                    envvars={"ANSIBLE_FORCE_COLOR": "False", "ANSIBLE_NOCOLOR": "True"}, quiet=True)
        run = PlaybookRun(runner.rc, runner.stdout.read(), runner.stats or {}, list(runner.events),
                          time.monotonic() - start)
    print(f"\n$ ansible-playbook {path} -i {inventory} {shlex.join(args)} ({run.seconds:.1f} s, rc {run.rc})\n"
          + "\n".join(run.output.splitlines()[-12:]))
    return run


def invocation(name: str, unit: str) -> str:
    """The unit's current invocation ID: it changes on every (re)start."""
    return node(name).check_output(f"systemctl show -P InvocationID {unit}")


def journal_of_invocation(name: str, unit: str) -> str:
    host = node(name)
    return host.check_output(f"journalctl -o cat --no-pager _SYSTEMD_INVOCATION_ID={invocation(name, unit)}")


def wait_healthy(url: str = "http://127.0.0.1:8080/health", wait: float = 300.0) -> None:
    """Waits until llama-server on the main node answers its health check."""
    probe = ("import sys, urllib.request\ntry:\n    urllib.request.urlopen(sys.argv[1], timeout=5)\n"
             "except Exception:\n    sys.exit(1)")
    deadline = time.monotonic() + wait
    while node(MAIN).run(f"python3 -c {shlex.quote(probe)} {url}").rc != 0:
        assert time.monotonic() < deadline, f"llama-server not healthy within {wait} s"
        time.sleep(2)
