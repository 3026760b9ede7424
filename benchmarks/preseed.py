"""The preseed comparison: the cold load of a model whose large tensors dominate, from the main
node over a throttled link, with every weight pushed by llama.cpp's RPC client against workers
whose rpc-server caches were pre-seeded by llamacpp.cluster.rpc_cache_seed from their own copy
of the model; and, as the physical limit, the same model loaded by the main node alone.

The main node's interface (eth0 in its container's network namespace) gets a token-bucket
limit (tc tbf; this kernel has no netem), the rate a cloud instance's share of a link gives.
Per load: seconds from llama-server's start to a healthy /health (a llama-server of the
benchmark's own, the plan's split), llama.cpp's load time (a one-shot llama-completion), the
bytes the main node sent during the llama-server load (its interface counter) over the bytes
offloaded to the workers, and the tensors the seeded rpc-servers still had to receive (they log
"saved to" for each). The rpc-servers are started by hand: without -c (pushed) or with -c and
LLAMA_CACHE on the seeded directory. The seeding itself (both workers in parallel) is timed
once. Local podman containers only (inventories/local); the limit is removed at the end."""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import report
from cluster import RPC_LOG, TOP, BenchError, Cluster
from placement import SkipComparison

sys.path.insert(0, str(TOP / "collections"))
from ansible_collections.llamacpp.cluster.plugins.module_utils import gguf, placement, rpc_cache  # noqa: E402  pylint: disable=wrong-import-position

BENCH_DIR = "/var/tmp/llamacpp-bench"  # on disk, not the tmpfs /tmp
CACHE_DIR = f"{BENCH_DIR}/rpc-cache"
BIN = "/opt/llama.cpp/current/bin"
RATE = "200mbit"
CTX_SIZE, UBATCH = 512, 64
PORT = 18080
MB = 1e6


def container_pid(name: str) -> int:
    proc = subprocess.run(["podman", "inspect", "-f", "{{.State.Pid}}", name], capture_output=True, text=True,
                          check=False)
    if proc.returncode or not proc.stdout.strip().isdigit() or proc.stdout.strip() == "0":
        raise SkipComparison(f"preseed needs the running local containers of inventories/local: {name}: "
                             f"{proc.stderr.strip() or 'not running'}")
    return int(proc.stdout.strip())


