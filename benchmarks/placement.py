"""The placement comparison: where the collection's plan puts a model that no node can hold,
against llama.cpp's default split, on the local containers of the demo with memory limits.

rpc-server reports the host's RAM whatever the container's limit, so llama.cpp's default
split (-ngl 99, no --tensor-split) divides the layers evenly between equal-looking workers.
The collection's plan (plugins/module_utils/placement.py) divides them by each node's usable
memory (its cgroup limit minus a reserve, from the memory_facts module). Both run the same
one-shot llama-completion over the running rpc-server services, on equal and on unequal
worker limits; per node the comparison reports what llama.cpp allocated (its load log: model,
KV cache and compute buffers) and the peak of the container's cgroup memory, and whether the
run answered. Packing: the limits are scaled down to the tightest at which the fit check
still accepts the model, the plan then has to answer within them, and the model's bytes are
reported as a share of the cluster's usable memory.

The limits are set from the host on the containers' cgroups (v1), so this comparison runs
on local podman containers only (inventories/local); they are put back as found.
"""

from __future__ import annotations

import math
import shlex
import sys
from pathlib import Path

import local_cgroups as cg
import report
from cluster import TOP, BenchError, Cluster

sys.path.insert(0, str(TOP / "collections"))  # the checkout's collection, as ansible.cfg finds it
from ansible_collections.llamacpp.cluster.plugins.module_utils import placement  # noqa: E402  pylint: disable=wrong-import-position

MIB = 1024 ** 2
REMOTE_MODEL_DIR = "/var/tmp/llamacpp-bench"  # on disk: /tmp is a tmpfs charged to the container's memory
# Sized for scripts/big_model.py's 1.34 GB model over two workers: no node can hold it alone.
MAIN_LIMIT_MIB = 700
EQUAL_WORKER_MIB = 900
UNEQUAL_WORKER_MIB = (1100, 600)
MAIN_RESERVE_MIB = 192
WORKER_RESERVE_MIB = 128
CTX_SIZE = 512
UBATCH = 64
# The main node reads the weights it sends with direct I/O (no page cache in its cgroup); -lv 4
# makes llama-completion log its KV cache and compute buffers per device.
FLAGS = "--load-mode dio -lv 4"
PROMPT = "The three primary colours are"


class SkipComparison(BenchError):
    """The cluster cannot run this comparison (not local containers, or no big model)."""


def layouts(workers: list[str]) -> dict[str, dict[str, int]]:
    """The memory limits (bytes) per node of the equal and the unequal layout."""
    return {
        "equal": {w: EQUAL_WORKER_MIB * MIB for w in workers},
        "unequal": {w: UNEQUAL_WORKER_MIB[i % len(UNEQUAL_WORKER_MIB)] * MIB for i, w in enumerate(workers)},
    }


def usable(limit: int, reserve_mib: int) -> int:
    return limit - reserve_mib * MIB


def fits_scaled(model: dict, main: str, workers: list[dict], limits: dict[str, int], scale: float) -> bool:
    """Whether the fit check accepts the model with every node's limit times scale."""
    main_node = {"name": main, "usable_bytes": usable(int(limits[main] * scale), MAIN_RESERVE_MIB)}
    nodes = [dict(w, usable_bytes=usable(int(limits[w["name"]] * scale), WORKER_RESERVE_MIB)) for w in workers]
    if min(n["usable_bytes"] for n in [main_node, *nodes]) <= 0:
        return False
    return placement.plan(model, main_node, nodes, ctx_size=CTX_SIZE, ubatch=UBATCH, explain=False)["fits"]


def tightest_scale(model: dict, main: str, workers: list[dict], limits: dict[str, int]) -> float | None:
    """The smallest factor s (to 1/1000) such that the plan fits with every limit times s;
    None if it does not fit even at s = 1."""
    def fits(scale: float) -> bool:
        return fits_scaled(model, main, workers, limits, scale)

    low, high = 0, 1000
    if not fits(1.0):
        return None
    while high - low > 1:
        mid = (low + high) // 2
        if fits(mid / 1000):
            high = mid
        else:
            low = mid
    return high / 1000


def peak_over_limit(sample: dict, nodes: list[str]) -> float:
    """The fullest node of a run: the largest cgroup peak over its limit."""
    return round(max(sample[f"{n} peak MiB"] / sample[f"{n} limit MiB"] for n in nodes), 3)


