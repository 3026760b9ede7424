"""The comparisons that need fresh nodes, on throwaway local containers (benchmarks/scratch.py):

  deploy    a cold site.yml on new nodes, then a no-op site.yml, then scale-out by one worker
  ccache    a rebuild on one node with an empty vs a warm compiler cache
  strategy  per_family vs per_host builds on 3 new nodes, each with an empty compiler cache
"""

from __future__ import annotations

import json

import report
from scratch import Scratch

WORK = "/var/cache/llama.cpp"
TARGETS = "a worker's build: rpc-server"
BUILD_PLAY = "benchmarks/build.yml"
# Everything a build leaves on a node except the unpacked source and the compiler caches.
WIPE = f"rm -rf /opt/llama.cpp {WORK}/build {WORK}/logs {WORK}/artifacts {WORK}/builds.log"


def _playbook(scratch: Scratch, path: str, *args: str) -> dict:
    seconds, counts = scratch.playbook(path, *args)
    return {"wall_s": round(seconds, 3), "changed": counts.get("changed", 0),
            "changed_hosts": counts.get("changed_hosts", 0)}


def bench_deploy(args) -> dict:
    """Cold, no-op and scale-out site.yml on a new cluster of 1 main + args.deploy_workers workers."""
    scratch = Scratch()

    def cold():
        scratch.up(main=1, workers=args.deploy_workers)  # new containers, not timed
        return _playbook(scratch, "site.yml")

    def scale_out():
        scratch.add(workers=1)
        return _playbook(scratch, "site.yml")

    labels = ("site.yml on new nodes (cold)", "site.yml, no change", "site.yml after adding one worker")
    try:
        samples = report.alternate(args.pairs, dict(zip(labels, (cold, lambda: _playbook(scratch, "site.yml"),
                                                                 scale_out))))
    finally:
        scratch.remove()
    return report.comparison(
        f"Automation cost: deploy 1 main + {args.deploy_workers} workers, re-run, scale out", samples,
        ["wall_s", "changed", "changed_hosts"], labels[0],
        "Each round starts from new containers (the local node image, packages from the Debian mirror; the builder "
        "compiles through the machine's warm compiler cache, as `make demo` does). site.yml includes its smoke "
        "request. changed: changed tasks; changed hosts: hosts with any change.")


def _build(scratch: Scratch, hosts: list[str], strategy: str, ccache_dir: str) -> dict:
    """The build role on `hosts` with no build installed: wall, changes, compiles and their seconds."""
    for host in hosts:
        scratch.nodes.sh(host, WIPE)
    extra = {"llamacpp_build_strategy": strategy, "llamacpp_build_ccache_dir": ccache_dir,
             "llamacpp_build_controller_cache": str(scratch.dir / "artifacts")}
    sample = _playbook(scratch, BUILD_PLAY, "--limit", ",".join(hosts), "-e", json.dumps(extra))
    compiles = [s for host in hosts for s in scratch.builds(host, WORK)]
    sample.update(compiles=len(compiles), compile_s=sum(compiles))
    return sample


def bench_ccache(args) -> dict:
    """One node builds with a new, empty compiler cache, then again with the cache that build filled."""
    scratch = Scratch()
    state = {"round": 0}

    def build():
        return _build(scratch, scratch.workers, "per_host", f"{WORK}/ccache-round{state['round']}")

    def empty():
        state["round"] += 1
        return build()

    try:
        scratch.up(main=0, workers=1)
        samples = report.alternate(args.pairs, {"empty compiler cache": empty, "warm compiler cache": build})
    finally:
        scratch.remove()
    return report.comparison(
        f"Build with an empty vs a warm compiler cache ({TARGETS})", samples, ["compile_s", "wall_s"],
        "empty compiler cache",
        "One node; every build starts with no build installed. Warm: the cache the round's empty-cache build filled. "
        "compile s: configure to install, from the build log; wall s: the build role's whole run (the first round's "
        "empty-cache run also installs the build packages).")


def bench_strategy(args) -> dict:
    """per_family vs per_host on 3 new nodes each time."""
    scratch = Scratch()

    def measure(strategy):
        def run():
            scratch.up(main=0, workers=3)  # new nodes, not timed
            # Not {WORK}/ccache: the first local node mounts the machine's warm cache there.
            return _build(scratch, scratch.workers, strategy, f"{WORK}/ccache-new")
        return run

    try:
        samples = report.alternate(args.pairs, {f"{s} on 3 nodes": measure(s) for s in ("per_family", "per_host")})
    finally:
        scratch.remove()
    return report.comparison(
        f"Build strategy on 3 new nodes of one CPU family ({TARGETS})", samples, ["wall_s", "compiles", "compile_s"],
        "per_family on 3 nodes",
        "New nodes for every run, with empty compiler caches. per_family installs the compiler and builds on one "
        "node and ships the result through the controller; per_host does both on each node. compile s: the sum over "
        "the compiles. The nodes share this machine's cores, so parallel compiles contend here.")