def shape(name: str, rate: str | None) -> None:
    """A tbf limit on the container's eth0 egress (everything it sends), or none."""
    netns = ["nsenter", "-t", str(container_pid(name)), "-n", "tc", "qdisc"]
    if rate:
        cmd = netns + ["replace", "dev", "eth0", "root", "tbf", "rate", rate, "burst", "256kb", "latency", "50ms"]
    else:
        cmd = netns + ["del", "dev", "eth0", "root"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode and rate:
        raise BenchError(f"tc on {name}: {proc.stderr.strip()}")


class PreseedBench:
    def __init__(self, c: Cluster, model_file: Path):
        self.c, self.model_file = c, model_file
        self.remote_model = f"{BENCH_DIR}/{model_file.name}"
        self.plan: dict = {}
        self.offloaded = 0
        self.small_bytes = 0
        self.seeding: dict = {}

    def prepare(self) -> None:
        if not self.model_file.is_file():
            raise SkipComparison(f"{self.model_file} is missing; run 'make big-model' or pass --big-model")
        nodes = [self.c.main, *self.c.workers]
        for name in nodes:
            container_pid(name)
        self.c.llama_server(running=False)
        self.c.sh_each({name: f"mkdir -p {BENCH_DIR}" for name in nodes})
        for name in nodes:
            subprocess.run(["podman", "cp", str(self.model_file), f"{name}:{self.remote_model}"], check=True)
        model = self.c.module(self.c.main, "llamacpp.cluster.model_info", {"path": self.remote_model})[0]["model"]
        found = self.c.module_on(nodes, "llamacpp.cluster.memory_facts", {"reserve_mib": 512})[0]
        usable = {name: facts["ansible_facts"]["llamacpp_memory"]["usable_bytes"] for name, facts in found.items()}
        self.plan = placement.plan(model, {"name": self.c.main, "usable_bytes": usable[self.c.main]},
                                   [{"name": w, "endpoint": e, "usable_bytes": usable[w]}
                                    for w, e in zip(self.c.workers, self.c.endpoints)],
                                   ctx_size=CTX_SIZE, ubatch=UBATCH)
        if not self.plan["fits"] or self.plan["main_layers"]:
            raise BenchError(f"the plan keeps layers on the main node or does not fit: {self.plan['summary']}")
        table = gguf.read_file(str(self.model_file))
        workers = [n for n in self.plan["nodes"] if n["role"] == "worker"]
        self.offloaded = sum(n["weights_bytes"] for n in workers)
        hashed = sum(t.nbytes for n in workers for t in rpc_cache.hashed_tensors(table.tensors, n["layers"]))
        self.small_bytes = self.offloaded - hashed

    def seed(self) -> dict:
        """Seeds every worker's cache in parallel (the run a deploy does once per model)."""
        layers = {n["name"]: n["layers"] for n in self.plan["nodes"] if n["role"] == "worker"}

        def one(worker):
            return self.c.module(worker, "llamacpp.cluster.rpc_cache_seed", {
                "cache_dir": CACHE_DIR, "source": self.remote_model, "layers": layers[worker],
                "hasher": f"{BIN}/llamacpp-fnv1a"})[0]

        start = time.monotonic()
        with ThreadPoolExecutor(len(self.c.workers)) as pool:
            results = dict(zip(self.c.workers, pool.map(one, self.c.workers)))
        wall = time.monotonic() - start
        return {"wall_s": round(wall, 1), "per_worker_s": {w: r["seconds"] for w, r in results.items()},
                "bytes_written": sum(r["bytes_written"] for r in results.values()),
                "files": sum(r["files"] for r in results.values())}

    def tx(self) -> int:
        return int(self.c.sh(self.c.main, "cat /sys/class/net/eth0/statistics/tx_bytes"))

    def load(self, workers: bool, cache: bool) -> dict:
        """One cold load: fresh rpc-servers (pushed or seeded), llama-server to healthy, then
        llama-completion's own load time."""
        common = ["--binary", f"{BIN}/llama-server", "--model", self.remote_model, "--port", str(PORT),
                  "--threads", str(self.c.vcpus[self.c.main]), "--ctx-size", str(CTX_SIZE), "--ubatch", str(UBATCH)]
        split = ["--rpc", ",".join(self.plan["rpc"]), "--n-gpu-layers", str(self.plan["n_gpu_layers"]),
                 "--tensor-split", ",".join("%g" % v for v in self.plan["tensor_split"])] if workers else \
            ["--n-gpu-layers", "0"]
        if workers:
            self.c.hand_rpc_servers(threads=True, cache=cache, cache_dir=CACHE_DIR if cache else "")
        before = self.tx()
        [started] = self.c.node_bench("server-load", *common, *split)
        sent = self.tx() - before
        misses = None
        if workers and cache:
            counts = self.c.sh_each({w: f"grep -c 'saved to' {RPC_LOG} || true" for w in self.c.workers})
            misses = sum(int(out.strip() or 0) for out in counts.values())
        cli = ["--binary", f"{BIN}/llama-completion", "--model", self.remote_model, "--prompt", "Hi", "-n", "1",
               "--threads", str(self.c.vcpus[self.c.main]), "--ctx-size", str(CTX_SIZE), "--ubatch", str(UBATCH)]
        cli += split if workers else ["--n-gpu-layers", "0"]
        [one_shot] = self.c.node_bench("cli", *cli)
        return {"start_s": started["start_s"], "load_ms": one_shot.get("load_ms"), "sent_mb": round(sent / MB, 1),
                "sent_share": round(sent / self.offloaded, 4) if workers else None, "cache_misses": misses}

    def restore(self) -> None:
        shape(self.c.main, None)
        self.c.stop_hand_rpc_servers()
        self.c.sh_each({name: f"rm -rf {shlex.quote(BENCH_DIR)}" for name in (self.c.main, *self.c.workers)})


def bench_preseed(c: Cluster, args) -> dict:
    bench = PreseedBench(c, Path(args.big_model))
    try:
        bench.prepare()
        seeding = bench.seed()
        shape(c.main, RATE)
        variants = {
            "pushed": lambda: bench.load(workers=True, cache=False),
            "pre-seeded": lambda: bench.load(workers=True, cache=True),
            "local only (main node, no workers)": lambda: bench.load(workers=False, cache=False),
        }
        samples = report.alternate(args.pairs, variants)
    finally:
        bench.restore()
    metrics = ["start_s", "load_ms", "sent_mb", "sent_share", "cache_misses"]
    comp = report.comparison(
        f"Cold load of a {bench.plan['model_bytes'] / 1e9:.2f} GB model over a {RATE.replace('mbit', ' Mbit/s')} link: "
        "pushed vs pre-seeded rpc-server caches", samples, metrics, "pushed",
        f"start s: llama-server's start to a healthy /health; load ms: llama-completion's load time (one-shot, "
        f"-n 1); sent MB: what the main node's interface sent during the llama-server load; sent share: that over "
        f"the {bench.offloaded / MB:.0f} MB of weights offloaded to the workers; cache misses: large tensors the "
        f"seeded rpc-servers still received. The main node's egress is limited to {RATE} (tc tbf); the model file "
        "and the cache files are in the page cache in every variant. Still on the wire when pre-seeded: the "
        f"tensors of 10 MiB or less ({bench.small_bytes / MB:.0f} MB here), the hashes and the graphs.")
    summary = comp["summary"]
    pushed, seeded = summary["pushed"], summary["pre-seeded"]
    local = summary["local only (main node, no workers)"]

    def ratio(a, b):
        return round(a / b, 2) if a and b else None

    comp["derived"] = {
        f"pre-seeded load speed-up at {RATE} (llama-server start to healthy)": ratio(pushed["start_s"], seeded["start_s"]),
        f"pre-seeded load speed-up at {RATE} (llama.cpp load time)": ratio(pushed["load_ms"], seeded["load_ms"]),
        "bytes the main node sent, pre-seeded, over the offloaded bytes": seeded["sent_share"],
        "bytes the main node sent, pushed, over the offloaded bytes": pushed["sent_share"],
        "pre-seeded load over the local-only load (start to healthy)": ratio(seeded["start_s"], local["start_s"]),
        "pre-seeded load over the local-only load (llama.cpp load time)": ratio(seeded["load_ms"], local["load_ms"]),
        "seeding, all workers in parallel (s, controller wall)": seeding["wall_s"],
    }
    comp["seeding"] = seeding
    comp["settings"] = {"rate": RATE, "ctx_size": CTX_SIZE, "ubatch": UBATCH, "plan": bench.plan["summary"],
                        "offloaded_mb": round(bench.offloaded / MB), "small_tensor_mb": round(bench.small_bytes / MB)}
    return comp