class PlacementBench:
    def __init__(self, c: Cluster, model_file: Path):
        self.c = c
        self.model_file = model_file
        self.nodes = [c.main, *c.workers]
        self.remote_model = f"{REMOTE_MODEL_DIR}/{model_file.name}"
        self.model: dict = {}
        self.limits_found: dict[str, int | None] = {}

    # --- set-up and restore ------------------------------------------------------------------
    def prepare(self) -> None:
        if not self.model_file.is_file():
            raise SkipComparison(f"{self.model_file} is missing; run 'make big-model' or pass --big-model")
        try:
            self.limits_found = {name: cg.memory_limit(name) for name in self.nodes}
        except cg.CgroupError as exc:
            raise SkipComparison(f"placement needs the local containers of inventories/local: {exc}") from exc
        self.c.llama_server(running=False)  # it would hold the workers
        main = self.c.main
        self.c.sh(main, f"install -d -m 0755 {REMOTE_MODEL_DIR}")
        self.c.module(main, "ansible.builtin.copy", {"src": str(self.model_file), "dest": self.remote_model,
                                                     "mode": "0644"})
        self.model = self.c.module(self.c.main, "llamacpp.cluster.model_info", {"path": self.remote_model})[0]["model"]
        for name in self.nodes:
            if self.model["total_bytes"] <= (MAIN_LIMIT_MIB if name == self.c.main else max(UNEQUAL_WORKER_MIB)) * MIB:
                raise BenchError(f"{self.model_file.name} ({self.model['total_bytes'] // MIB} MiB) fits one node's "
                                 "limit: the comparison needs a model that no node can hold")

    def restore(self) -> None:
        for name, limit in self.limits_found.items():
            cg.set_memory_limit(name, limit)
        self.c.sh(self.c.main, f"rm -rf {REMOTE_MODEL_DIR}")

    # --- one layout ---------------------------------------------------------------------------
    def apply(self, limits: dict[str, int]) -> tuple[dict, list[dict]]:
        """Sets the limits (rpc-server restarted, so it holds nothing a lower limit would
        squeeze), and reads back each node's usable memory: (main, workers) for the plan."""
        cg.drop_page_cache(self.c.main)  # the model's copy went through the main node's page cache
        for name, limit in limits.items():
            cg.set_memory_limit(name, limit)
        self.c.rpc_services(running=True)
        read = self.c.module_on(self.c.workers, "llamacpp.cluster.memory_facts", {"reserve_mib": WORKER_RESERVE_MIB})[0]
        read[self.c.main] = self.c.module(self.c.main, "llamacpp.cluster.memory_facts",
                                          {"reserve_mib": MAIN_RESERVE_MIB})[0]
        found = {name: read[name]["ansible_facts"]["llamacpp_memory"] for name in self.nodes}
        for name in self.nodes:
            if found[name]["cgroup_limit_bytes"] != limits[name]:
                raise BenchError(f"{name}: memory_facts reads a limit of {found[name]['cgroup_limit_bytes']}, "
                                 f"set {limits[name]}")
        main = {"name": self.c.main, "usable_bytes": found[self.c.main]["usable_bytes"]}
        workers = [{"name": w, "endpoint": e, "usable_bytes": found[w]["usable_bytes"]}
                   for w, e in zip(self.c.workers, self.c.endpoints)]
        return main, workers

    def run(self, limits: dict[str, int], n_gpu_layers: int, tensor_split: list | None, n_predict: int) -> dict:
        """One llama-completion run; per node the allocated MiB and the cgroup's peak."""
        ooms, hits = {}, {}
        for name in self.nodes:
            cg.reset_memory_peak(name)
            ooms[name], hits[name] = cg.oom_kills(name), cg.limit_hits(name)
        args = ["cli", "--binary", "/opt/llama.cpp/current/bin/llama-completion", "--model", self.remote_model,
                "--prompt", PROMPT, "-n", str(n_predict), "--rpc", ",".join(self.c.endpoints),
                "--threads", str(self.c.vcpus[self.c.main]), "--ctx-size", str(CTX_SIZE), "--ubatch", str(UBATCH),
                "--n-gpu-layers", str(n_gpu_layers), "--flags", FLAGS, "--keep-log", "--allow-failure"]
        if tensor_split:
            args += ["--tensor-split", ",".join("%g" % v for v in tensor_split)]
        [result] = self.c.node_bench(*args)
        buffers = placement.parse_load_log(result.get("log", ""))
        sample = {"served": 0 if result.get("failed") else 1, "predicted_per_second": result.get("predicted_per_second"),
                  "wall_s": result.get("wall_s"), "oom_kills": 0, "limit_hits": 0}
        devices = {self.c.main: "CPU", **dict(zip(self.c.workers, self.c.endpoints))}
        for name in self.nodes:
            allocated = buffers.get(devices[name])
            sample[f"{name} allocated MiB"] = round(sum(allocated.values())) if allocated else None
            sample[f"{name} peak MiB"] = round(cg.memory_peak(name) / MIB)
            sample[f"{name} limit MiB"] = round(limits[name] / MIB)
            sample["oom_kills"] += cg.oom_kills(name) - ooms[name]
            sample["limit_hits"] += cg.limit_hits(name) - hits[name]
        sample["peak_over_limit"] = peak_over_limit(sample, self.nodes)
        if result.get("failed"):
            sample["error"] = result["error"].strip().splitlines()[-1:] if result.get("error") else []
            self.c.rpc_services(running=True)  # an OOM-killed rpc-server comes back; wait for all
        return sample


