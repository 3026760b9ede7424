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


class _Builds:
    """Three worker nodes with the build packages and the source in place; each measured build
    starts from a node with no build installed and the compiler cache the variant asks for."""

    def __init__(self):
        self.scratch = Scratch()
        self.hosts: list[str] = []
        self._caches = 0

    def __enter__(self):
        self.scratch.up(main=0, workers=3)
        self.hosts = list(self.scratch.workers)
        # Packages, source, and a warm cache on every node (not measured).
        self.build(self.hosts, "per_host", f"{WORK}/ccache-warm")
        return self

    def __exit__(self, *exc):
        self.scratch.remove()

    def new_cache(self) -> str:
        self._caches += 1
        return f"{WORK}/ccache-empty-{self._caches}"

    def build(self, hosts: list[str], strategy: str, ccache_dir: str) -> dict:
        for host in hosts:
            self.scratch.nodes.sh(host, WIPE)
        extra = {"llamacpp_build_strategy": strategy, "llamacpp_build_ccache_dir": ccache_dir,
                 "llamacpp_build_controller_cache": str(self.scratch.dir / "artifacts")}
        sample = _playbook(self.scratch, BUILD_PLAY, "--limit", ",".join(hosts), "-e", json.dumps(extra))
        compiles = [s for host in hosts for s in self.scratch.builds(host, WORK)]
        sample.update(compiles=len(compiles), compile_s=sum(compiles))
        return sample


def bench_builds(args, names: list[str]) -> dict:
    """The ccache and strategy comparisons that `names` asks for, on one set of scratch nodes."""
    results = {}
    targets = "a worker's build: rpc-server"
    with _Builds() as b:
        if "ccache" in names:
            one = b.hosts[:1]
            samples = report.alternate(args.pairs, {
                "empty compiler cache": lambda: b.build(one, "per_host", b.new_cache()),
                "warm compiler cache": lambda: b.build(one, "per_host", f"{WORK}/ccache-warm")})
            results["ccache"] = report.comparison(
                f"Build with an empty vs a warm compiler cache ({targets})", samples,
                ["compile_s", "wall_s"], "empty compiler cache",
                "One node; each build starts with no build installed. compile s: configure to install, from the "
                "build log; wall s: the build role's whole run (packages already installed).")
        if "strategy" in names:
            samples = report.alternate(args.pairs, {
                f"{s} on 3 nodes": (lambda s=s: b.build(b.hosts, s, b.new_cache())) for s in ("per_family", "per_host")})
            results["strategy"] = report.comparison(
                f"Build strategy on 3 new nodes of one CPU family ({targets})", samples,
                ["wall_s", "compiles", "compile_s"], "per_family on 3 nodes",
                "Each node starts with no build and an empty compiler cache, as new machines do. per_family compiles "
                "on one node and ships the result through the controller; per_host compiles on each. compile s: the "
                "sum over the compiles. The nodes share this machine's cores, so parallel compiles contend here.")
    return results
