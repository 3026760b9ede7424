"""Access to a deployed cluster for the benchmarks: every action on a node goes through an
`ansible` ad-hoc command against the inventory (so any inventory works), with JSON output."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent
REMOTE_DIR = "/tmp/llamacpp-bench"
RPC_LOG = f"{REMOTE_DIR}/rpc-server.log"
# The main role keeps llama-server's key here (root only); node_bench reads it on the node.
API_KEY_FILE = "/etc/llama-server/api-key"
# rpc-server -c keeps its tensor cache under root's ~/.cache when the benchmark starts it by hand.
RPC_CACHE_CLEAR = "rm -rf /root/.cache/llama.cpp/rpc"


class BenchError(RuntimeError):
    pass


@dataclass
class Cluster:
    inventory: str
    main: str = ""
    workers: list[str] = field(default_factory=list)
    endpoints: list[str] = field(default_factory=list)
    model: str = ""
    server_url: str = ""
    vcpus: dict[str, int] = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    _hand_pids: dict[str, int] = field(default_factory=dict)
    calls: int = 0  # ad-hoc commands run

    # --- plumbing -------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
        env.update(ANSIBLE_COLLECTIONS_PATH=str(TOP / "collections"), ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
                   ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_DEPRECATION_WARNINGS="0")
        env["PATH"] = f"{TOP / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        return env

    def module_on(self, hosts: list[str], name: str, args: dict,
                  extra_vars: dict | None = None, become: bool = True) -> tuple[dict[str, dict], float]:
        """Run one module on several hosts at once, in one ad-hoc command (its start-up, about
        1.5 s on the controller, is most of a call's cost); returns ({host: result}, seconds)."""
        if not hosts:  # a cluster without workers: nothing to run
            return {}, 0.0
        cmd = ["ansible", ":".join(hosts), "-i", self.inventory, "-m", name, "-a", json.dumps(args)]
        cmd += (["-e", json.dumps(extra_vars)] if extra_vars else []) + (["-b"] if become else [])
        start = time.monotonic()
        proc = subprocess.run(cmd, cwd=TOP, env=self.env(), capture_output=True, text=True, check=False)
        seconds = time.monotonic() - start
        self.calls += 1
        try:
            results = json.loads(proc.stdout)["plays"][0]["tasks"][0]["hosts"]
        except (ValueError, KeyError, IndexError) as exc:
            raise BenchError(f"{name} on {', '.join(hosts)} gave no result: {proc.stdout[-1500:]} "
                             f"{proc.stderr[-1500:]}") from exc
        for host in hosts:
            result = results.get(host)
            if result is None:
                raise BenchError(f"{name} gave no result for {host}: {proc.stdout[-1500:]}")
            if result.get("failed") or result.get("unreachable"):
                raise BenchError(f"{name} on {host} failed: {result.get('msg', '')} {result.get('stderr', '')[-1500:]}")
        return {host: results[host] for host in hosts}, seconds

    def module(self, host: str, name: str, args: dict, become: bool = True) -> tuple[dict, float]:
        """Run one module on one host; returns (result, seconds on the controller)."""
        results, seconds = self.module_on([host], name, args, become=become)
        return results[host], seconds

    def sh(self, host: str, script: str) -> str:
        return self.module(host, "ansible.builtin.shell", {"cmd": script, "executable": "/bin/bash"})[0]["stdout"]

    def sh_each(self, scripts: dict[str, str]) -> dict[str, str]:
        """A script of its own on each host, all in one ad-hoc command: {host: stdout}."""
        results = self.module_on(list(scripts), "ansible.builtin.shell",
                                 {"cmd": "{{ _bench_scripts[inventory_hostname] }}", "executable": "/bin/bash"},
                                 extra_vars={"_bench_scripts": scripts})[0]
        return {host: result["stdout"] for host, result in results.items()}

    def playbook(self, path: str, *args: str) -> float:
        return self.playbook_recap(path, *args)[0]

    def playbook_recap(self, path: str, *args: str) -> tuple[float, dict[str, int]]:
        """Runs a playbook: (seconds, its PLAY RECAP counts summed over the hosts)."""
        env = self.env()
        env.pop("ANSIBLE_STDOUT_CALLBACK")
        start = time.monotonic()
        proc = subprocess.run(["ansible-playbook", path, "-i", self.inventory, *args], cwd=TOP, env=env,
                              capture_output=True, text=True, check=False)
        seconds = time.monotonic() - start
        if proc.returncode:
            raise BenchError(f"{path} failed:\n{proc.stdout[-3000:]}")
        return seconds, recap(proc.stdout)

    # --- discovery ------------------------------------------------------------------------
    def discover(self) -> None:
        proc = subprocess.run(["ansible-inventory", "-i", self.inventory, "--list"], cwd=TOP, env=self.env(),
                              capture_output=True, text=True, check=True)
        groups = json.loads(proc.stdout)
        mains = groups.get("llama_main", {}).get("hosts", [])
        if len(mains) != 1:
            raise BenchError(f"{self.inventory}: need exactly one host in llama_main, found {mains}")
        self.main, self.workers = mains[0], groups.get("llama_workers", {}).get("hosts", [])
        nodes = [self.main, *self.workers]
        # The hardware subset adds the vCPUs to the minimal facts, which hold the local facts.
        found = self.module_on(nodes, "ansible.builtin.setup", {"gather_subset": ["!all", "hardware"]})[0]
        facts = found[self.main]["ansible_facts"].get("ansible_local", {}).get("llamacpp")
        if not facts:
            raise BenchError(f"{self.main} has no llamacpp facts: deploy the cluster with site.yml first")
        self.model, self.server_url, self.endpoints = facts["model_path"], facts["server_url"], facts["workers"]
        if len(self.endpoints) != len(self.workers):
            raise BenchError(f"{self.main} is set up with {self.endpoints}, the inventory has {self.workers}: "
                             "run site.yml first")
        for host in nodes:
            self.vcpus[host] = found[host]["ansible_facts"]["ansible_processor_vcpus"]
            self.info.setdefault("cpu_model", found[host]["ansible_facts"].get("ansible_processor", ["?"] * 3)[-1])
        manifest = self.sh(self.main, f"install -d -m 0700 {REMOTE_DIR} && cat /opt/llama.cpp/current/manifest.json")
        self.info["manifest"] = json.loads(manifest)
        for src, dest in (("benchmarks/node_bench.py", "node_bench.py"),
                          ("plugins/module_utils/inference.py", "llamacpp_inference.py")):
            self.module(self.main, "ansible.builtin.copy", {"src": str(TOP / src), "dest": f"{REMOTE_DIR}/{dest}",
                                                            "mode": "0600"})

    # --- measurements on the main node ------------------------------------------------------
    def node_bench(self, *args: str) -> list[dict]:
        argv = ["python3", f"{REMOTE_DIR}/node_bench.py", *args]
        result = self.module(self.main, "ansible.builtin.command", {"argv": argv})[0]
        return json.loads(result["stdout"])

    def cli(self, prompt: str, n_predict: int, workers: list[str], repeat: int = 1) -> list[dict]:
        return self.node_bench("cli", "--binary", "/opt/llama.cpp/current/bin/llama-completion", "--model", self.model,
                               "--prompt", prompt, "-n", str(n_predict), "--rpc", ",".join(workers),
                               "--threads", str(self.vcpus[self.main]), "--repeat", str(repeat))

    def server(self, prompt: str, n_predict: int, repeat: int = 1) -> list[dict]:
        return self.node_bench("server", "--url", self.server_url, "--prompt", prompt, "-n", str(n_predict),
                               "--repeat", str(repeat), "--api-key-file", API_KEY_FILE)

    def server_batch(self, prompt: str, n_predict: int, count: int) -> dict:
        return self.node_bench("server-batch", "--url", self.server_url, "--prompt", prompt, "-n", str(n_predict),
                               "--count", str(count), "--api-key-file", API_KEY_FILE)[0]

    # --- service states ---------------------------------------------------------------------
    def llama_server(self, running: bool) -> float:
        """Stop or (re)start llama-server; for a start, the seconds until it is healthy."""
        if not running:
            self.sh(self.main, "systemctl stop llama-server")
            return 0.0
        return self.node_bench("server-start", "--url", self.server_url)[0]["start_s"]

    def rpc_services(self, running: bool) -> None:
        verb = "restart" if running else "stop"
        self.sh_each({host: f"systemctl {verb} llama-rpc-server" + (f" && {self._listening(host)}" if running else "")
                      for host in self.workers})

    def hand_rpc_servers(self, threads: bool, cache: bool = False, cache_dir: str = "") -> None:
        """The hand recipe: stop the service, start rpc-server by hand on the same address
        (with cache_dir, the tensor cache is $LLAMA_CACHE=cache_dir instead of root's ~/.cache)."""
        env = f"LLAMA_CACHE={shlex.quote(cache_dir)} " if cache_dir else ""
        scripts = {}
        for host, endpoint in zip(self.workers, self.endpoints):
            address, port = endpoint.rsplit(":", 1)
            flags = f"-H {address} -p {port}" + (f" -t {self.vcpus[host]}" if threads else "") + (" -c" if cache else "")
            scripts[host] = (f"{self._kill_hand(host)}; systemctl stop llama-rpc-server; mkdir -p {REMOTE_DIR}; "
                             f"{env}nohup /opt/llama.cpp/current/bin/rpc-server {flags} > {RPC_LOG} 2>&1 < /dev/null & "
                             f"echo $!; {self._listening(host)}")
        for host, out in self.sh_each(scripts).items():
            self._hand_pids[host] = int(out.split()[0])

    def stop_hand_rpc_servers(self) -> None:
        if self._hand_pids:
            self.sh_each({host: self._kill_hand(host) for host in self._hand_pids})
            self._hand_pids.clear()

    def _kill_hand(self, host: str) -> str:
        """The script that ends this host's hand-started rpc-server, if any, and waits for it."""
        pid = self._hand_pids.get(host)
        return f"kill {pid} 2>/dev/null; while kill -0 {pid} 2>/dev/null; do sleep 0.1; done; true" if pid else "true"

    def _listening(self, host: str) -> str:
        """The script that waits until this worker's RPC port listens."""
        port = self.endpoints[self.workers.index(host)].rsplit(":", 1)[1]
        # /proc/net/tcp, not a probe: a connection would occupy rpc-server (one client at a time).
        return (f"for i in $(seq 300); do grep -q ':{int(port):04X} 00000000:0000 0A' /proc/net/tcp && exit 0; "
                "sleep 0.1; done; echo 'rpc-server did not listen' >&2; exit 1")

    def peak_rss_kib(self, hosts: list[str]) -> dict[str, int]:
        """Peak RSS of each host's rpc-server service since it started."""
        script = "awk '/VmHWM/ {print $2}' /proc/$(systemctl show -P MainPID llama-rpc-server)/status"
        return {host: int(out.strip()) for host, out in self.sh_each({h: script for h in hosts}).items()}

    def clear_rpc_cache(self) -> None:
        self.sh_each({host: RPC_CACHE_CLEAR for host in self.workers})

    def restore(self, server_enabled: bool) -> None:
        """Back to the deployed state: services running, nothing of the benchmark left."""
        self.sh_each({host: f"{self._kill_hand(host)}; {RPC_CACHE_CLEAR}; rm -rf {REMOTE_DIR}; "
                            f"systemctl restart llama-rpc-server && {self._listening(host)}" for host in self.workers})
        self._hand_pids.clear()
        if server_enabled:
            self.llama_server(running=True)
        self.sh(self.main, f"rm -rf {REMOTE_DIR}")


RECAP_COUNT = r"\b(ok|changed|unreachable|failed|skipped|rescued|ignored)=(\d+)"


def recap(stdout: str) -> dict[str, int]:
    """The PLAY RECAP of ansible-playbook's default output: each count summed over the hosts,
    and changed_hosts, the number of hosts with a change."""
    totals: dict[str, int] = {"changed_hosts": 0}
    text = stdout.rsplit("PLAY RECAP", 1)[1] if "PLAY RECAP" in stdout else ""
    for line in text.splitlines():
        counts = {k: int(v) for k, v in re.findall(RECAP_COUNT, line)}
        for key, value in counts.items():
            totals[key] = totals.get(key, 0) + value
        totals["changed_hosts"] += 1 if counts.get("changed") else 0
    return totals