def bench_placement(c: Cluster, args) -> dict:
    bench = PlacementBench(c, Path(args.big_model))
    try:
        bench.prepare()
        model, samples, plans, derived = bench.model, {}, {}, {}
        for layout, worker_limits in layouts(c.workers).items():
            limits = {c.main: MAIN_LIMIT_MIB * MIB, **worker_limits}
            main, workers = bench.apply(limits)
            plan = placement.plan(model, main, workers, ctx_size=CTX_SIZE, ubatch=UBATCH)
            if not plan["fits"]:
                raise BenchError(f"{layout} layout: {plan['message']}")
            plans[layout] = plan["summary"]
            variants = {
                f"{layout}: collection plan": lambda limits=limits, plan=plan: bench.run(
                    limits, plan["n_gpu_layers"], plan["tensor_split"], args.n_predict),
                f"{layout}: llama.cpp default split": lambda limits=limits: bench.run(
                    limits, 99, None, args.n_predict),
            }
            samples.update(report.alternate(args.pairs, variants))

        # Packing: the equal layout's limits scaled down as far as the fit check accepts.
        base = {c.main: MAIN_LIMIT_MIB * MIB, **layouts(c.workers)["equal"]}
        _main, workers = bench.apply(base)
        scale = tightest_scale(model, c.main, workers, base)
        tight = {name: int(math.ceil(limit * scale / MIB)) * MIB for name, limit in base.items()}
        main, workers = bench.apply(tight)
        plan = placement.plan(model, main, workers, ctx_size=CTX_SIZE, ubatch=UBATCH)
        if not plan["fits"]:
            raise BenchError(f"packing: the plan does not fit at the limits it was scaled to: {plan['message']}")
        plans["packed"] = plan["summary"]
        samples.update(report.alternate(args.pairs, {"packed: collection plan at the tightest limits": lambda: bench.run(
            tight, plan["n_gpu_layers"], plan["tensor_split"], args.n_predict)}))
        total_usable = main["usable_bytes"] + sum(w["usable_bytes"] for w in workers)
        derived["packing: model bytes over the cluster's usable memory at the tightest limits the fit check accepts"] = \
            round(model["total_bytes"] / total_usable, 3)
        derived["packing: the limits' scale against the equal layout"] = scale
    finally:
        bench.restore()
    nodes = [c.main, *c.workers]
    metrics = ["peak_over_limit", "served", "oom_kills", "limit_hits", *[f"{n} allocated MiB" for n in nodes], *[f"{n} peak MiB" for n in nodes],
               *[f"{n} limit MiB" for n in nodes], "predicted_per_second"]
    comp = report.comparison(
        f"Placement of a {model['total_bytes'] / 1e9:.2f} GB model no node can hold: the collection's plan vs "
        "llama.cpp's default split", samples, metrics, "equal: collection plan",
        "peak/limit: the fullest node's cgroup peak over its limit (1 = it hit the limit). "
        "One-shot llama-completion over the rpc-server services, -c 512 -ub 64, memory limits on the containers' "
        f"cgroups (reserves: main {MAIN_RESERVE_MIB} MiB, workers {WORKER_RESERVE_MIB} MiB). allocated MiB: what "
        "llama.cpp's load log says it allocated on the node (model, KV cache, compute buffers); peak MiB: the "
        "container's cgroup memory peak during the run (every process and page cache, the OS included); served: "
        "the run answered; OOM kills: by the kernel in any node's cgroup during the run; limit hits: how often "
        "a node's usage reached its limit and the kernel had to reclaim (page cache first) or kill. "
        "llama.cpp's split trusts rpc-server's memory figure, which is the host's RAM in every container.")
    comp["derived"] = derived
    comp["plans"] = plans
    comp["settings"] = {"ctx_size": CTX_SIZE, "ubatch": UBATCH, "flags": shlex.split(FLAGS),
                        "model": str(Path(args.big_model).relative_to(TOP)) if Path(args.big_model).is_relative_to(TOP)
                        else Path(args.big_model).name}
    return comp
