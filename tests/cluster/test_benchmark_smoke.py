"""benchmarks/run.py --smoke on the converged cluster: every comparison runs once with tiny
settings and writes its JSON, Markdown and PNG; the cluster is left as deployed and the scratch
nodes of the deploy and build comparisons are removed."""

import json
import os
import subprocess
import sys
from pathlib import Path

import testinfra

PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
MAIN = "llamacpp-cluster-main"
WORKERS = ("llamacpp-cluster-worker1", "llamacpp-cluster-worker2")


def node(name):
    return testinfra.get_host(f"podman://{name}")


def test_smoke_run_measures_every_comparison_and_restores_the_cluster(tmp_path):
    inventory = str(Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent)
    proc = subprocess.run([sys.executable, "benchmarks/run.py", "-i", inventory, "--smoke", "--out", str(tmp_path)],
                          cwd=PROJECT, capture_output=True, text=True, check=False)
    print(proc.stdout[-4000:])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    [result_file] = tmp_path.glob("*.json")
    result = json.loads(result_file.read_text())
    comps = result["comparisons"]
    assert set(comps) == {"recipe", "threads", "modes", "workers", "cache", "automation", "deploy", "ccache",
                          "strategy"}
    assert all(v["n"] == 1 for comp in comps.values() for v in comp["summary"].values())
    assert len(comps["recipe"]["summary"]) == 4 and comps["recipe"]["ratios"]["predicted_per_second"][
        "hand: rpc-server default threads"] == 1.0
    for comp in ("recipe", "workers", "cache"):
        assert all(s["predicted_per_second"] > 0 for runs in comps[comp]["samples"].values() for s in runs), comp
    assert set(comps["modes"]["summary"]) == {"cli x1", "server x1", "cli x2", "server x2"}
    assert set(comps["workers"]["summary"]) == {"main node alone", "1 RPC worker", "2 RPC workers"}
    assert comps["workers"]["summary"]["2 RPC workers"]["worker_peak_rss_mib"] > 20
    assert comps["cache"]["summary"]["rpc-server -c"]["load_ms"] > 0
    # New nodes: the re-run changes nothing; scale-out changes the new worker and the main node only.
    deploy = comps["deploy"]["summary"]
    assert deploy["site.yml on new nodes (cold)"]["changed_hosts"] == 2
    assert deploy["site.yml, no change"]["changed"] == 0
    assert deploy["site.yml after adding one worker"]["changed_hosts"] == 2
    ccache = comps["ccache"]["samples"]
    assert [s["compiles"] for runs in ccache.values() for s in runs] == [1, 1]
    assert ccache["empty compiler cache"][0]["compile_s"] > 0
    strategy = comps["strategy"]["summary"]
    assert strategy["per_family on 3 nodes"]["compiles"] == 1 and strategy["per_host on 3 nodes"]["compiles"] == 3
    assert result["machine"]["llama_cpp"].startswith("b11312")
    assert result_file.with_suffix(".md").read_text().count("\n## ") == 9
    assert result_file.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    # Back as deployed: the services run, no hand-started rpc-server, nothing left behind.
    assert node(MAIN).service("llama-server").is_running
    assert not node(MAIN).file("/tmp/llamacpp-bench").exists
    for name in WORKERS:
        host = node(name)
        assert host.service("llama-rpc-server").is_running
        assert host.check_output("pgrep -c -x rpc-server || true") == "1"
        assert not host.file("/root/.cache/llama.cpp/rpc").exists
    # The scratch nodes of the deploy and build comparisons are gone.
    leftovers = subprocess.run(["podman", "ps", "-a", "--format", "{{.Names}}", "--filter", "name=^llamacpp-bench-"],
                               capture_output=True, text=True, check=True).stdout.split()
    assert not leftovers
    assert subprocess.run(["podman", "network", "exists", "llamacpp-bench"], check=False).returncode == 1
